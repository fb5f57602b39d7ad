// lmdb channel throughput with sync = "full": put (and then take + commit) of 200-byte events at
// several batch sizes, group commit across 4 producers, and the time to open a channel holding a
// large backlog. Usage: sluice_lmdb_bench [BACKLOG_MB (default 2048)] [DIR (default /tmp)]
//   sluice_lmdb_bench fill BACKLOG_MB DATA_DIR CHANNEL
// only writes a backlog of BACKLOG_MB MB of 200-byte events, uncompressed, in puts of 1,000 (a
// source's default transaction, sync = "periodic"), into the lmdb channel CHANNEL of an agent whose
// data_dir is DATA_DIR, as that agent would have written them while its sink was down
// (bench/run_all.py then times the whole agent's start with it).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "channels/lmdb/lmdb_channel.h"
#include "lib/core/loop.h"
#include "lib/core/metrics.h"

using namespace sluice;
using namespace sluice::channels;
using WallClock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kEventBytes = 200;

struct Producer final : PutListener, SpaceListener {
  LmdbChannel* ch = nullptr;
  Batch batch;
  std::size_t batch_size = 0, left = 0, unissued = 0, in_flight = 0, max_in_flight = 4;
  std::uint64_t seq = 0;
  bool waiting = false;
  std::string body;

  void fill() {
    batch.clear();
    for (std::size_t i = 0; i < batch_size; ++i) {
      std::snprintf(body.data(), 13, "%012llu",
                    static_cast<unsigned long long>(seq * batch_size + i));
      batch.add(body, 0, 0);
    }
  }
  void pump() {
    while (unissued > 0 && in_flight < max_in_flight && !waiting) {
      fill();
      ++in_flight;
      unissued -= batch_size;
      ch->put(batch, SourceCheckpoint{nullptr, ++seq, {}, {}}, *this);
    }
  }
  void on_put_done(std::uint64_t, Status st) noexcept override {
    --in_flight;
    if (st.code() == Errc::backpressure) {
      unissued += batch_size;
      waiting = true;
      ch->wait_for_space(*this);
      return;
    }
    if (!st.ok()) {
      std::fprintf(stderr, "put failed: %s\n", st.str().c_str());
      std::exit(1);
    }
    left -= batch_size;
  }
  void on_space() noexcept override { waiting = false; }
};

struct Committer final : CommitListener {
  std::size_t done = 0;
  void on_committed(std::uint64_t, Status st) noexcept override {
    if (!st.ok()) std::exit(1);
    ++done;
  }
};

void run_until(Loop& loop, const std::function<bool()>& cond,
               const std::function<void()>& step = {}) {
  while (!cond()) {
    if (step) step();
    uv_run(loop.uv(), UV_RUN_ONCE);
  }
}

double seconds_since(WallClock::time_point t) {
  return std::chrono::duration<double>(WallClock::now() - t).count();
}

// Writes `events` events (in puts of `batch`) into channel `name` of data_dir `data`, stored
// uncompressed so that the backlog takes its full size on disk; returns the seconds taken.
double write_backlog(Loop& loop, MetricsRegistry& metrics, const std::string& data,
                     const std::string& name, std::size_t events, std::size_t batch,
                     SyncMode sync = SyncMode::full, std::size_t in_flight = 4) {
  SharedResources shared;  // one agent start: a later reopen opens the environment again
  ComponentContext ctx{loop, metrics, name, "lmdb", data, &shared};
  LmdbConfig cfg;
  cfg.max_events = 100'000'000'000ULL;
  cfg.max_bytes = ByteSize{1ULL << 44};
  cfg.transaction_events = static_cast<std::uint32_t>(batch);
  cfg.compression_level = 0;
  cfg.sync = sync;
  auto ch = LmdbChannel::create(cfg, ctx);
  if (!ch) {
    std::fprintf(stderr, "%s\n", ch.error().str().c_str());
    std::exit(1);
  }
  Producer p;
  p.ch = ch->get();
  p.batch_size = batch;
  p.max_in_flight = in_flight;
  p.left = p.unissued = events / batch * batch;
  p.body.assign(kEventBytes, 'x');
  const auto t0 = WallClock::now();
  run_until(
      loop, [&] { return p.left == 0 && p.in_flight == 0; }, [&] { p.pump(); });
  return seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "fill") {
    const std::size_t mb = std::strtoull(argv[2], nullptr, 10);
    std::filesystem::create_directories(argv[3]);
    Loop loop;
    MetricsRegistry metrics;
    const std::size_t events = mb * 1'000'000 / kEventBytes / 1000 * 1000;
    // Not fsynced put by put (the records are the same; the environment is closed, and so
    // synced, at the end): the figure of interest is the reopen, not this writer.
    const double s =
        write_backlog(loop, metrics, argv[3], argv[4], events, 1000, SyncMode::periodic, 64);
    std::printf("%zu %.3f\n", events, s);
    return 0;
  }
  const std::size_t backlog_mb = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 2048;
  const std::string base = argc > 2 ? argv[2] : "/tmp";
  const std::string dir = base + "/sluice-lmdb-bench";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  Loop loop;
  MetricsRegistry metrics;
  const std::size_t total = 1'000'000;
  std::printf("lmdb channel, sync = \"full\", zstd level 1, %zu-byte events, %zu events per run\n",
              kEventBytes, total);
  std::printf("%-34s%10s%14s%10s%16s\n", "run", "wall s", "events/s", "MB/s", "events/commit");
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  auto run = [&](const char* name, std::size_t batch_size, int producers) {
    std::filesystem::remove_all(dir + "/data");
    SharedResources shared;  // one agent per run
    ComponentContext ctx{loop, metrics, "bench", "lmdb", dir + "/data", &shared};
    std::filesystem::create_directories(ctx.data_dir);
    LmdbConfig cfg;
    cfg.max_events = 100'000'000;
    cfg.max_bytes = ByteSize{64ULL << 30};
    cfg.transaction_events = static_cast<std::uint32_t>(batch_size);
    auto ch = LmdbChannel::create(cfg, ctx);
    if (!ch) {
      std::fprintf(stderr, "%s\n", ch.error().str().c_str());
      std::exit(1);
    }
    std::vector<Producer> ps(static_cast<std::size_t>(producers));
    for (auto& p : ps) {
      p.ch = ch->get();
      p.batch_size = batch_size;
      p.left = p.unissued = total / static_cast<std::size_t>(producers);
      p.body.assign(kEventBytes, 'x');
    }
    const std::shared_ptr<LmdbEnv>& env = (*ch)->env();
    const std::uint64_t rounds0 = env->rounds();
    const auto t0 = WallClock::now();
    run_until(
        loop,
        [&] {
          for (auto& p : ps) {
            if (p.left > 0 || p.in_flight > 0) return false;
          }
          return true;
        },
        [&] {
          for (auto& p : ps) p.pump();
        });
    const double put_s = seconds_since(t0);
    const double rounds = static_cast<double>(env->rounds() - rounds0);
    std::printf("%-34s%10.3f%14.0f%10.1f%16.0f\n", name, put_s, total / put_s,
                total * kEventBytes / 1e6 / put_s, total / rounds);
    // Take and commit everything back.
    const CursorId cur = *(*ch)->open_cursor("g");
    Committer committer;
    Batch out;
    std::size_t commits = 0, taken = 0;
    const auto t1 = WallClock::now();
    while (taken < total) {
      auto lease = (*ch)->take(cur, out, {static_cast<std::uint32_t>(batch_size * 4), 64ULL << 20});
      if (out.empty()) {
        uv_run(loop.uv(), UV_RUN_ONCE);
        continue;
      }
      taken += out.size();
      ++commits;
      (*ch)->commit(std::move(*lease), committer);
    }
    run_until(loop, [&] { return committer.done == commits; });
    const double take_s = seconds_since(t1);
    std::printf("%-34s%10.3f%14.0f%10.1f\n", "  take + commit of the same", take_s, total / take_s,
                total * kEventBytes / 1e6 / take_s);
  };
  run("put, batches of 100", 100, 1);
  run("put, batches of 1,000", 1000, 1);
  run("put, batches of 10,000", 10000, 1);
  run("put, 4 producers x batches of 1,000", 1000, 4);

  // Start-up with a large backlog: fill, close, then time the reopen and the first take.
  std::filesystem::remove_all(dir + "/data");
  const std::string data = dir + "/data";
  std::filesystem::create_directories(data);
  const std::size_t backlog_events = backlog_mb * 1'000'000 / kEventBytes;
  {
    const double s = write_backlog(loop, metrics, data, "bench", backlog_events, 10000);
    std::fflush(stdout);
    std::printf("backlog: %zu MB (%zu events) written in %.1f s\n", backlog_mb, backlog_events, s);
  }
  {
    SharedResources shared;  // one agent start: the reopen opens the environment again
    ComponentContext ctx{loop, metrics, "bench", "lmdb", data, &shared};
    LmdbConfig cfg;
    cfg.max_events = 100'000'000'000ULL;
    cfg.max_bytes = ByteSize{1ULL << 44};
    cfg.transaction_events = 10000;
    const auto t0 = WallClock::now();
    auto ch = LmdbChannel::create(cfg, ctx);
    const CursorId cur = *(*ch)->open_cursor("g");
    Batch out;
    auto lease = (*ch)->take(cur, out, {10000, 64ULL << 20});
    std::printf(
        "start with that backlog: open + first take of %zu events in %.3f s (%llu events held)\n",
        out.size(), seconds_since(t0), static_cast<unsigned long long>((*ch)->events()));
    lease->rollback();
  }
  std::filesystem::remove_all(dir);
  return 0;
}

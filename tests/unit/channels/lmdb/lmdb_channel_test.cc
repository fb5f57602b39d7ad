#include "channels/lmdb/lmdb_channel.h"

#include <fmt/format.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <zlib.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "channels/lmdb/inspect.h"
#include "channels/lmdb/record_codec.h"
#include "channels/lmdb/salvage.h"
#include "lib/core/source_output.h"
#include "tests/support/fault_peers.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::channels;
using test::SmallDisk;
using namespace std::chrono_literals;

namespace {

struct Listener final : PutListener, SafeListener, CommitListener, DataListener, SpaceListener {
  std::vector<Status> puts;
  std::vector<std::uint64_t> safe;
  int commits = 0, data = 0, space = 0;
  void on_put_done(std::uint64_t, Status st) noexcept override { puts.push_back(std::move(st)); }
  void on_safe_in_channel(std::uint64_t seq) noexcept override { safe.push_back(seq); }
  void on_committed(std::uint64_t, Status st) noexcept override { commits += st.ok() ? 1 : 1000; }
  void on_data() noexcept override { ++data; }
  void on_space() noexcept override { ++space; }
};

std::vector<std::string> bodies(const Batch& b) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < b.size(); ++i) out.emplace_back(b[i].body());
  return out;
}

struct Rig {
  test::TempDir dir;
  Loop loop;
  MetricsRegistry metrics;
  std::unique_ptr<SharedResources> shared;
  ComponentContext ctx{loop, metrics, "durable", "lmdb", dir.path()};
  Listener l;
  std::weak_ptr<LmdbEnv> last_env;

  // Each open is one agent start: a store of its own, so that a reopen opens the environment
  // again (the previous channel must be gone, as in a restarted process).
  std::unique_ptr<LmdbChannel> open(LmdbConfig cfg = {}) {
    shared = std::make_unique<SharedResources>();
    REQUIRE(last_env.expired());
    ctx.shared = shared.get();
    auto ch = LmdbChannel::create(cfg, ctx);
    REQUIRE(ch.has_value());
    last_env = (*ch)->env();
    return std::move(*ch);
  }
  // Releases the environment (as the agent does after its components), then closes the loop.
  int close() {
    shared.reset();
    return loop.close();
  }
  void put(LmdbChannel& ch, Batch b, std::uint64_t seq) {
    const std::size_t before = l.puts.size();
    ch.put(b, SourceCheckpoint{&l, seq, {}, {}}, l);
    REQUIRE(test::run_until(loop, 5s, [&] { return l.puts.size() > before; }));
    REQUIRE(l.puts.back().ok());
  }
  void commit(LmdbChannel& ch, Lease&& lease) {
    const int before = l.commits;
    ch.commit(std::move(lease), l);
    REQUIRE(test::run_until(loop, 5s, [&] { return l.commits > before; }));
    REQUIRE(l.commits == before + 1);
  }
};

}  // namespace

TEST_CASE("lmdb record codec round-trips events and detects damage", "[unit][lmdb]") {
  Batch b;
  b.set_common_header("file", "/var/log/a.log");
  b.add(std::string(500, 'x'), 11, 12);
  b.add_header("h", "v");
  b.add_field("n", "7", FieldType::integer);
  b.add("second", 21, 22);
  for (int level : {0, 3}) {
    std::string payload, record, scratch;
    serialize_batch(b, payload);
    seal_record(payload, 2, level, record);
    Batch out;
    REQUIRE(decode_record(record, out, scratch).ok());
    REQUIRE(out.size() == 2);
    CHECK(out[0].body() == std::string(500, 'x'));
    CHECK(out[0].timestamp_ns() == 11);
    CHECK(out[0].id() == 12);
    CHECK(out[0].header("h") == std::optional<std::string_view>("v"));
    CHECK(out[0].header("file") == std::optional<std::string_view>("/var/log/a.log"));
    CHECK(out[0].field(0).text == "7");
    CHECK(out[1].body() == "second");
    if (level > 0) CHECK(record.size() < payload.size());  // compressed
    record[record.size() / 2] ^= 0x20;                     // one flipped bit
    const Status st = decode_record(record, out, scratch);
    CHECK(st.code() == Errc::invalid_data);
    CHECK(st.message() == "checksum mismatch");
    CHECK(out.empty());
  }
}

TEST_CASE("lmdb channel: put is durable, then safe, take and commit remove", "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open();
    const CursorId cur = *ch->open_cursor("g");
    r.put(*ch, test::make_batch(3, "a"), 1);
    CHECK(r.l.safe == std::vector<std::uint64_t>{1});  // safe at durable put
    r.put(*ch, test::make_batch(2, "b"), 2);
    CHECK(ch->events() == 5);
    Batch out;
    auto lease = test::take_some(r.loop, *ch, cur, out, {100, 1 << 20});
    REQUIRE(lease.has_value());
    CHECK(bodies(out) == std::vector<std::string>{"a0", "a1", "a2", "b0", "b1"});
    r.commit(*ch, std::move(*lease));
    CHECK(ch->events() == 0);
    CHECK(ch->bytes() == 0);
    auto none = ch->take(cur, out, {100, 1 << 20});
    CHECK(out.empty());
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb channel: without a store of shared resources it refuses to start", "[unit][lmdb]") {
  Rig r;
  auto ch = LmdbChannel::create(LmdbConfig{}, r.ctx);  // ctx.shared is null
  REQUIRE_FALSE(ch.has_value());
  CHECK(ch.error().code() == Errc::config);
  CHECK(ch.error().message().find("shared resources") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(r.dir.file("lmdb")));
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb channel: the channels of one agent share one environment, kept by its store",
          "[unit][lmdb]") {
  Rig r;
  std::weak_ptr<LmdbEnv> env;
  {
    SharedResources shared;
    ComponentContext a_ctx{r.loop, r.metrics, "a", "lmdb", r.dir.path(), &shared};
    ComponentContext b_ctx{r.loop, r.metrics, "b", "lmdb", r.dir.path(), &shared};
    // The first channel's on_corrupt applies; the second finds the environment open.
    auto a = LmdbChannel::create(LmdbConfig{.quarantine_corrupt = true}, a_ctx);
    auto b = LmdbChannel::create(LmdbConfig{}, b_ctx);
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    CHECK((*a)->env() == (*b)->env());  // one environment, one writer thread
    CHECK(shared.size() == 1);
    CHECK(shared.find<LmdbEnv>(LmdbChannel::env_key(r.dir.path())) == (*a)->env());
    std::vector<std::string> entries;
    for (const auto& e : std::filesystem::directory_iterator(r.dir.path()))
      entries.push_back(e.path().filename().string());
    CHECK(entries == std::vector<std::string>{"lmdb"});
    // Both write through it: each channel keeps its own records.
    r.put(**a, test::make_batch(2, "a"), 1);
    r.put(**b, test::make_batch(3, "b"), 2);
    CHECK((*a)->events() == 2);
    CHECK((*b)->events() == 3);
    env = (*a)->env();
    a->reset();
    b->reset();
    // Components are destroyed first; the store still holds the environment.
    CHECK_FALSE(env.expired());
    shared.clear();
    CHECK(env.expired());
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("shared resources: one resource per key, made once, of one type", "[unit][lmdb]") {
  SharedResources shared;
  int made = 0;
  auto make = [&]() -> Result<std::shared_ptr<int>> {
    ++made;
    return std::make_shared<int>(7);
  };
  auto first = shared.get_or_create<int>("k", make);
  auto second = shared.get_or_create<int>("k", make);
  REQUIRE(first.has_value());
  REQUIRE(second.has_value());
  CHECK(*first == *second);
  CHECK(made == 1);
  auto failing = shared.get_or_create<int>(
      "f", [&]() -> Result<std::shared_ptr<int>> { return Status(Errc::io, "cannot make it"); });
  REQUIRE_FALSE(failing.has_value());
  CHECK(failing.error().message() == "cannot make it");
  CHECK(shared.size() == 1);  // a failure stores nothing
  auto other =
      shared.get_or_create<double>("k", [] { return Result{std::make_shared<double>(1)}; });
  REQUIRE_FALSE(other.has_value());
  CHECK(other.error().message().find("another type") != std::string::npos);
  CHECK(shared.find<double>("k") == nullptr);
  CHECK(shared.find<int>("k") == *first);
}

TEST_CASE("lmdb channel: state survives a restart, an open lease is delivered again",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open();
    const CursorId cur = *ch->open_cursor("g");
    for (int i = 0; i < 3; ++i)
      r.put(*ch, test::make_batch(2, "r" + std::to_string(i) + "-"), i + 1);
    Batch out;
    auto first = test::take_some(r.loop, *ch, cur, out, {2, 1 << 20});
    r.commit(*ch, std::move(*first));
    auto second = test::take_some(r.loop, *ch, cur, out, {2, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"r1-0", "r1-1"});
    second->release();  // the process "dies" with this lease open: no commit, no rollback
  }
  {
    auto ch = r.open();  // a new environment on the same directory
    CHECK(ch->events() == 4);
    const CursorId cur = *ch->open_cursor("g");
    Batch out;
    auto again = test::take_some(r.loop, *ch, cur, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"r1-0", "r1-1", "r2-0", "r2-1"});
    r.commit(*ch, std::move(*again));
    r.put(*ch, test::make_batch(1, "after-"), 4);  // numbering continues
    auto last = test::take_some(r.loop, *ch, cur, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"after-0"});
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb channel: rollback returns records in order, two cursors each see everything",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open();
    const CursorId a = *ch->open_cursor("a");
    const CursorId b = *ch->open_cursor("b");
    r.put(*ch, test::make_batch(2, "x"), 1);
    r.put(*ch, test::make_batch(2, "y"), 2);
    Batch out;
    auto l1 = test::take_some(r.loop, *ch, a, out, {2, 1 << 20});
    auto l2 = test::take_some(r.loop, *ch, a, out, {2, 1 << 20});
    l2->rollback();
    l1->rollback();
    auto all = test::take_some(r.loop, *ch, a, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"x0", "x1", "y0", "y1"});
    r.commit(*ch, std::move(*all));
    CHECK(ch->events() == 4);  // cursor b has not committed: nothing is deleted
    auto lb = test::take_some(r.loop, *ch, b, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"x0", "x1", "y0", "y1"});
    r.commit(*ch, std::move(*lb));
    CHECK(ch->events() == 0);
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb channel: readers far apart and near each other see every event as put",
          "[unit][lmdb]") {
  // Exercises the decoded-record cache: records small and large (one past the cache's bound for
  // a single entry), takes that stop before a record (it is met again), a reader that trails
  // the other by many records (evictions by count and by bytes), and one cursor alone.
  Rig r;
  {
    auto ch = r.open();
    const CursorId a = *ch->open_cursor("a");
    const CursorId b = *ch->open_cursor("b");
    std::vector<std::string> expect;
    const std::string pad(2000, 'p');
    for (int rec = 0; rec < 60; ++rec) {
      const int events = rec % 10 == 9 ? 300 : (rec % 3 == 0 ? 120 : 3);  // 600 KB, 240 KB, small
      Batch in;
      for (int e = 0; e < events; ++e) {
        std::string body = std::to_string(rec) + ":" + std::to_string(e) + ":";
        if (events > 3) body += pad;
        in.add(body, rec * 1000 + e, static_cast<std::uint64_t>(rec) * 1000 + e);
        in.add_field("rec", std::to_string(rec), FieldType::integer);
        expect.push_back(body);
      }
      r.put(*ch, std::move(in), static_cast<std::uint64_t>(rec) + 1);
    }
    auto check_fields = [](const Batch& out) {
      for (std::size_t i = 0; i < out.size(); ++i) {
        const std::string_view body = out[i].body();
        REQUIRE(out[i].field_count() == 1);
        CHECK(out[i].field(0).text == body.substr(0, body.find(':')));
      }
    };
    std::vector<std::string> seen_a, seen_b;
    Batch out;
    std::vector<Lease> held;
    // a reads in small takes; b reads only after a is 20 records ahead, then in large ones.
    for (int round = 0; seen_a.size() < expect.size() || seen_b.size() < expect.size(); ++round) {
      REQUIRE(round < 10'000);
      if (seen_a.size() < expect.size()) {
        auto la = test::take_some(r.loop, *ch, a, out, {50, 1 << 20});
        REQUIRE(la);
        check_fields(out);
        for (auto& body : bodies(out)) seen_a.push_back(body);
        held.push_back(std::move(*la));
      }
      if (seen_b.size() < expect.size() && (round > 40 || seen_a.size() == expect.size())) {
        auto lb = test::take_some(r.loop, *ch, b, out, {2000, 8 << 20});
        REQUIRE(lb);
        check_fields(out);
        for (auto& body : bodies(out)) seen_b.push_back(body);
        held.push_back(std::move(*lb));
      }
    }
    CHECK(seen_a == expect);
    CHECK(seen_b == expect);
    for (auto it = held.rbegin(); it != held.rend(); ++it) it->rollback();  // newest first
    held.clear();
    // One cursor (a) again from the start, in takes that each stop before the next record.
    std::vector<std::string> again;
    while (again.size() < expect.size()) {
      auto l = test::take_some(r.loop, *ch, a, out, {1, 1 << 20});
      REQUIRE(l);
      check_fields(out);
      for (auto& body : bodies(out)) again.push_back(body);
      held.push_back(std::move(*l));
    }
    CHECK(again == expect);
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb channel: a damaged record is quarantined, the others are delivered",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open(LmdbConfig{.compression_level = 0});
    const CursorId cur = *ch->open_cursor("g");
    r.put(*ch, test::make_batch(1, "good-"), 1);
    r.put(*ch, test::make_batch(1, "bad-"), 2);
    r.put(*ch, test::make_batch(1, "fine-"), 3);
    // Flip one byte of record 2 on disk.
    const std::shared_ptr<LmdbEnv>& env = ch->env();
    auto dbi = env->dbi("c:durable");
    bool flipped = false;
    env->submit({[&, d = *dbi](MDB_txn* txn) {
                   std::string key(8, '\0');
                   key[7] = 2;
                   MDB_val k{8, key.data()}, v{};
                   int rc = mdb_get(txn, d, &k, &v);
                   if (rc != 0) return rc;
                   std::string copy(static_cast<const char*>(v.mv_data), v.mv_size);
                   copy[copy.size() - 3] ^= 0x01;
                   MDB_val nv{copy.size(), copy.data()};
                   return mdb_put(txn, d, &k, &nv, 0);
                 },
                 [&](Status st) { flipped = st.ok(); }, true});
    REQUIRE(test::run_until(r.loop, 5s, [&] { return flipped; }));
    Batch out;
    auto lease = test::take_some(r.loop, *ch, cur, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"good-0", "fine-0"});
    CHECK(ch->quarantined() == 1);
    r.commit(*ch, std::move(*lease));
    REQUIRE(test::run_until(r.loop, 5s, [&] { return ch->events() == 0; }));
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb channel: full means back-pressure until a commit frees space", "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open(LmdbConfig{.max_events = 3});
    const CursorId cur = *ch->open_cursor("g");
    r.put(*ch, test::make_batch(3, "a"), 1);
    Batch extra = test::make_batch(1, "b");
    ch->put(extra, SourceCheckpoint{&r.l, 2, {}, {}}, r.l);
    REQUIRE(r.l.puts.back().code() == Errc::backpressure);
    CHECK(extra.size() == 1);  // untouched
    ch->wait_for_space(r.l);
    Batch out;
    auto lease = test::take_some(r.loop, *ch, cur, out, {100, 1 << 20});
    r.commit(*ch, std::move(*lease));
    CHECK(r.l.space == 1);
    r.put(*ch, std::move(extra), 2);
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb channel: when_full = drop_oldest drops the oldest record and counts it",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open(LmdbConfig{.max_events = 4, .drop_oldest_when_full = true});
    const CursorId cur = *ch->open_cursor("g");
    r.put(*ch, test::make_batch(2, "old"), 1);
    r.put(*ch, test::make_batch(2, "mid"), 2);
    Batch extra = test::make_batch(2, "new");
    ch->put(extra, SourceCheckpoint{&r.l, 3, {}, {}}, r.l);
    CHECK(r.l.puts.back().code() == Errc::backpressure);  // the source waits for the drop
    ch->wait_for_space(r.l);
    REQUIRE(test::run_until(r.loop, 5s, [&] { return r.l.space == 1; }));
    r.put(*ch, std::move(extra), 3);
    Batch out;
    auto lease = test::take_some(r.loop, *ch, cur, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"mid0", "mid1", "new0", "new1"});
    double dropped = 0;
    REQUIRE(r.metrics.find("sluice_channel_dropped_events_total", r.ctx.labels(), dropped));
    CHECK(dropped == 2);
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb channel: a lagging cursor with detach loses its oldest backlog, the other goes on",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open(LmdbConfig{.max_events = 4});
    const CursorId live = *ch->open_cursor("live");
    const CursorId dead = *ch->open_cursor("dead");
    r.put(*ch, test::make_batch(2, "a"), 1);
    r.put(*ch, test::make_batch(2, "b"), 2);
    Batch out;
    auto l = test::take_some(r.loop, *ch, live, out, {100, 1 << 20});
    r.commit(*ch, std::move(*l));
    Batch extra = test::make_batch(2, "c");
    ch->put(extra, SourceCheckpoint{&r.l, 3, {}, {}}, r.l);
    CHECK(r.l.puts.back().code() == Errc::backpressure);  // blocked: "dead" holds everything
    ch->set_detach_when_lagging(dead, true);
    ch->put(extra, SourceCheckpoint{&r.l, 3, {}, {}}, r.l);
    ch->wait_for_space(r.l);
    REQUIRE(test::run_until(r.loop, 5s, [&] { return r.l.space == 1; }));
    r.put(*ch, std::move(extra), 3);
    auto d = test::take_some(r.loop, *ch, dead, out, {100, 1 << 20});
    CHECK(bodies(out) ==
          std::vector<std::string>{"b0", "b1", "c0", "c1"});  // "a" was dropped for it
    auto lv = test::take_some(r.loop, *ch, live, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"c0", "c1"});
  }
  REQUIRE(r.close() == 0);
}

namespace {

struct CountingListener final : OutputListener {
  std::uint64_t safe = 0;
  void on_safe(std::uint64_t seq) noexcept override { safe = seq; }
  void on_writable() noexcept override {}
};

// Puts batches of numbered 1 KB events while the output is writable.
struct NumberedSource {
  SourceOutput& out;
  long next = 1;
  void fill(long up_to) {
    while (next <= up_to && out.writable()) {
      Batch b;
      for (int i = 0; i < 100 && next <= up_to; ++i, ++next) {
        b.add(std::to_string(next) + " " + std::string(1000, 'x'), 1,
              static_cast<std::uint64_t>(next));
      }
      out.put(b, std::to_string(next - 1), "file");
    }
  }
};

// An lmdb channel on a small disk (the caller mounts it at `data`), with a source of numbered 1 KB
// events putting into it through a SourceOutput.
struct FullDiskRig {
  FullDiskRig(Loop& loop, const std::string& data)
      : ctx{loop, metrics, "durable", "lmdb", data, &shared} {
    LmdbConfig cfg;
    cfg.compression_level = 0;
    cfg.transaction_events = 100;
    auto created = LmdbChannel::create(cfg, ctx);
    REQUIRE(created.has_value());
    ch = std::move(*created);
    auto c = ch->open_cursor("g");
    REQUIRE(c.has_value());
    cursor = *c;
    out.emplace(loop, std::vector<Channel*>{ch.get()}, 4);
    out->set_source_name("src");
    out->set_metrics(metrics, {{"component", "src"}, {"type", "test"}});
    out->set_listener(&listener);
    source.emplace(NumberedSource{*out});
  }
  MetricsRegistry metrics;
  SharedResources shared;
  ComponentContext ctx;
  std::unique_ptr<LmdbChannel> ch;
  std::optional<CursorId> cursor;
  CountingListener listener;
  std::optional<SourceOutput> out;
  std::optional<NumberedSource> source;
};

}  // namespace

TEST_CASE("lmdb channel: a full disk is back-pressure, every put is kept and arrives in order",
          "[unit][lmdb]") {
  test::TempDir dir;
  const std::string data = dir.file("data");
  SmallDisk disk(data, "4m");
  if (!disk.ok()) {
    WARN("skipped: cannot mount a tmpfs (" << disk.error() << ")");
    return;
  }
  Loop loop;
  {
    FullDiskRig r(loop, data);
    LmdbChannel& ch = *r.ch;
    const std::optional<CursorId>& cursor = r.cursor;
    SourceOutput& out = *r.out;
    MetricsRegistry& metrics = r.metrics;
    CountingListener& listener = r.listener;
    NumberedSource& source = *r.source;
    // The sink is down: nothing is taken. The disk fills.
    REQUIRE(test::run_until(loop, 20s, [&] {
      source.fill(1'000'000);
      return out.put_errors() >= 4;
    }));
    const long stuck_at = source.next - 1;
    INFO("the disk filled after " << stuck_at << " events were read");
    CHECK(stuck_at < 5000);  // 4 MiB of 1 KB events
    // Stuck, not lost: the source waits, the channel says why.
    CHECK(test::run_until(loop, 300ms, [] { return false; }) == false);
    CHECK_FALSE(out.writable());
    CHECK(ch.health_problem().find("channel durable: puts fail (disk or map full), retrying: ") ==
          0);
    CHECK(out.health_problem().find("source src: puts fail, retrying: backpressure: ") == 0);
    double errors = 0;
    CHECK(metrics.find("sluice_source_put_errors_total",
                       {{"component", "src"}, {"type", "test"}, {"reason", "no_space"}}, errors));
    CHECK(errors >= 4);
    CHECK(metrics.find("sluice_channel_put_errors_total",
                       {{"component", "durable"}, {"type", "lmdb"}, {"reason", "no_space"}},
                       errors));
    CHECK(errors >= 1);
    // The sink comes back: the channel drains, the waiting puts go in, the source goes on.
    const long total = stuck_at + 3000;
    std::vector<long> received;
    Batch taken;
    struct Committer final : CommitListener {
      int ok = 0, failed = 0;
      void on_committed(std::uint64_t, Status st) noexcept override { ++(st.ok() ? ok : failed); }
    } committer;
    const bool drained = test::run_until(loop, 30s, [&] {
      source.fill(total);
      auto lease = ch.take(*cursor, taken, {500, 1 << 20});
      REQUIRE(lease.has_value());
      for (std::size_t i = 0; i < taken.size(); ++i)
        received.push_back(std::stol(std::string(taken[i].body().substr(0, 10))));
      if (!taken.empty()) ch.commit(std::move(*lease), committer);
      return received.size() >= static_cast<std::size_t>(total) && out.idle();
    });
    INFO("received " << received.size() << " of " << total << ", read " << source.next - 1
                     << ", channel holds " << ch.events() << ", put errors " << out.put_errors()
                     << ", source idle " << out.idle() << ", writable " << out.writable()
                     << ", commits ok " << committer.ok << " failed " << committer.failed
                     << ", channel: '" << ch.health_problem() << "', source: '"
                     << out.health_problem() << "'");
    REQUIRE(drained);
    CHECK(committer.failed == 0);
    REQUIRE(received.size() == static_cast<std::size_t>(total));
    bool in_order = true;
    for (long i = 0; i < total; ++i)
      in_order = in_order && received[static_cast<std::size_t>(i)] == i + 1;
    CHECK(in_order);
    CHECK(listener.safe == out.last_seq());
    CHECK(ch.health_problem().empty());
    CHECK(out.health_problem().empty());
    // A disk that fills again and is then grown (freed by the operator) resumes as well.
    const std::uint64_t errors_before = out.put_errors();
    REQUIRE(test::run_until(loop, 20s, [&] {
      source.fill(total + 1'000'000);
      return out.put_errors() >= errors_before + 4;
    }));
    CHECK_FALSE(ch.health_problem().empty());
    const long second_stop = source.next - 1;
    REQUIRE(disk.grow("64m"));
    REQUIRE(test::run_until(loop, 30s, [&] {
      source.fill(second_stop + 2000);
      return source.next > second_stop + 2000 && out.idle();
    }));
    CHECK(ch.events() == static_cast<std::uint64_t>(second_stop + 2000 - total));
    CHECK(ch.health_problem().empty());
  }
  REQUIRE(loop.close() == 0);
}

// LMDB reuses the pages a transaction freed only once a later transaction has committed. A full
// disk drained by one delete left every freed page pinned by that last commit: each retried put
// needed new pages, failed, and committed nothing, so the channel stayed empty and the source
// stuck.
TEST_CASE("lmdb channel: a full disk drained by one commit takes the waiting puts",
          "[unit][lmdb]") {
  test::TempDir dir;
  const std::string data = dir.file("data");
  SmallDisk disk(data, "4m");
  if (!disk.ok()) {
    WARN("skipped: cannot mount a tmpfs (" << disk.error() << ")");
    return;
  }
  Loop loop;
  {
    FullDiskRig r(loop, data);
    LmdbChannel& ch = *r.ch;
    const std::optional<CursorId>& cursor = r.cursor;
    SourceOutput& out = *r.out;
    NumberedSource& source = *r.source;
    REQUIRE(test::run_until(loop, 20s, [&] {
      source.fill(1'000'000);
      return out.put_errors() >= 4;
    }));
    const long stuck_at = source.next - 1;
    // Everything stored is taken, and only the last lease is committed: that commit passes every
    // record, so one transaction deletes them all.
    std::vector<Lease> leases;
    std::size_t taken = 0;
    REQUIRE(test::run_until(loop, 5s, [&] {
      Batch b;
      auto l = ch.take(*cursor, b, {1'000'000, 1 << 30});
      REQUIRE(l.has_value());
      taken += b.size();
      if (!b.empty()) leases.push_back(std::move(*l));
      return taken == ch.events();
    }));
    struct Committer final : CommitListener {
      int ok = 0, failed = 0;
      void on_committed(std::uint64_t, Status st) noexcept override { ++(st.ok() ? ok : failed); }
    } committer;
    ch.commit(std::move(leases.back()), committer);
    leases.pop_back();
    REQUIRE(test::run_until(loop, 5s, [&] { return committer.ok + committer.failed == 1; }));
    CHECK(committer.ok == 1);
    // The source goes on: at least one more batch than before is stored.
    const bool resumed = test::run_until(loop, 10s, [&] {
      source.fill(stuck_at + 1000);
      return ch.events() > 0;
    });
    INFO("channel holds " << ch.events() << ", put errors " << out.put_errors() << ", source: '"
                          << out.health_problem() << "'");
    CHECK(resumed);
  }
  REQUIRE(loop.close() == 0);
}

TEST_CASE("lmdb channel: how long a take of a large batch holds the loop", "[unit][lmdb]") {
  Rig r;
  {
    LmdbConfig cfg;
    cfg.transaction_events = 1000;
    auto ch = r.open(cfg);
    auto cursor = ch->open_cursor("g");
    REQUIRE(cursor.has_value());
    // 16 records of 1000 events of 1 KiB, half compressible: 16 MiB decoded.
    std::mt19937 rng(1);
    for (std::uint64_t seq = 1; seq <= 16; ++seq) {
      Batch b;
      for (int i = 0; i < 1000; ++i) {
        std::string body(1024, 'a');
        for (std::size_t j = 0; j < body.size(); j += 2)
          body[j] = static_cast<char>('a' + rng() % 26);
        b.add(body, 1, 1);
      }
      r.put(*ch, std::move(b), seq);
    }
    // What one loop turn of a sink group does: take up to max_in_flight (4) leases of up to 4 MiB,
    // until the channel answers empty.
    Batch out;
    double worst_ms = 0;
    std::size_t turns = 0, taken = 0, most = 0;
    std::vector<Lease> leases;
    while (taken < 16000) {
      const auto t0 = std::chrono::steady_clock::now();
      std::size_t this_turn = 0;
      for (int in_flight = 0; in_flight < 4; ++in_flight) {
        auto lease = ch->take(*cursor, out, {4000, 4u << 20});
        REQUIRE(lease.has_value());
        if (out.empty()) break;
        this_turn += out.size();
        leases.push_back(std::move(*lease));
      }
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      worst_ms = std::max(worst_ms, ms);
      most = std::max(most, this_turn);
      taken += this_turn;
      ++turns;
      REQUIRE(turns < 100);
      // The next turn: wait_for_data answers on it.
      ch->wait_for_data(*cursor, r.l);
      const int before = r.l.data;
      REQUIRE(test::run_until(r.loop, 1s, [&] { return r.l.data > before || taken >= 16000; }));
    }
    WARN("16000 events (16000 KiB decoded) taken in " << turns << " loop turns, at most " << most
                                                      << " events and " << worst_ms
                                                      << " ms in one turn");
    // The budget is checked after each record (1 MiB here): a turn may overshoot by one.
    CHECK(turns >= 3);
    CHECK(most < 16000);
    for (auto& l : leases) r.commit(*ch, std::move(l));
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb channel: a put that fails to store leaves the batch with its caller",
          "[unit][lmdb]") {
  test::TempDir dir;
  const std::string data = dir.file("data");
  SmallDisk disk(data, "2m");
  if (!disk.ok()) {
    WARN("skipped: cannot mount a tmpfs (" << disk.error() << ")");
    return;
  }
  Loop loop;
  {
    MetricsRegistry metrics;
    SharedResources shared;
    ComponentContext ctx{loop, metrics, "durable", "lmdb", data, &shared};
    LmdbConfig cfg;
    cfg.compression_level = 0;
    auto created = LmdbChannel::create(cfg, ctx);
    REQUIRE(created.has_value());
    LmdbChannel& ch = **created;
    Listener l;
    Status failed;
    Batch b;
    for (std::uint64_t seq = 1; seq < 100 && failed.ok(); ++seq) {
      b = test::make_batch(100, std::string(1000, 'x'));
      ch.put(b, SourceCheckpoint{&l, seq, {}, {}}, l);
      REQUIRE(test::run_until(loop, 5s, [&] { return l.puts.size() == seq; }));
      failed = l.puts.back();
    }
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.code() == Errc::backpressure);
    CHECK(b.size() == 100);  // the caller still has every event
    CHECK(bodies(b) == bodies(test::make_batch(100, std::string(1000, 'x'))));
  }
  REQUIRE(loop.close() == 0);
}

namespace {

// Every part of an event, to compare what two cursors were given.
std::vector<std::string> dump(const Batch& b) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const EventView e = b[i];
    std::string s = std::string(e.body()) + "|" + std::to_string(e.timestamp_ns()) + "|" +
                    std::to_string(e.id());
    for (std::size_t h = 0; h < e.header_count(); ++h)
      s += "|h:" + std::string(e.header(h).key) + "=" + std::string(e.header(h).value);
    for (std::size_t f = 0; f < e.field_count(); ++f)
      s += "|f:" + std::string(e.field(f).key) + "=" + std::string(e.field(f).text) + ":" +
           std::to_string(static_cast<int>(e.field(f).type));
    out.push_back(std::move(s));
  }
  return out;
}

Batch rich_batch(std::size_t n, std::string_view prefix) {
  Batch b;
  b.set_common_header("host", "h1");
  for (std::size_t i = 0; i < n; ++i) {
    b.add(std::string(prefix) + std::to_string(i), static_cast<std::int64_t>(1000 + i), 7 + i);
    b.add_header("file", "/var/log/" + std::to_string(i % 3));
    b.add_field("game_id", "g" + std::to_string(i % 7), FieldType::string);
    b.add_field("uid", std::to_string(148950000 + i), FieldType::integer);
  }
  return b;
}

}  // namespace

TEST_CASE("lmdb channel: cursors reading the same records in any order get identical events",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open();
    const CursorId a = *ch->open_cursor("a");
    const CursorId b = *ch->open_cursor("b");
    std::vector<std::string> expected;
    for (int i = 0; i < 40; ++i) {
      Batch batch = rich_batch(50, "r" + std::to_string(i) + "-");
      for (auto& s : dump(batch)) expected.push_back(s);
      r.put(*ch, std::move(batch), static_cast<std::uint64_t>(i + 1));
    }
    // a in takes of 30 events (each stops inside a record and meets it again next time), b in
    // takes of 500; interleaved, then a rollback of b read once more.
    std::vector<std::string> seen_a, seen_b;
    Batch out;
    bool rolled = false;
    while (seen_a.size() < expected.size() || seen_b.size() < expected.size()) {
      auto la = ch->take(a, out, {30, 1 << 20});
      for (auto& s : dump(out)) seen_a.push_back(s);
      if (la && la->events() > 0) r.commit(*ch, std::move(*la));
      auto lb = ch->take(b, out, {500, 1 << 20});
      if (lb && lb->events() > 0) {
        if (!rolled && seen_b.size() >= 500) {
          lb->rollback();
          rolled = true;
          continue;
        }
        for (auto& s : dump(out)) seen_b.push_back(s);
        r.commit(*ch, std::move(*lb));
      }
      REQUIRE(seen_a.size() <= expected.size());
      REQUIRE(seen_b.size() <= expected.size());
    }
    CHECK(seen_a == expected);
    CHECK(seen_b == expected);
    REQUIRE(test::run_until(r.loop, 5s, [&] { return ch->events() == 0; }));
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb channel: a record damaged after one cursor read it is quarantined for the other",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open();
    const CursorId a = *ch->open_cursor("a");
    const CursorId b = *ch->open_cursor("b");
    r.put(*ch, test::make_batch(1, "good-"), 1);
    r.put(*ch, test::make_batch(1, "bad-"), 2);
    r.put(*ch, test::make_batch(1, "fine-"), 3);
    Batch out;
    auto la = ch->take(a, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"good-0", "bad-0", "fine-0"});
    const std::shared_ptr<LmdbEnv>& env = ch->env();
    auto dbi = env->dbi("c:durable");
    bool flipped = false;
    env->submit({[&, d = *dbi](MDB_txn* txn) {
                   std::string key(8, '\0');
                   key[7] = 2;
                   MDB_val k{8, key.data()}, v{};
                   int rc = mdb_get(txn, d, &k, &v);
                   if (rc != 0) return rc;
                   std::string copy(static_cast<const char*>(v.mv_data), v.mv_size);
                   copy[copy.size() - 3] ^= 0x01;
                   MDB_val nv{copy.size(), copy.data()};
                   return mdb_put(txn, d, &k, &nv, 0);
                 },
                 [&](Status st) { flipped = st.ok(); }, true});
    REQUIRE(test::run_until(r.loop, 5s, [&] { return flipped; }));
    auto lb = ch->take(b, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"good-0", "fine-0"});
    CHECK(ch->quarantined() == 1);
    r.commit(*ch, std::move(*la));
    r.commit(*ch, std::move(*lb));
    REQUIRE(test::run_until(r.loop, 5s, [&] { return ch->events() == 0; }));
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb record codec: records sealed one after another are the same as sealed alone",
          "[unit][lmdb]") {
  // The compression context is kept across records: a record must not depend on the ones sealed
  // before it, so sealing A, then B, then A again gives the first A's bytes, and each decodes.
  Batch a = rich_batch(300, "alpha-");
  Batch b = test::make_batch(50, "beta-");
  std::string pa, pb;
  serialize_batch(a, pa);
  serialize_batch(b, pb);
  for (int level : {1, 3, 19}) {
    std::string first_a, rec_b, second_a, scratch;
    seal_record(pa, 300, level, first_a);
    seal_record(pb, 50, level, rec_b);
    seal_record(pa, 300, level, second_a);
    CHECK(first_a == second_a);
    CHECK(first_a.size() < pa.size());  // compressed
    Batch out;
    REQUIRE(decode_record(rec_b, out, scratch).ok());
    CHECK(dump(out) == dump(b));
    REQUIRE(decode_record(second_a, out, scratch).ok());
    CHECK(dump(out) == dump(a));
  }
}

TEST_CASE("lmdb channel: a closed cursor holds nothing back and its stored position is removed",
          "[unit][lmdb]") {
  Rig r;
  {
    auto ch = r.open();
    const CursorId a = *ch->open_cursor("a");
    const CursorId gone = *ch->open_cursor("gone");
    CHECK(ch->cursor_count() == 2);
    r.put(*ch, test::make_batch(2, "x"), 1);
    r.put(*ch, test::make_batch(2, "y"), 2);
    Batch out;
    // "gone" holds a lease when it is closed: the lease is forgotten, dropping it is a no-op.
    auto held = test::take_some(r.loop, *ch, gone, out, {2, 1 << 20});
    auto all = test::take_some(r.loop, *ch, a, out, {100, 1 << 20});
    r.commit(*ch, std::move(*all));
    CHECK(ch->events() == 4);  // "gone" has committed nothing
    ch->close_cursor(gone);
    ch->close_cursor(gone);  // twice is once
    REQUIRE(test::run_until(r.loop, 5s, [&] { return ch->events() == 0; }));
    held->rollback();
    CHECK(ch->events() == 0);
    // Never read again, and never waited on.
    Listener waiting;
    ch->wait_for_data(gone, waiting);
    r.put(*ch, test::make_batch(1, "z"), 3);
    auto none = ch->take(gone, out, {100, 1 << 20});
    REQUIRE(none.has_value());
    CHECK_FALSE(none->held());
    CHECK(out.empty());
    auto z = test::take_some(r.loop, *ch, a, out, {100, 1 << 20});
    CHECK(bodies(out) == std::vector<std::string>{"z0"});
    r.commit(*ch, std::move(*z));
    REQUIRE(test::run_until(r.loop, 5s, [&] { return ch->events() == 0; }));
    CHECK(waiting.data == 0);
  }
  // Its stored position is gone: `sluice channel stats` lists only "a".
  r.shared.reset();
  const std::string stats_file = r.dir.file("stats.txt");
  std::FILE* f = std::fopen(stats_file.c_str(), "w");
  REQUIRE(f != nullptr);
  REQUIRE(print_channel_stats(r.dir.path(), "durable", f).ok());
  std::fclose(f);
  const std::string stats = test::read_file(stats_file);
  CHECK(stats.find("cursor a:") != std::string::npos);
  CHECK(stats.find("cursor gone") == std::string::npos);
  REQUIRE(r.close() == 0);
}

namespace {

// Fills a channel with `batches` records of 5 events of ~100 bytes ("<prefix>-<batch>-<i>"),
// then takes and commits the first `delivered` of them: their records are deleted, the cursor
// stored past them.
void fill(Rig& r, LmdbChannel& ch, CursorId cur, int batches, int delivered,
          std::string_view prefix = "rec") {
  for (int b = 0; b < batches; ++b) {
    Batch batch;
    for (int i = 0; i < 5; ++i) {
      batch.add(fmt::format("{}-{:05}-{}-{}", prefix, b, i, std::string(80, 'p')), b, b);
    }
    r.put(ch, std::move(batch), static_cast<std::uint64_t>(b + 1));
  }
  for (int b = 0; b < delivered; ++b) {
    Batch out;
    auto lease = test::take_some(r.loop, ch, cur, out, {5, 1 << 20});
    REQUIRE(lease.has_value());
    REQUIRE(out.size() == 5);
    r.commit(ch, std::move(*lease));
  }
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The records of channel `name` as LMDB reads them from a sound file: seq -> value.
std::map<std::uint64_t, std::string> stored_records(const std::string& dir,
                                                    const std::string& name) {
  std::map<std::uint64_t, std::string> out;
  MDB_env* env = nullptr;
  REQUIRE(mdb_env_create(&env) == 0);
  mdb_env_set_maxdbs(env, 16);
  REQUIRE(mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0640) == 0);
  MDB_txn* txn = nullptr;
  REQUIRE(mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) == 0);
  MDB_dbi dbi = 0;
  REQUIRE(mdb_dbi_open(txn, ("c:" + name).c_str(), 0, &dbi) == 0);
  MDB_cursor* c = nullptr;
  REQUIRE(mdb_cursor_open(txn, dbi, &c) == 0);
  MDB_val k{}, v{};
  for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    std::uint64_t seq = 0;
    for (std::size_t i = 0; i < 8; ++i)
      seq = (seq << 8) | static_cast<const unsigned char*>(k.mv_data)[i];
    out.emplace(seq, std::string(static_cast<const char*>(v.mv_data), v.mv_size));
  }
  mdb_cursor_close(c);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return out;
}

// 400 records stored, the first 60 delivered, the channel closed: returns the environment's
// directory.
std::string filled_env(Rig& r) {
  {
    auto ch = r.open(LmdbConfig{.compression_level = 0});
    fill(r, *ch, *ch->open_cursor("g"), 400, 60);
  }
  r.shared.reset();  // the environment closed, as at an agent's exit; the loop stays usable
  return r.dir.path() + "/lmdb";
}

}  // namespace

TEST_CASE("lmdb salvage: a truncated file gives back every stored record still whole in it",
          "[unit][lmdb]") {
  Rig r;
  const std::string dir = filled_env(r);
  const auto records = stored_records(dir, "durable");
  REQUIRE(records.size() == 340);
  const std::string image = file_bytes(dir + "/data.mdb");
  for (const double keep : {1.0, 0.75, 0.5, 0.3}) {
    const std::string cut = image.substr(0, static_cast<std::size_t>(image.size() * keep));
    // The oracle, reading no more than page headers: a record can be salvaged when a whole
    // copy of it lies in what is left, in the node area of a leaf page (every record here fits
    // in its leaf; a page reused for a branch keeps stale bytes between its nodes and offsets).
    std::set<std::uint64_t> whole;
    for (const auto& [seq, rec] : records) {
      for (std::size_t at = cut.find(rec); at != std::string::npos; at = cut.find(rec, at + 1)) {
        const std::size_t page = at / 4096 * 4096;
        std::uint16_t flags = 0, upper = 0;
        std::memcpy(&flags, cut.data() + page + 10, 2);
        std::memcpy(&upper, cut.data() + page + 14, 2);
        if (flags == 2 && at - page >= upper) whole.insert(seq);
      }
    }
    const Salvage s = salvage_image(cut);
    INFO("kept " << keep << " of " << image.size() << " bytes: " << s.summary());
    REQUIRE(s.meta_found);
    std::set<std::uint64_t> got;
    if (s.channels.count("durable") != 0) {
      for (const auto& [seq, rec] : s.channels.at("durable").records) {
        got.insert(seq);
        CHECK(records.count(seq) == 1);
        if (records.count(seq) != 0) CHECK(rec == records.at(seq));
      }
    }
    CHECK(got == whole);  // nothing delivered before (seq <= 60) comes back, nothing whole is left
    if (keep == 1.0) CHECK(got.size() == 340);
    if (keep == 0.5) CHECK(got.size() > 100);
  }
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb salvage: a truncated environment reopened with quarantine delivers what survived",
          "[unit][lmdb]") {
  Rig r;
  const std::string dir = filled_env(r);
  const auto size = std::filesystem::file_size(dir + "/data.mdb");
  std::filesystem::resize_file(dir + "/data.mdb", size / 2);
  Loop loop2;
  MetricsRegistry metrics2;
  auto shared = std::make_unique<SharedResources>();
  ComponentContext ctx{loop2, metrics2, "durable", "lmdb", r.dir.path()};
  ctx.shared = shared.get();
  Listener l;
  {
    auto made = LmdbChannel::create(LmdbConfig{.quarantine_corrupt = true}, ctx);
    REQUIRE(made.has_value());
    auto& ch = **made;
    CHECK(ch.env()->quarantine_note().find("; salvaged ") != std::string::npos);
    const CursorId cur = *ch.open_cursor("g");
    std::set<std::string> seen;
    std::uint64_t events = 0;
    while (true) {
      Batch out;
      auto lease = test::take_some(loop2, ch, cur, out, {1000, 64 << 20}, 200ms);
      if (!lease.has_value() || out.empty()) break;
      for (std::size_t i = 0; i < out.size(); ++i) {
        const std::string body(out[i].body());
        CHECK(seen.insert(body).second);      // no event twice
        CHECK(body.substr(4, 5) >= "00060");  // none that had been delivered
      }
      events += out.size();
      ch.commit(std::move(*lease), l);
    }
    INFO(ch.env()->quarantine_note());
    CHECK(events > 500);  // about half of the 1700 stored
    CHECK(metrics2.render().find(
              "sluice_channel_salvaged_events{component=\"durable\",type=\"lmdb\"} " +
              std::to_string(events)) != std::string::npos);
    // New puts after the salvage go on past the salvaged sequence numbers.
    Batch fresh = test::make_batch(2, "new-");
    ch.put(fresh, SourceCheckpoint{&l, 1, {}, {}}, l);
    REQUIRE(test::run_until(loop2, 5s, [&] { return !l.puts.empty(); }));
    CHECK(l.puts.back().ok());
    Batch out;
    auto lease = test::take_some(loop2, ch, cur, out, {1000, 64 << 20});
    REQUIRE(lease.has_value());
    CHECK(bodies(out) == std::vector<std::string>{"new-0", "new-1"});
  }
  shared.reset();
  CHECK(loop2.close() == 0);
  REQUIRE(r.close() == 0);
}

TEST_CASE("lmdb salvage: damaged bytes anywhere never crash it and never give a wrong record",
          "[unit][lmdb]") {
  Rig r;
  const std::string dir = r.dir.path() + "/lmdb";
  {
    auto ch = r.open(LmdbConfig{.compression_level = 3});
    fill(r, *ch, *ch->open_cursor("g"), 120, 0);
  }
  r.shared.reset();
  // Every record ever stored (stale copies of delivered ones are in the file too), then 10
  // delivered.
  std::set<std::string> values;
  for (const auto& [seq, rec] : stored_records(dir, "durable")) values.insert(rec);
  REQUIRE(values.size() == 120);
  {
    auto ch = r.open(LmdbConfig{.compression_level = 3});
    const CursorId cur = *ch->open_cursor("g");
    for (int b = 0; b < 10; ++b) {
      Batch out;
      auto lease = test::take_some(r.loop, *ch, cur, out, {5, 1 << 20});
      REQUIRE(lease.has_value());
      r.commit(*ch, std::move(*lease));
    }
  }
  REQUIRE(r.close() == 0);
  const std::string image = file_bytes(dir + "/data.mdb");
  std::mt19937_64 rng(16);
  for (int round = 0; round < 300; ++round) {
    std::string damaged = image.substr(0, rng() % (image.size() + 1));
    const int flips = 1 + static_cast<int>(rng() % 64);
    for (int f = 0; f < flips && !damaged.empty(); ++f) {
      damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
    }
    const Salvage s = salvage_image(damaged);
    for (const auto& [name, ch] : s.channels) {
      for (const auto& [seq, rec] : ch.records) {
        // A damaged key can give a record another place in the order; its events are intact.
        CHECK(values.count(std::string(rec)) == 1);
      }
    }
  }
}

TEST_CASE("lmdb salvage: with two channels in one environment each record goes to its own",
          "[unit][lmdb]") {
  test::TempDir tmp;
  Loop loop;
  MetricsRegistry metrics;
  std::string dir;
  {
    auto shared = std::make_unique<SharedResources>();
    ComponentContext a_ctx{loop, metrics, "a", "lmdb", tmp.path()};
    ComponentContext b_ctx{loop, metrics, "b", "lmdb", tmp.path()};
    a_ctx.shared = b_ctx.shared = shared.get();
    auto a = LmdbChannel::create(LmdbConfig{.compression_level = 0}, a_ctx);
    auto b = LmdbChannel::create(LmdbConfig{.compression_level = 0}, b_ctx);
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    Listener l;
    for (int i = 0; i < 200; ++i) {
      for (auto* ch : {a->get(), b->get()}) {
        Batch batch;
        batch.add(fmt::format("{}-{:05}-{}", ch == a->get() ? "a" : "b", i, std::string(90, 'q')),
                  i, i);
        const std::size_t before = l.puts.size();
        ch->put(batch, SourceCheckpoint{&l, static_cast<std::uint64_t>(i + 1), {}, {}}, l);
        REQUIRE(test::run_until(loop, 5s, [&] { return l.puts.size() > before; }));
      }
    }
    dir = tmp.path() + "/lmdb";
  }
  REQUIRE(loop.close() == 0);
  const std::string image = file_bytes(dir + "/data.mdb");
  for (const double keep : {1.0, 0.6, 0.4}) {
    // The salvage's views point into the image it read: keep that alive while they are used.
    const std::string cut = image.substr(0, static_cast<std::size_t>(image.size() * keep));
    const Salvage s = salvage_image(cut);
    INFO(s.summary());
    std::size_t total = 0;
    for (const auto& [name, ch] : s.channels) {
      Batch out;
      std::string scratch;
      for (const auto& [seq, rec] : ch.records) {
        REQUIRE(decode_record(rec, out, scratch).ok());
        CHECK(out[0].body().substr(0, 2) == name + "-");
        ++total;
      }
    }
    if (keep == 1.0) CHECK(total == 400);
  }
}

TEST_CASE("lmdb salvage: a start interrupted during a salvage loses nothing at the next start",
          "[unit][lmdb]") {
  Rig r;
  const std::string dir = filled_env(r);
  const auto size = std::filesystem::file_size(dir + "/data.mdb");
  SECTION("a crash before the damaged environment was moved aside: the salvage starts again") {
    std::filesystem::resize_file(dir + "/data.mdb", size / 2);
    std::filesystem::create_directories(dir + ".salvaging");
    test::write_file(dir + ".salvaging/data.mdb", "half a salvage");
    auto ch = r.open(LmdbConfig{.quarantine_corrupt = true});
    CHECK(ch->env()->salvaged_events("durable") > 500);
    CHECK(ch->events() == ch->env()->salvaged_events("durable"));
    CHECK(!std::filesystem::exists(dir + ".salvaging"));
  }
  SECTION("a crash between the two renames: the complete salvage is put in place") {
    std::filesystem::rename(dir, dir + ".salvaging");
    auto ch = r.open(LmdbConfig{.quarantine_corrupt = true});
    CHECK(ch->events() == 340 * 5);
    CHECK(ch->env()->quarantine_note().empty());
    CHECK(!std::filesystem::exists(dir + ".salvaging"));
  }
  REQUIRE(r.close() == 0);
}

namespace {

// A record as the codec wrote it before fields could name ranges of the body: key, type, text.
std::string record_before_body_ranges(std::string_view body, std::string_view key,
                                      std::string_view text, FieldType type) {
  std::string p;
  auto u16 = [&](std::uint16_t v) { p.append(reinterpret_cast<const char*>(&v), 2); };
  auto u32 = [&](std::uint32_t v) { p.append(reinterpret_cast<const char*>(&v), 4); };
  auto u64 = [&](std::uint64_t v) { p.append(reinterpret_cast<const char*>(&v), 8); };
  auto str = [&](std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    p.append(s);
  };
  u16(0);  // no common headers
  u64(5);  // timestamp
  u64(6);  // id
  str(body);
  u16(0);  // headers
  u16(1);  // fields
  str(key);
  p.push_back(static_cast<char>(type));
  str(text);
  std::string rec;
  seal_record(p, 1, 0, rec);
  rec[8] = 0;  // flags as they were: stored, no body ranges
  const auto crc = static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(rec.data() + 8), static_cast<uInt>(rec.size() - 8)));
  std::memcpy(rec.data() + 4, &crc, 4);
  return rec;
}

}  // namespace

TEST_CASE("lmdb record codec: fields that are ranges of the body are stored as ranges",
          "[unit][lmdb]") {
  // What a JSON source puts: the fields' keys and texts are views of the line.
  const std::string line = R"({"game_id": "g1", "uid": 148950042, "msg": "a\"b"})";
  const std::string_view body = line;
  const Field fields[] = {
      {body.substr(2, 7), body.substr(13, 2), FieldType::string},    // game_id: g1
      {body.substr(19, 3), body.substr(25, 9), FieldType::integer},  // uid
      {"msg", "a\"b", FieldType::string},                            // unescaped: a copy
  };
  Batch b;
  b.add_event(body, 1, 2, nullptr, 0, fields, 3);
  b.add_event("plain", 3, 4, nullptr, 0, nullptr, 0);
  REQUIRE(b[0].field(0).key == "game_id");
  REQUIRE(b[0].field(1).text == "148950042");
  for (int level : {0, 3}) {
    std::string payload, record, scratch;
    serialize_batch(b, payload);
    // The fields inside the body are ranges: their bytes are in the payload once, in the body.
    CHECK(payload.find("game_id") == payload.rfind("game_id"));
    CHECK(payload.find("148950042") == payload.rfind("148950042"));
    seal_record(payload, 2, level, record);
    Batch out;
    REQUIRE(decode_record(record, out, scratch).ok());
    REQUIRE(out.size() == 2);
    CHECK(out[0].body() == line);
    REQUIRE(out[0].field_count() == 3);
    CHECK(out[0].field(0).key == "game_id");
    CHECK(out[0].field(0).text == "g1");
    CHECK(out[0].field(1).key == "uid");
    CHECK(out[0].field(1).text == "148950042");
    CHECK(out[0].field(1).type == FieldType::integer);
    CHECK(out[0].field(2).key == "msg");
    CHECK(out[0].field(2).text == "a\"b");
    // As the source's batch: the ranges stay parts of the body, counted once.
    CHECK(out[0].bytes() == b[0].bytes());
    CHECK(out[1].body() == "plain");
    CHECK(out[1].field_count() == 0);
  }
  // A range past the end of its body is damage, not a crash or a read beyond it.
  std::string payload, record, scratch;
  Batch one;
  one.add_event(body, 1, 2, nullptr, 0, fields, 1);
  serialize_batch(one, payload);
  // The last field's key range is offset 2, length 7, then its text's: offset 13, length 2
  // (one-byte varints). An offset past the body:
  REQUIRE(payload.substr(payload.size() - 4) == std::string("\x02\x07\x0d\x02"));
  payload[payload.size() - 2] = 0x7f;
  seal_record(payload, 1, 0, record);
  Batch out;
  const Status st = decode_record(record, out, scratch);
  CHECK(st.code() == Errc::invalid_data);
  CHECK(st.message() == "record payload does not parse");
  CHECK(out.empty());
}

TEST_CASE("lmdb record codec: records written before body ranges still decode", "[unit][lmdb]") {
  const std::string rec = record_before_body_ranges("the line", "n", "7", FieldType::integer);
  Batch out;
  std::string scratch;
  REQUIRE(decode_record(rec, out, scratch).ok());
  REQUIRE(out.size() == 1);
  CHECK(out[0].body() == "the line");
  CHECK(out[0].timestamp_ns() == 5);
  CHECK(out[0].id() == 6);
  REQUIRE(out[0].field_count() == 1);
  CHECK(out[0].field(0).key == "n");
  CHECK(out[0].field(0).text == "7");
  CHECK(out[0].field(0).type == FieldType::integer);
  // Flags this version does not know are refused, not guessed at.
  std::string unknown = rec;
  unknown[8] = 4;
  const auto crc =
      static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(unknown.data() + 8),
                                       static_cast<uInt>(unknown.size() - 8)));
  std::memcpy(unknown.data() + 4, &crc, 4);
  const Status st = decode_record(unknown, out, scratch);
  CHECK(st.code() == Errc::invalid_data);
  CHECK(st.message() == "unknown record flags");
}

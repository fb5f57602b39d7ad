// The rules of lib/core/channel.h, proven for every channel: each case runs over every fixture.
#include <catch2/catch.hpp>
#include <memory>

#include "channels/lmdb/lmdb_channel.h"
#include "channels/memory/memory_channel.h"
#include "lib/core/channel.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace std::chrono_literals;

namespace {

// Every channel is made with room for 8 events, at most 4 per transaction.
constexpr std::uint64_t kMaxEvents = 8;
constexpr std::uint32_t kTransaction = 4;

struct MemoryFixture {
  explicit MemoryFixture(Loop& l) : loop(l) { open(); }
  void open() {
    auto c = channels::MemoryChannel::create(
        {.max_events = kMaxEvents, .max_bytes = {1 << 20}, .transaction_events = kTransaction},
        ctx);
    REQUIRE(c.has_value());
    channel = std::move(*c);
  }
  Loop& loop;
  test::TempDir dir;
  MetricsRegistry metrics;
  ComponentContext ctx{loop, metrics, "buf", "memory", dir.path()};
  std::unique_ptr<Channel> channel;
};

struct LmdbFixture {
  explicit LmdbFixture(Loop& l) : loop(l) { open(); }
  void open() {
    channels::LmdbConfig cfg;
    cfg.max_events = kMaxEvents;
    cfg.transaction_events = kTransaction;
    // Each open is one agent start (the previous channel is gone): a store of its own.
    shared = std::make_unique<SharedResources>();
    ctx.shared = shared.get();
    auto c = channels::LmdbChannel::create(cfg, ctx);
    REQUIRE(c.has_value());
    channel = std::move(*c);
  }
  Loop& loop;
  test::TempDir dir;
  MetricsRegistry metrics;
  std::unique_ptr<SharedResources> shared;
  ComponentContext ctx{loop, metrics, "durable", "lmdb", dir.path()};
  std::unique_ptr<Channel> channel;
};

// Records every callback, and whether it came from inside a channel call.
struct Recorder final : PutListener, SafeListener, SpaceListener, DataListener, CommitListener {
  bool inside = false;  // set by the test around a channel call that must not call back
  int inline_calls = 0;
  std::vector<std::pair<std::uint64_t, Status>> puts;
  std::vector<std::uint64_t> safe, commits;
  int space = 0, data = 0;
  void on_put_done(std::uint64_t seq, Status st) noexcept override {
    puts.emplace_back(seq, std::move(st));
  }
  void on_safe_in_channel(std::uint64_t seq) noexcept override { safe.push_back(seq); }
  void on_space() noexcept override {
    if (inside) ++inline_calls;
    ++space;
  }
  void on_data() noexcept override {
    if (inside) ++inline_calls;
    ++data;
  }
  void on_committed(std::uint64_t token, Status st) noexcept override {
    commits.push_back(st.ok() ? token : ~0ULL);
  }
};

std::vector<std::string> bodies(const Batch& b) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < b.size(); ++i) out.emplace_back(b[i].body());
  return out;
}

// Puts `batch` and runs the loop until its answer came.
template <class F>
Status put(F& f, Recorder& r, Batch& batch, std::uint64_t seq) {
  const std::size_t before = r.puts.size();
  f.channel->put(batch, SourceCheckpoint{&r, seq, {}, {}}, r);
  REQUIRE(test::run_until(f.loop, 5s, [&] { return r.puts.size() > before; }));
  REQUIRE(r.puts.size() == before + 1);
  REQUIRE(r.puts.back().first == seq);
  return r.puts.back().second;
}

template <class F>
void commit(F& f, Recorder& r, Lease&& lease) {
  const std::size_t before = r.commits.size();
  f.channel->commit(std::move(lease), r);
  REQUIRE(test::run_until(f.loop, 5s, [&] { return r.commits.size() > before; }));
}

// Closes every handle and the loop: non-zero when one leaked.
int close_loop(Loop& loop) { return loop.close(); }

// Runs the loop for a few turns so that a deferred callback would have run.
void settle(Loop& loop) {
  test::run_until(loop, 50ms, [] { return false; });
}

}  // namespace

TEMPLATE_TEST_CASE("channel: every put is answered once, with its sequence number",
                   "[unit][contract]", MemoryFixture, LmdbFixture) {
  Loop loop;
  {
    TestType f(loop);
    REQUIRE(f.channel->open_cursor("g").has_value());
    Recorder r;
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
      Batch b = test::make_batch(2, "p" + std::to_string(seq));
      f.channel->put(b, SourceCheckpoint{&r, seq, {}, {}}, r);
    }
    REQUIRE(test::run_until(loop, 5s, [&] { return r.puts.size() == 3; }));
    settle(loop);
    REQUIRE(r.puts.size() == 3);
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
      CHECK(r.puts[seq - 1].first == seq);
      CHECK(r.puts[seq - 1].second.ok());
    }
    CHECK(f.channel->events() == 6);
  }
  REQUIRE(close_loop(loop) == 0);
}

TEMPLATE_TEST_CASE("channel: a failed put leaves the batch with its caller", "[unit][contract]",
                   MemoryFixture, LmdbFixture) {
  Loop loop;
  {
    TestType f(loop);
    REQUIRE(f.channel->open_cursor("g").has_value());
    Recorder r;
    // Larger than one transaction: refused, the batch unchanged.
    Batch big = test::make_batch(kTransaction + 1, "big");
    CHECK_FALSE(put(f, r, big, 1).ok());
    CHECK(bodies(big) == bodies(test::make_batch(kTransaction + 1, "big")));
    // Full: back-pressure, the batch unchanged; put again once there is room, it is stored.
    for (std::uint64_t seq = 2; seq <= 3; ++seq) {
      Batch b = test::make_batch(kTransaction, "fill");
      REQUIRE(put(f, r, b, seq).ok());
    }
    Batch refused = test::make_batch(2, "late");
    const Status st = put(f, r, refused, 4);
    CHECK(st.code() == Errc::backpressure);
    CHECK(bodies(refused) == std::vector<std::string>{"late0", "late1"});
    f.channel->wait_for_space(r);
    Batch out;
    auto lease = test::take_some(loop, *f.channel, 0, out, {kTransaction, 1 << 20});
    REQUIRE(lease.has_value());
    REQUIRE(out.size() == kTransaction);
    commit(f, r, std::move(*lease));
    REQUIRE(test::run_until(loop, 5s, [&] { return r.space == 1; }));
    REQUIRE(put(f, r, refused, 4).ok());
    auto l2 = test::take_some(loop, *f.channel, 0, out, {kTransaction, 1 << 20});
    auto l3 = test::take_some(loop, *f.channel, 0, out, {kTransaction, 1 << 20});
    REQUIRE(l3.has_value());
    CHECK(bodies(out) == std::vector<std::string>{"late0", "late1"});
  }
  REQUIRE(close_loop(loop) == 0);
}

TEMPLATE_TEST_CASE("channel: on_space and on_data come later, never from inside a channel call",
                   "[unit][contract]", MemoryFixture, LmdbFixture) {
  Loop loop;
  {
    TestType f(loop);
    auto cursor = f.channel->open_cursor("g");
    REQUIRE(cursor.has_value());
    Recorder r;
    Batch b = test::make_batch(2, "a");
    REQUIRE(put(f, r, b, 1).ok());
    Batch out;
    auto lease = test::take_some(loop, *f.channel, *cursor, out, {kTransaction, 1 << 20});
    REQUIRE(lease.has_value());
    REQUIRE(out.size() == 2);
    // Nothing left to take: arm the cursor, then give the events back.
    f.channel->wait_for_data(*cursor, r);
    settle(loop);
    REQUIRE(r.data == 0);
    r.inside = true;
    lease->rollback();
    r.inside = false;
    REQUIRE(test::run_until(loop, 5s, [&] { return r.data == 1; }));
    CHECK(r.inline_calls == 0);
    settle(loop);
    CHECK(r.data == 1);  // once
    // Arming with events already there answers on a later turn, too.
    r.inside = true;
    f.channel->wait_for_data(*cursor, r);
    r.inside = false;
    REQUIRE(test::run_until(loop, 5s, [&] { return r.data == 2; }));
    CHECK(r.inline_calls == 0);
    // Fill, wait for space, commit: on_space once, after the commit, not inside it.
    for (std::uint64_t seq = 2; seq <= 3; ++seq) {
      Batch fill = test::make_batch(3, "f");
      REQUIRE(put(f, r, fill, seq).ok());
    }
    Batch late = test::make_batch(2, "late");
    REQUIRE(put(f, r, late, 4).code() == Errc::backpressure);
    r.inside = true;
    f.channel->wait_for_space(r);
    r.inside = false;
    auto l2 = test::take_some(loop, *f.channel, *cursor, out, {kTransaction, 1 << 20});
    REQUIRE(l2.has_value());
    r.inside = true;
    f.channel->commit(std::move(*l2), r);
    r.inside = false;
    REQUIRE(test::run_until(loop, 5s, [&] { return r.space == 1; }));
    settle(loop);
    CHECK(r.space == 1);
    CHECK(r.inline_calls == 0);
  }
  REQUIRE(close_loop(loop) == 0);
}

TEMPLATE_TEST_CASE("channel: rolling back from the middle keeps the order", "[unit][contract]",
                   MemoryFixture, LmdbFixture) {
  Loop loop;
  {
    TestType f(loop);
    auto cursor = f.channel->open_cursor("g");
    REQUIRE(cursor.has_value());
    Recorder r;
    for (std::uint64_t seq = 1; seq <= 4; ++seq) {
      Batch b = test::make_batch(2, std::string(1, static_cast<char>('a' + seq - 1)));
      REQUIRE(put(f, r, b, seq).ok());
    }
    std::vector<Lease> leases;
    Batch out;
    for (int i = 0; i < 4; ++i) {
      auto l = test::take_some(loop, *f.channel, *cursor, out, {2, 1 << 20});
      REQUIRE(l.has_value());
      REQUIRE(out.size() == 2);
      leases.push_back(std::move(*l));
    }
    commit(f, r, std::move(leases[0]));
    // A Retry on the second lease: the group rolls back it and every later one, newest first.
    leases[3].rollback();
    leases[2].rollback();
    leases[1].rollback();
    std::vector<std::string> seen;
    for (int i = 0; i < 3; ++i) {
      auto l = test::take_some(loop, *f.channel, *cursor, out, {2, 1 << 20});
      REQUIRE(l.has_value());
      for (auto& s : bodies(out)) seen.push_back(s);
      leases[static_cast<std::size_t>(i)] = std::move(*l);
    }
    CHECK(seen == std::vector<std::string>{"b0", "b1", "c0", "c1", "d0", "d1"});
    // A dropped lease rolls back, too.
    leases.clear();
    auto again = test::take_some(loop, *f.channel, *cursor, out, {kTransaction, 1 << 20});
    REQUIRE(again.has_value());
    CHECK(bodies(out) == std::vector<std::string>{"b0", "b1", "c0", "c1"});
  }
  REQUIRE(close_loop(loop) == 0);
}

TEMPLATE_TEST_CASE("channel: commits in take order are each answered once and remove the events",
                   "[unit][contract]", MemoryFixture, LmdbFixture) {
  Loop loop;
  {
    TestType f(loop);
    auto cursor = f.channel->open_cursor("g");
    REQUIRE(cursor.has_value());
    Recorder r;
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
      Batch b = test::make_batch(2, "c" + std::to_string(seq));
      REQUIRE(put(f, r, b, seq).ok());
    }
    std::vector<Lease> leases;
    std::vector<std::uint64_t> tokens;
    Batch out;
    for (int i = 0; i < 3; ++i) {
      auto l = test::take_some(loop, *f.channel, *cursor, out, {2, 1 << 20});
      REQUIRE(l.has_value());
      tokens.push_back(l->token());
      leases.push_back(std::move(*l));
    }
    for (auto& l : leases) f.channel->commit(std::move(l), r);
    REQUIRE(test::run_until(loop, 5s, [&] { return r.commits.size() == 3; }));
    settle(loop);
    CHECK(r.commits == tokens);
    CHECK(f.channel->events() == 0);
    CHECK(r.safe == std::vector<std::uint64_t>{1, 2, 3});  // in order, once each
    auto none = f.channel->take(*cursor, out, {kTransaction, 1 << 20});
    REQUIRE(none.has_value());
    CHECK(out.empty());
    CHECK_FALSE(none->held());
  }
  REQUIRE(close_loop(loop) == 0);
}

TEMPLATE_TEST_CASE("channel: destroying it with puts, leases and commits in flight is clean",
                   "[unit][contract]", MemoryFixture, LmdbFixture) {
  Loop loop;
  {
    TestType f(loop);
    auto cursor = f.channel->open_cursor("g");
    REQUIRE(cursor.has_value());
    Recorder r;
    for (std::uint64_t seq = 1; seq <= 2; ++seq) {
      Batch b = test::make_batch(2, "x" + std::to_string(seq));
      REQUIRE(put(f, r, b, seq).ok());
    }
    Batch out;
    auto committing = test::take_some(loop, *f.channel, *cursor, out, {2, 1 << 20});
    auto leased = test::take_some(loop, *f.channel, *cursor, out, {2, 1 << 20});
    REQUIRE(committing.has_value());
    REQUIRE(leased.has_value());
    REQUIRE(leased->held());
    // In flight together: a put, a commit and a rollback.
    Batch more = test::make_batch(2, "y");
    f.channel->put(more, SourceCheckpoint{&r, 3, {}, {}}, r);
    f.channel->commit(std::move(*committing), r);
    leased->rollback();
    f.channel.reset();
    // A durable channel reopened holds whatever it acknowledged.
    if (f.ctx.type == "lmdb") {
      f.open();
      CHECK(f.channel->events() >= 2);
      f.channel.reset();
    }
  }
  REQUIRE(close_loop(loop) == 0);
}

// The memory channel's byte accounting (max_bytes bounds what held batches cost on the heap) and
// its several cursors (every reader sees every event; an event is freed once every cursor committed
// it).
#include <catch2/catch.hpp>

#include "channels/memory/memory_channel.h"
#include "tests/support/allocation_check.h"
#include "tests/support/test_support.h"
#include "tests/unit/channels/memory/memory_fixture.h"

using namespace sluice;
using namespace sluice::channels;
using namespace std::chrono_literals;
using sluice::channels::testing::Fixture;

namespace {

// A source's batch as a line source builds it: 200-byte lines appended one by one under one common
// header, the file's path. Its buffers grow by doubling: 700 events leave about 45 % of the arena
// (140,000 of 262,144 bytes) unused.
Batch source_batch(std::size_t n, char fill) {
  Batch b;
  b.set_common_header("file", "/var/log/application/some-service/access.log");
  const std::string line(200, fill);
  for (std::size_t i = 0; i < n; ++i) b.add(line, 0, i);
  return b;
}

std::vector<std::string> seq(std::initializer_list<const char*> l) { return {l.begin(), l.end()}; }

}  // namespace

TEST_CASE("memory channel: a held batch is charged at least what it allocated and at most 1.25x",
          "[unit][channel][memory]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  Fixture f;
  MemoryChannel ch({.max_events = 100'000, .max_bytes = {768 << 10}, .transaction_events = 1000},
                   f.ctx);
  REQUIRE(ch.open_cursor("g").has_value());
  f.put_results.reserve(8);
  // As put (the channel keeps the source's buffers), and copied into exact buffers once the
  // channel is a quarter full (the second batch): both charges cover the heap blocks held.
  for (int round = 0; round < 3; ++round) {
    const std::int64_t live_before = test::live_heap_bytes();
    const std::uint64_t charged_before = ch.bytes();
    {
      Batch b = source_batch(700, static_cast<char>('a' + round));
      REQUIRE(f.put(ch, b, round + 1).ok());
      b.release();  // the caller's buffers (kept warm after a copy) are not the channel's
    }
    const auto allocated = static_cast<double>(test::live_heap_bytes() - live_before);
    const auto charged = static_cast<double>(ch.bytes() - charged_before);
    INFO("round " << round << ": allocated " << allocated << " charged " << charged);
    CHECK(allocated > 120'000);
    CHECK(charged >= allocated);
    CHECK(charged <= 1.25 * allocated);
  }
  // The two later batches were stored compactly: 200 body bytes + a 48-byte record per event.
  CHECK(f.metric("sluice_channel_compacted_batches_total") == 2);
  CHECK(ch.event_bytes() == 420'000);
  CHECK(ch.bytes() <= 768 << 10);
}

TEST_CASE("memory channel: the heap it holds stays within max_bytes when it fills",
          "[unit][channel][memory]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  Fixture f;
  constexpr std::uint64_t kMax = 4 << 20;
  const std::int64_t live_before = test::live_heap_bytes();
  {
    MemoryChannel ch({.max_events = 1'000'000, .max_bytes = {kMax}, .transaction_events = 1000},
                     f.ctx);
    REQUIRE(ch.open_cursor("g").has_value());
    Batch b;
    int puts = 0;
    for (;; ++puts) {
      b.clear();
      b.set_common_header("file", "/var/log/application/some-service/access.log");
      for (int i = 0; i < 700; ++i) b.add(std::string(200, 'x'), 0, i);
      if (f.put(ch, b, puts + 1).code() == Errc::backpressure) break;
      REQUIRE(f.put_results.back().ok());
    }
    b.release();
    const std::int64_t held = test::live_heap_bytes() - live_before;
    INFO(puts << " batches held, " << held << " heap bytes, " << ch.bytes() << " charged");
    CHECK(ch.bytes() <= kMax);
    CHECK(static_cast<std::uint64_t>(held) <= kMax + 64 * 1024);  // + the ring and metrics
    // Past the first quarter, batches are stored compactly (200 of about 256 bytes per event are
    // the events'; as put, 200 of about 420), so most of the bound holds events.
    CHECK(ch.event_bytes() >= kMax * 6 / 10);
    CHECK(f.metric("sluice_channel_compacted_batches_total") >= puts - 5);
  }
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel: two cursors each see every event and memory waits for both",
          "[unit][channel][memory]") {
  Fixture f;
  MemoryChannel ch({.max_events = 100, .max_bytes = {1 << 20}, .transaction_events = 10}, f.ctx);
  const CursorId fast = *ch.open_cursor("fast");
  const CursorId slow = *ch.open_cursor("pipeline:p");
  REQUIRE(fast != slow);
  REQUIRE(f.put(ch, test::make_batch(3, "a"), 1).ok());
  REQUIRE(f.put(ch, test::make_batch(3, "b"), 2).ok());
  const std::uint64_t charged = ch.bytes();
  Lease lf;
  CHECK(f.take_bodies(ch, fast, 10, lf) == seq({"a0", "a1", "a2", "b0", "b1", "b2"}));
  ch.commit(std::move(lf), f);
  CHECK(f.safe.empty());  // the slow cursor still holds both batches
  CHECK(ch.events() == 6);
  CHECK(ch.bytes() == charged);
  Lease ls;
  CHECK(f.take_bodies(ch, slow, 4, ls) == seq({"a0", "a1", "a2", "b0"}));
  ch.commit(std::move(ls), f);
  CHECK(f.safe == std::vector<std::uint64_t>{1});
  CHECK(ch.events() == 2);
  CHECK(ch.bytes() < charged);
  CHECK(f.take_bodies(ch, slow, 4, ls) == seq({"b1", "b2"}));
  ch.commit(std::move(ls), f);
  CHECK(f.safe == std::vector<std::uint64_t>{1, 2});
  CHECK(ch.events() == 0);
  CHECK(ch.bytes() == 0);
  CHECK(f.metric("sluice_channel_committed_events_total") == 12);  // 6 per cursor
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel: a rollback of one cursor does not move another",
          "[unit][channel][memory]") {
  Fixture f;
  MemoryChannel ch({.max_events = 100, .max_bytes = {1 << 20}, .transaction_events = 10}, f.ctx);
  const CursorId a = *ch.open_cursor("a");
  const CursorId b = *ch.open_cursor("b");
  REQUIRE(f.put(ch, test::make_batch(4, "e"), 1).ok());
  Lease la1, la2, lb;
  CHECK(f.take_bodies(ch, a, 2, la1) == seq({"e0", "e1"}));
  CHECK(f.take_bodies(ch, b, 3, lb) == seq({"e0", "e1", "e2"}));
  CHECK(f.take_bodies(ch, a, 1, la2) == seq({"e2"}));
  la2.rollback();
  la1.rollback();
  // b reads on after its lease; a reads again from its first event.
  Lease lb2;
  CHECK(f.take_bodies(ch, b, 10, lb2) == seq({"e3"}));
  Lease la3;
  CHECK(f.take_bodies(ch, a, 10, la3) == seq({"e0", "e1", "e2", "e3"}));
  ch.commit(std::move(lb), f);
  ch.commit(std::move(lb2), f);
  CHECK(f.safe.empty());
  ch.commit(std::move(la3), f);
  CHECK(f.safe == std::vector<std::uint64_t>{1});
  CHECK(f.metric("sluice_channel_rollback_events_total") == 3);
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel: a stuck cursor fills the channel and back-pressures the sources",
          "[unit][channel][memory]") {
  Fixture f;
  MemoryChannel ch({.max_events = 6, .max_bytes = {1 << 20}, .transaction_events = 3}, f.ctx);
  const CursorId live = *ch.open_cursor("live");
  const CursorId stuck = *ch.open_cursor("stuck");
  REQUIRE(f.put(ch, test::make_batch(3, "a"), 1).ok());
  REQUIRE(f.put(ch, test::make_batch(3, "b"), 2).ok());
  Lease l;
  CHECK(f.take_bodies(ch, live, 10, l).size() == 3);
  ch.commit(std::move(l), f);
  CHECK(f.take_bodies(ch, live, 10, l).size() == 3);
  ch.commit(std::move(l), f);
  // The live group read everything; the stuck one holds it all, so a put waits.
  CHECK(f.put(ch, test::make_batch(1, "c"), 3).code() == Errc::backpressure);
  ch.wait_for_space(f);
  CHECK(f.metric("sluice_channel_dropped_events_total") == 0);
  CHECK(f.take_bodies(ch, stuck, 3, l) == seq({"a0", "a1", "a2"}));
  ch.commit(std::move(l), f);
  REQUIRE(test::run_until(f.loop, 1s, [&] { return f.space_calls == 1; }));
  CHECK(f.put(ch, test::make_batch(1, "c"), 3).ok());
  CHECK(f.safe == std::vector<std::uint64_t>{1});
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel: a lagging cursor that detaches loses its oldest backlog",
          "[unit][channel][memory]") {
  Fixture f;
  MemoryChannel ch({.max_events = 6, .max_bytes = {1 << 20}, .transaction_events = 3}, f.ctx);
  const CursorId live = *ch.open_cursor("live");
  const CursorId lagging = *ch.open_cursor("lagging");
  ch.set_detach_when_lagging(lagging, true);
  REQUIRE(f.put(ch, test::make_batch(3, "a"), 1).ok());
  REQUIRE(f.put(ch, test::make_batch(3, "b"), 2).ok());
  Lease old;
  CHECK(f.take_bodies(ch, lagging, 2, old) == seq({"a0", "a1"}));
  Lease l;
  CHECK(f.take_bodies(ch, live, 10, l).size() == 3);
  ch.commit(std::move(l), f);
  CHECK(f.take_bodies(ch, live, 10, l).size() == 3);
  ch.commit(std::move(l), f);
  // Full: the lagging cursor is moved past the oldest batch instead of blocking the put.
  REQUIRE(f.put(ch, test::make_batch(3, "c"), 3).ok());
  CHECK(f.metric("sluice_channel_dropped_events_total") == 3);
  CHECK(f.safe == std::vector<std::uint64_t>{1});
  ch.commit(std::move(old), f);  // a lease of dropped events commits as a no-op
  CHECK(f.take_bodies(ch, lagging, 10, l) == seq({"b0", "b1", "b2"}));
  l.rollback();
  CHECK(f.take_bodies(ch, lagging, 10, l) == seq({"b0", "b1", "b2"}));
  ch.commit(std::move(l), f);
  CHECK(f.take_bodies(ch, live, 10, l) == seq({"c0", "c1", "c2"}));
  ch.commit(std::move(l), f);
  CHECK(f.safe == std::vector<std::uint64_t>{1, 2});
  CHECK(f.take_bodies(ch, lagging, 10, l) == seq({"c0", "c1", "c2"}));
  ch.commit(std::move(l), f);
  CHECK(f.safe == std::vector<std::uint64_t>{1, 2, 3});
  // A cursor that does not detach is never dropped for: with the live group stuck, puts wait.
  REQUIRE(f.put(ch, test::make_batch(3, "d"), 4).ok());
  REQUIRE(f.put(ch, test::make_batch(3, "e"), 5).ok());
  CHECK(f.put(ch, test::make_batch(1, "f"), 6).code() == Errc::backpressure);
  CHECK(f.metric("sluice_channel_dropped_events_total") == 3);
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel: closing a cursor frees what it alone held and voids its leases",
          "[unit][channel][memory]") {
  Fixture f;
  MemoryChannel ch({.max_events = 100, .max_bytes = {1 << 20}, .transaction_events = 10}, f.ctx);
  const CursorId keep = *ch.open_cursor("keep");
  const CursorId gone = *ch.open_cursor("gone");
  REQUIRE(f.put(ch, test::make_batch(2, "a"), 1).ok());
  REQUIRE(f.put(ch, test::make_batch(2, "b"), 2).ok());
  Lease l, lg;
  CHECK(f.take_bodies(ch, keep, 10, l).size() == 4);
  ch.commit(std::move(l), f);
  CHECK(f.take_bodies(ch, gone, 1, lg) == seq({"a0"}));
  CHECK(f.safe.empty());
  ch.close_cursor(gone);
  CHECK(f.safe == std::vector<std::uint64_t>{1, 2});
  CHECK(ch.events() == 0);
  CHECK(ch.bytes() == 0);
  ch.commit(std::move(lg), f);  // no-op, but its listener is told
  CHECK(f.commits == 2);
  Batch out;
  CHECK_FALSE(ch.take(gone, out, {10, 1 << 20}).has_value());
  // A cursor opened later starts at the oldest event still held.
  REQUIRE(f.put(ch, test::make_batch(2, "c"), 3).ok());
  const CursorId late = *ch.open_cursor("late");
  CHECK(f.take_bodies(ch, late, 10, l) == seq({"c0", "c1"}));
  ch.commit(std::move(l), f);
  CHECK(f.safe == std::vector<std::uint64_t>{1, 2});  // "keep" still holds batch 3
  // A reader opened again under a name used before reads on where that one committed.
  REQUIRE(f.put(ch, test::make_batch(2, "d"), 4).ok());
  ch.close_cursor(late);
  const CursorId again = *ch.open_cursor("late");
  CHECK(f.take_bodies(ch, again, 10, l) == seq({"d0", "d1"}));
  l.rollback();
  const CursorId fresh = *ch.open_cursor("fresh");
  CHECK(f.take_bodies(ch, fresh, 10, l) == seq({"c0", "c1", "d0", "d1"}));
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel: each cursor is told of data on a later loop turn",
          "[unit][channel][memory]") {
  struct Waiter final : DataListener {
    int calls = 0;
    void on_data() noexcept override { ++calls; }
  } wa, wb;
  Fixture f;
  MemoryChannel ch({}, f.ctx);
  const CursorId a = *ch.open_cursor("a");
  const CursorId b = *ch.open_cursor("b");
  ch.wait_for_data(a, wa);
  ch.wait_for_data(b, wb);
  REQUIRE(f.put(ch, test::make_batch(1), 1).ok());
  CHECK(wa.calls + wb.calls == 0);  // never inside put()
  REQUIRE(test::run_until(f.loop, 1s, [&] { return wa.calls == 1 && wb.calls == 1; }));
  Lease l;
  CHECK(f.take_bodies(ch, a, 10, l).size() == 1);
  ch.wait_for_data(a, wa);
  l.rollback();  // the event is back for a only
  REQUIRE(test::run_until(f.loop, 1s, [&] { return wa.calls == 2; }));
  CHECK(wb.calls == 1);
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel: after a burst its free slots keep at most 1 MiB of buffers",
          "[unit][channel][memory]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  Fixture f;
  const std::int64_t live_before = test::live_heap_bytes();
  {
    // A roomy channel (the default 64 MiB) takes a burst of 24 batches of ~200 KB (a pipeline's
    // window of rows), then its reader takes and commits them all: the emptied slots keep warm
    // buffers for the next puts, but not the whole burst's (issue 13: 4 MiB per channel kept
    // the agent past its 40 MB).
    MemoryChannel ch({.max_events = 1'000'000, .max_bytes = {64ULL << 20}}, f.ctx);
    const CursorId cursor = *ch.open_cursor("g");
    for (int p = 0; p < 24; ++p) {
      Batch b;
      for (int i = 0; i < 700; ++i) b.add(std::string(200, 'x'), 0, i);
      REQUIRE(f.put(ch, b, p + 1).ok());
    }
    const std::int64_t full = test::live_heap_bytes() - live_before;
    CHECK(full >= 24 * 700 * 200);
    Batch out;
    for (;;) {
      auto lease = ch.take(cursor, out, {1000, 8 << 20});
      REQUIRE(lease.has_value());
      if (out.empty()) break;
      ch.commit(std::move(*lease), f);
    }
    out.release();
    CHECK(ch.events() == 0);
    CHECK(ch.bytes() == 0);
    const std::int64_t kept = test::live_heap_bytes() - live_before;
    INFO(full << " heap bytes full, " << kept << " kept once empty");
    CHECK(kept > 0);
    CHECK(kept <= (1 << 20) + 64 * 1024);  // + the ring and metrics
  }
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel: a steady stream of large batches gets warm buffers back at every put",
          "[unit][channel][memory]") {
  Fixture f;
  {
    // Batches of ~800 KB: one spare fits the 1 MiB of recycled buffers, and it waits in the slot
    // the next put uses (kept in the freed slot it came round only once per ring).
    MemoryChannel ch({.max_events = 1'000'000, .max_bytes = {64ULL << 20}}, f.ctx);
    const CursorId cursor = *ch.open_cursor("g");
    Batch b, out;
    int warm = 0;
    for (int p = 0; p < 40; ++p) {
      b.clear();
      for (int i = 0; i < 1000; ++i) b.add(std::string(700, 'x'), 0, i);
      REQUIRE(f.put(ch, b, p + 1).ok());
      // The put took the batch's buffers and gave back the slot's: warm once a batch was freed.
      if (p >= 2 && b.capacity_bytes() >= 700'000) ++warm;
      auto lease = ch.take(cursor, out, {1000, 8 << 20});
      REQUIRE(lease.has_value());
      REQUIRE(out.size() == 1000);
      ch.commit(std::move(*lease), f);
    }
    CHECK(warm == 38);
  }
  REQUIRE(f.loop.close() == 0);
}

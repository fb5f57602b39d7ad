#include "channels/memory/memory_channel.h"

#include <catch2/catch.hpp>

#include "lib/core/source_output.h"
#include "tests/support/allocation_check.h"
#include "tests/support/test_support.h"
#include "tests/unit/channels/memory/memory_fixture.h"

using namespace sluice;
using namespace sluice::channels;
using namespace std::chrono_literals;
using sluice::channels::testing::Fixture;

TEST_CASE("memory channel: put, take, commit in order, safe after commit", "[unit][channel]") {
  Fixture f;
  MemoryChannel ch({.max_events = 100, .max_bytes = {1 << 20}, .transaction_events = 10}, f.ctx);
  REQUIRE(ch.open_cursor("g").has_value());
  REQUIRE(f.put(ch, test::make_batch(3, "a"), 1).ok());
  REQUIRE(f.put(ch, test::make_batch(3, "b"), 2).ok());
  CHECK(ch.events() == 6);
  Batch out;
  auto lease = ch.take(0, out, {4, 1 << 20});
  REQUIRE(lease.has_value());
  CHECK(f.bodies(out) == std::vector<std::string>{"a0", "a1", "a2", "b0"});
  CHECK(f.safe.empty());
  ch.commit(std::move(*lease), f);
  CHECK(f.safe == std::vector<std::uint64_t>{1});  // batch 2 is only partly committed
  auto lease2 = ch.take(0, out, {4, 1 << 20});
  CHECK(f.bodies(out) == std::vector<std::string>{"b1", "b2"});
  ch.commit(std::move(*lease2), f);
  CHECK(f.safe == std::vector<std::uint64_t>{1, 2});
  CHECK(ch.events() == 0);
  CHECK(ch.bytes() == 0);
  auto empty = ch.take(0, out, {4, 1 << 20});
  REQUIRE(empty.has_value());
  CHECK(out.empty());
  CHECK_FALSE(empty->held());
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel: rollback returns events to the head in order", "[unit][channel]") {
  Fixture f;
  MemoryChannel ch({.max_events = 100, .max_bytes = {1 << 20}, .transaction_events = 10}, f.ctx);
  REQUIRE(ch.open_cursor("g").has_value());
  REQUIRE(f.put(ch, test::make_batch(6), 1).ok());
  Batch out1, out2;
  auto l1 = ch.take(0, out1, {2, 1 << 20});
  auto l2 = ch.take(0, out2, {2, 1 << 20});
  CHECK(f.bodies(out2) == std::vector<std::string>{"event-2", "event-3"});
  // The group rolls back the newest first; dropping a lease rolls it back.
  { Lease dropped = std::move(*l2); }
  l1->rollback();
  Batch again;
  auto l3 = ch.take(0, again, {10, 1 << 20});
  CHECK(f.bodies(again) ==
        std::vector<std::string>{"event-0", "event-1", "event-2", "event-3", "event-4", "event-5"});
  ch.commit(std::move(*l3), f);
  CHECK(f.safe == std::vector<std::uint64_t>{1});
  double rolled = 0;
  REQUIRE(f.metrics.find("sluice_channel_rollback_events_total", f.ctx.labels(), rolled));
  CHECK(rolled == 4);
}

TEST_CASE("memory channel: bounded by events, back-pressure until space", "[unit][channel]") {
  Fixture f;
  MemoryChannel ch({.max_events = 5, .max_bytes = {1 << 20}, .transaction_events = 5}, f.ctx);
  REQUIRE(ch.open_cursor("g").has_value());
  REQUIRE(f.put(ch, test::make_batch(4), 1).ok());
  Status st = f.put(ch, test::make_batch(2), 2);
  CHECK(st.code() == Errc::backpressure);
  ch.wait_for_space(f);
  Batch out;
  auto l = ch.take(0, out, {2, 1 << 20});
  ch.commit(std::move(*l), f);
  REQUIRE(test::run_until(f.loop, 1s, [&] { return f.space_calls == 1; }));
  CHECK(f.put(ch, test::make_batch(2), 2).ok());
  CHECK(ch.events() == 4);
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel: bounded by bytes, an empty channel takes one oversized batch",
          "[unit][channel]") {
  Fixture f;
  MemoryChannel ch({.max_events = 100, .max_bytes = {4096}, .transaction_events = 100}, f.ctx);
  REQUIRE(ch.open_cursor("g").has_value());
  Batch b;
  b.add(std::string(5000, 'x'), 0, 0);
  REQUIRE(f.put(ch, std::move(b), 1).ok());  // empty channel: accepted, or it could never be
  CHECK(ch.bytes() > 5000);                  // charged what it costs, not 4096
  Batch small;
  small.add("y", 0, 0);
  CHECK(f.put(ch, std::move(small), 2).code() == Errc::backpressure);
  Batch out;
  auto l = ch.take(0, out, {100, 1 << 20});
  ch.commit(std::move(*l), f);
  CHECK(ch.bytes() == 0);
  Batch fits;
  fits.add(std::string(2000, 'z'), 0, 0);
  const std::uint64_t cost = MemoryChannel::held_cost(fits);
  CHECK(cost > 2000);
  CHECK(cost < 2600);  // the body, one 48-byte record, block headers and the ring slot
  REQUIRE(f.put(ch, std::move(fits), 2).ok());
  CHECK(ch.bytes() == cost);
  CHECK(ch.event_bytes() == 2000);
  Batch over;  // 2000 bytes of events would fit 4096; with what holding them costs they do not
  over.add(std::string(2000, 'z'), 0, 0);
  CHECK(f.put(ch, std::move(over), 3).code() == Errc::backpressure);
  double bp = 0;
  REQUIRE(f.metrics.find("sluice_channel_backpressure_total", f.ctx.labels(), bp));
  CHECK(bp == 2);
}

TEST_CASE("memory channel: take respects the byte limit and the transaction size",
          "[unit][channel]") {
  Fixture f;
  MemoryChannel ch({.max_events = 100, .max_bytes = {1 << 20}, .transaction_events = 3}, f.ctx);
  REQUIRE(ch.open_cursor("g").has_value());
  CHECK(f.put(ch, test::make_batch(4), 1).code() == Errc::invalid_data);  // over transaction_events
  REQUIRE(f.put(ch, test::make_batch(3, "0123456789"), 1).ok());
  Batch out;
  auto l = ch.take(0, out, {100, 25});  // two 11-byte events fit in 25 bytes
  CHECK(out.size() == 2);
  CHECK(l->bytes() == 22);
  l->rollback();
  auto l2 = ch.take(0, out, {100, 5});  // a single event larger than the limit still moves
  CHECK(out.size() == 1);
}

TEST_CASE("memory channel: data notification comes on a later loop turn", "[unit][channel]") {
  Fixture f;
  MemoryChannel ch({}, f.ctx);
  REQUIRE(ch.open_cursor("g").has_value());
  ch.wait_for_data(0, f);
  REQUIRE(f.put(ch, test::make_batch(1), 1).ok());
  CHECK(f.data_calls == 0);  // never inside put()
  REQUIRE(test::run_until(f.loop, 1s, [&] { return f.data_calls == 1; }));
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel put/take/commit does not allocate once warm", "[unit][channel]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  Fixture f;
  MemoryChannel ch({.max_events = 1024, .max_bytes = {1 << 20}, .transaction_events = 256}, f.ctx);
  REQUIRE(ch.open_cursor("g").has_value());
  Batch in = test::make_batch(256, "0123456789abcdef"), out;
  Batch master = test::make_batch(256, "0123456789abcdef");
  auto round = [&] {
    in.clear();
    in.append_range(master, 0, master.size());
    f.put_results.clear();
    ch.put(in, SourceCheckpoint{&f, 1, {}, {}}, f);
    auto l = ch.take(0, out, {256, 1 << 20});
    ch.commit(std::move(*l), f);
  };
  f.put_results.reserve(4);
  f.safe.reserve(1024);
  for (int i = 0; i < 64; ++i) round();  // warm-up: every slot of the channel's ring has been used
  test::AllocationCounter allocs;
  for (int i = 0; i < 100; ++i) round();
  CHECK(allocs.count() == 0);
}

TEST_CASE("source output: fan-out, back-pressure per channel, safe in order when safe everywhere",
          "[unit][channel]") {
  Fixture f;
  {
    MemoryChannel a({.max_events = 100, .max_bytes = {1 << 20}, .transaction_events = 10}, f.ctx);
    ComponentContext ctx_b{f.loop, f.metrics, "b", "memory", "/tmp"};
    MemoryChannel b({.max_events = 4, .max_bytes = {1 << 20}, .transaction_events = 4}, ctx_b);
    REQUIRE(a.open_cursor("g").has_value());
    REQUIRE(b.open_cursor("g").has_value());
    SourceOutput out(f.loop, {&a, &b}, 4);
    struct Listener final : OutputListener {
      std::vector<std::uint64_t> safe;
      int writable = 0;
      void on_safe(std::uint64_t seq) noexcept override { safe.push_back(seq); }
      void on_writable() noexcept override { ++writable; }
    } listener;
    out.set_listener(&listener);
    CHECK(out.max_batch_events() == 4);
    Batch batch = test::make_batch(3, "x");
    out.put(batch, "pos1");
    CHECK(batch.empty());
    CHECK(a.events() == 3);
    CHECK(b.events() == 3);
    batch = test::make_batch(3, "y");
    out.put(batch, "pos2");  // a takes it; b is full
    CHECK(a.events() == 6);
    CHECK(b.events() == 3);
    CHECK_FALSE(out.writable());
    Batch taken;
    auto la = a.take(0, taken, {100, 1 << 20});
    a.commit(std::move(*la), f);
    CHECK(listener.safe.empty());  // not yet safe in b
    auto lb = b.take(0, taken, {100, 1 << 20});
    CHECK(taken.size() == 3);
    b.commit(std::move(*lb), f);
    CHECK(listener.safe == std::vector<std::uint64_t>{1});
    // b had room again: the waiting put goes into b only (a already holds it), then the source may
    // write.
    REQUIRE(test::run_until(f.loop, 1s, [&] { return listener.writable == 1; }));
    CHECK(a.events() == 0);
    CHECK(b.events() == 3);
    CHECK(out.writable());
    lb = b.take(0, taken, {100, 1 << 20});
    CHECK(taken[0].body() == "y0");
    b.commit(std::move(*lb), f);
    CHECK(listener.safe == std::vector<std::uint64_t>{1, 2});
  }
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("memory channel: a lease never mixes batches with different common headers",
          "[unit][channel]") {
  Fixture f;
  MemoryChannel ch({.max_events = 100, .max_bytes = {1 << 20}, .transaction_events = 10}, f.ctx);
  REQUIRE(ch.open_cursor("g").has_value());
  Batch a = test::make_batch(2, "a");
  a.set_common_header("file", "/a");
  Batch b = test::make_batch(2, "b");
  b.set_common_header("file", "/b");
  Batch a2 = test::make_batch(2, "c");
  a2.set_common_header("file", "/b");
  REQUIRE(f.put(ch, std::move(a), 1).ok());
  REQUIRE(f.put(ch, std::move(b), 2).ok());
  REQUIRE(f.put(ch, std::move(a2), 3).ok());
  Batch out;
  auto l1 = ch.take(0, out, {10, 1 << 20});
  CHECK(f.bodies(out) == std::vector<std::string>{"a0", "a1"});
  CHECK(out[0].header("file") == std::optional<std::string_view>("/a"));
  ch.commit(std::move(*l1), f);
  auto l2 = ch.take(0, out, {10, 1 << 20});
  CHECK(f.bodies(out) ==
        std::vector<std::string>{"b0", "b1", "c0", "c1"});  // same headers: one lease
  CHECK(out[3].header("file") == std::optional<std::string_view>("/b"));
  ch.commit(std::move(*l2), f);
  CHECK(f.safe == std::vector<std::uint64_t>{1, 2, 3});
}

namespace {

// Collects the runs take_in_place() passes, as (first body, events) and every body in order.
struct RunCollector final : EventReader {
  std::vector<std::pair<std::string, std::size_t>> runs;
  std::vector<std::string> bodies;
  std::vector<std::string> files;  // each event's "file" header (a common header of its batch)
  void on_events(const Batch& batch, std::size_t begin, std::size_t end) override {
    runs.emplace_back(std::string(batch[begin].body()), end - begin);
    for (std::size_t i = begin; i < end; ++i) {
      bodies.emplace_back(batch[i].body());
      files.emplace_back(batch[i].header("file").value_or(""));
    }
  }
};

}  // namespace

TEST_CASE("memory channel: take_in_place reads the stored batches, leased as take() leases",
          "[unit][channel]") {
  Fixture f;
  MemoryChannel ch({.max_events = 100, .max_bytes = {1 << 20}, .transaction_events = 10}, f.ctx);
  REQUIRE(ch.open_cursor("g").has_value());
  REQUIRE(ch.open_cursor("copying").has_value());
  Batch a = test::make_batch(3, "a");
  a.set_common_header("file", "/a.log");
  Batch b = test::make_batch(3, "b");
  b.set_common_header("file", "/b.log");
  REQUIRE(f.put(ch, std::move(a), 1).ok());
  REQUIRE(f.put(ch, std::move(b), 2).ok());
  REQUIRE(f.put(ch, test::make_batch(3, "c"), 3).ok());

  // Runs cross chunks (and their different common headers), each run read where it lies.
  RunCollector r;
  Batch scratch;
  auto lease = ch.take_in_place(0, scratch, {5, 1 << 20}, r);
  REQUIRE(lease.has_value());
  CHECK(lease->events() == 5);
  CHECK(scratch.empty());  // nothing copied
  CHECK(r.runs == std::vector<std::pair<std::string, std::size_t>>{{"a0", 3}, {"b0", 2}});
  CHECK(r.bodies == std::vector<std::string>{"a0", "a1", "a2", "b0", "b1"});
  CHECK(r.files == std::vector<std::string>{"/a.log", "/a.log", "/a.log", "/b.log", "/b.log"});

  // A rollback gives the same events to the next read; the byte limit ends a run.
  lease->rollback();
  RunCollector again;
  const std::uint64_t one = test::make_batch(1, "a")[0].bytes();
  auto l2 = ch.take_in_place(0, scratch, {10, 2 * one}, again);
  REQUIRE(l2.has_value());
  CHECK(l2->events() == 2);
  CHECK(again.bodies == std::vector<std::string>{"a0", "a1"});
  ch.commit(std::move(*l2), f);
  RunCollector rest;
  auto l3 = ch.take_in_place(0, scratch, {10, 1 << 20}, rest);
  REQUIRE(l3.has_value());
  CHECK(rest.bodies == std::vector<std::string>{"a2", "b0", "b1", "b2", "c0", "c1", "c2"});
  ch.commit(std::move(*l3), f);

  // The other cursor still holds every event; take() stops at the first change of headers.
  CHECK(f.safe.empty());
  CHECK(ch.events() == 9);
  Batch out;
  auto l4 = ch.take(1, out, {10, 1 << 20});
  CHECK(f.bodies(out) == std::vector<std::string>{"a0", "a1", "a2"});
  ch.commit(std::move(*l4), f);
  CHECK(f.safe == std::vector<std::uint64_t>{1});

  // Nothing left for the first cursor: an empty lease, and the reader is not called.
  RunCollector none;
  auto l5 = ch.take_in_place(0, scratch, {10, 1 << 20}, none);
  REQUIRE(l5.has_value());
  CHECK(l5->events() == 0);
  CHECK_FALSE(l5->held());
  CHECK(none.runs.empty());
  REQUIRE(f.loop.close() == 0);
}

#include "sinks/group/sink_group.h"

#include <catch2/catch.hpp>

#include "agent/core/source_output.h"
#include "channels/memory/memory_channel.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::sinks;
using namespace std::chrono_literals;

namespace {

struct Safe final : OutputListener {
  std::uint64_t safe = 0;
  void on_safe(std::uint64_t seq) noexcept override { safe = seq; }
  void on_writable() noexcept override {}
};

struct Rig {
  Loop loop;
  MetricsRegistry metrics;
  SteadyClock clock;  // penalties here are real milliseconds
  ComponentContext ch_ctx{loop, metrics, "buf", "memory", "/tmp"};
  channels::MemoryChannel channel{
      {.max_events = 1000, .max_bytes = {1 << 20}, .transaction_events = 10}, ch_ctx};
  test::RecordingSink sink{loop};
  Safe safe;
  SourceOutput output{loop, {&channel}, 4};
  std::unique_ptr<SinkGroup> group;

  explicit Rig(GroupConfig cfg = {}, std::chrono::nanoseconds timeout = 5s) {
    output.set_listener(&safe);
    cfg.penalty_base = 1ms;
    cfg.max_penalty = 4ms;
    std::vector<GroupMember> members{{"k", "recording", &sink, timeout}};
    group = std::make_unique<SinkGroup>(
        ComponentContext{loop, metrics, "g", "group", "/tmp"}, channel, *channel.open_cursor("g"),
        std::make_unique<SingleProcessor>(sink, cfg.penalty_base, cfg.max_penalty),
        std::move(members), cfg, clock);
  }
  void put(std::size_t n, std::size_t first) {
    Batch b = test::make_batch(n, "e", first);
    output.put(b, {});
  }
  static std::vector<std::string> expected(std::size_t n) {
    std::vector<std::string> v;
    for (std::size_t i = 0; i < n; ++i) v.push_back("e" + std::to_string(i));
    return v;
  }
  double metric(const char* name, Labels l) {
    double v = 0;
    metrics.find(name, l, v);
    return v;
  }
};

}  // namespace

TEST_CASE("sink group delivers every event in order and commits", "[unit][group]") {
  Rig r(GroupConfig{.max_in_flight = 4, .batch_events = 3});
  r.group->start();
  for (std::size_t i = 0; i < 30; i += 6) r.put(6, i);
  REQUIRE(test::run_until(r.loop, 2s, [&] { return r.channel.events() == 0; }));
  CHECK(r.sink.delivered == Rig::expected(30));
  CHECK(r.safe.safe == 5);
  CHECK(r.metric("sluice_sink_events_total",
                 {{"component", "k"}, {"type", "recording"}, {"outcome", "ok"}}) == 30);
  r.group.reset();
}

TEST_CASE(
    "sink group: a retry rolls back that lease and every later one; nothing lost or reordered",
    "[unit][group]") {
  Rig r(GroupConfig{.max_in_flight = 3, .batch_events = 2});
  // The second of three in-flight deliveries asks to retry; the third had already succeeded.
  r.sink.script({DeliveryResult::ok(), DeliveryResult::retry("broker busy"), DeliveryResult::ok()});
  r.put(6, 0);
  r.group->start();
  REQUIRE(test::run_until(r.loop, 2s,
                          [&] { return r.channel.events() == 0 && r.group->in_flight() == 0; }));
  // e4,e5 were answered ok before e2,e3 failed, so they were rolled back and sent again:
  // at-least-once, and the committed order is the channel's order.
  CHECK(r.sink.attempted ==
        std::vector<std::string>{"e0", "e1", "e2", "e3", "e4", "e5", "e2", "e3", "e4", "e5"});
  CHECK(r.sink.delivered ==
        std::vector<std::string>{"e0", "e1", "e4", "e5", "e2", "e3", "e4", "e5"});
  CHECK(r.metric("sluice_group_penalties_total", {{"component", "g"}, {"type", "group"}}) == 1);
  CHECK(r.metric("sluice_sink_events_total",
                 {{"component", "k"}, {"type", "recording"}, {"outcome", "retry"}}) == 2);
  CHECK(r.safe.safe == 1);
  r.group.reset();
}

TEST_CASE("sink group: a delivery timeout counts as retry and the late answer is ignored",
          "[unit][group]") {
  Rig r(GroupConfig{.max_in_flight = 1, .batch_events = 10}, 30ms);
  r.sink.hold_next(1);
  r.put(3, 0);
  r.group->start();
  REQUIRE(test::run_until(r.loop, 300ms, [&] { return r.sink.deliveries >= 2; }) == false);
  // The held delivery keeps its slot until the sink answers, so with one slot nothing moves.
  CHECK(r.sink.deliveries == 1);
  CHECK(r.metric("sluice_sink_timeouts_total", {{"component", "k"}, {"type", "recording"}}) == 1);
  r.sink.release_held();  // the late answer (ok) must not commit the rolled-back lease
  REQUIRE(test::run_until(r.loop, 2s, [&] { return r.channel.events() == 0; }));
  CHECK(r.sink.deliveries == 2);
  CHECK(r.sink.attempted == std::vector<std::string>{"e0", "e1", "e2", "e0", "e1", "e2"});
  CHECK(r.safe.safe == 1);
  r.group.reset();
}

TEST_CASE("sink group: rejected events are counted and logged, never silently dropped",
          "[unit][group]") {
  Rig r;
  r.sink.script({DeliveryResult::reject("too large", {1})});
  r.put(3, 0);
  r.group->start();
  REQUIRE(test::run_until(r.loop, 2s, [&] { return r.channel.events() == 0; }));
  CHECK(r.metric("sluice_sink_events_total",
                 {{"component", "k"}, {"type", "recording"}, {"outcome", "reject"}}) == 1);
  CHECK(r.metric("sluice_sink_events_total",
                 {{"component", "k"}, {"type", "recording"}, {"outcome", "ok"}}) == 2);
  CHECK(r.metric("sluice_group_rejected_dropped_events_total",
                 {{"component", "g"}, {"type", "group"}}) == 1);
  r.group.reset();
}

TEST_CASE("sink group: drain delivers what the channel holds, then stops the sinks",
          "[unit][group]") {
  Rig r(GroupConfig{.max_in_flight = 2, .batch_events = 4});
  r.put(10, 0);
  r.group->start();
  bool drained = false;
  r.group->drain([&] { drained = true; });
  REQUIRE(test::run_until(r.loop, 2s, [&] { return drained; }));
  CHECK(r.sink.delivered == Rig::expected(10));
  r.group.reset();
}

TEST_CASE("penalties double from the base up to the cap", "[unit][group]") {
  CHECK(penalty_for(0, 1s, 30s) == 0s);
  CHECK(penalty_for(1, 1s, 30s) == 1s);
  CHECK(penalty_for(2, 1s, 30s) == 2s);
  CHECK(penalty_for(5, 1s, 30s) == 16s);
  CHECK(penalty_for(6, 1s, 30s) == 30s);
  CHECK(penalty_for(60, 1s, 30s) == 30s);
  test::ManualClock clock;
  Loop loop;
  test::RecordingSink sink(loop);
  SingleProcessor p(sink, 1s, 4s);
  CHECK(p.pick(clock.now()) == &sink);
  p.penalize(sink, clock.now());
  CHECK(p.pick(clock.now()) == nullptr);
  CHECK(p.next_ready(clock.now()) == clock.now() + 1s);
  clock.advance(1s);
  CHECK(p.pick(clock.now()) == &sink);
  p.penalize(sink, clock.now());
  p.penalize(sink, clock.now());
  p.penalize(sink, clock.now());
  CHECK(p.next_ready(clock.now()) == clock.now() + 4s);
  p.succeeded(sink);
  CHECK(p.pick(clock.now()) == &sink);
}

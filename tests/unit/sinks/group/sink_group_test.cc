#include "sinks/group/sink_group.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>

#include "channels/memory/memory_channel.h"
#include "lib/core/source_output.h"
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
    "sink group: a retry rolls back that lease and every later one, nothing lost or reordered",
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
  // ok counts what was committed, each event once: e4,e5's first answer was rolled back.
  CHECK(r.metric("sluice_sink_events_total",
                 {{"component", "k"}, {"type", "recording"}, {"outcome", "ok"}}) == 6);
  CHECK(r.safe.safe == 1);
  r.group.reset();
}

TEST_CASE("sink group: a batch answered ok but rolled back behind a failed one counts ok once",
          "[unit][group]") {
  Rig r(GroupConfig{.max_in_flight = 2, .batch_events = 2});
  // The first delivery fails, but only after the second was answered ok: both go out again.
  r.sink.script({DeliveryResult::retry("broker busy")});
  r.sink.hold_next(1);
  r.put(4, 0);
  r.group->start();
  REQUIRE(test::run_until(r.loop, 2s, [&] { return r.sink.delivered.size() == 2; }));
  r.sink.release_held();
  REQUIRE(test::run_until(r.loop, 2s,
                          [&] { return r.channel.events() == 0 && r.group->in_flight() == 0; }));
  CHECK(r.sink.delivered == std::vector<std::string>{"e2", "e3", "e0", "e1", "e2", "e3"});
  CHECK(r.metric("sluice_sink_events_total",
                 {{"component", "k"}, {"type", "recording"}, {"outcome", "ok"}}) == 4);
  CHECK(r.metric("sluice_sink_events_total",
                 {{"component", "k"}, {"type", "recording"}, {"outcome", "retry"}}) == 2);
  r.group.reset();
}

TEST_CASE("sink group: a rejected batch rolled back behind a failed one counts its drop once",
          "[unit][group]") {
  Rig r(GroupConfig{.max_in_flight = 2, .batch_events = 2});
  r.sink.script({DeliveryResult::retry("broker busy"), DeliveryResult::reject("bad", {0}),
                 DeliveryResult::ok(), DeliveryResult::reject("bad", {0})});
  r.sink.hold_next(1);
  r.put(4, 0);
  r.group->start();
  REQUIRE(test::run_until(r.loop, 2s, [&] { return r.sink.deliveries == 2; }));
  r.sink.release_held();
  REQUIRE(test::run_until(r.loop, 2s,
                          [&] { return r.channel.events() == 0 && r.group->in_flight() == 0; }));
  CHECK(r.sink.attempted ==
        std::vector<std::string>{"e0", "e1", "e2", "e3", "e0", "e1", "e2", "e3"});
  CHECK(r.metric("sluice_group_rejected_dropped_events_total",
                 {{"component", "g"}, {"type", "group"}}) == 1);
  CHECK(r.metric("sluice_sink_events_total",
                 {{"component", "k"}, {"type", "recording"}, {"outcome", "reject"}}) == 1);
  CHECK(r.metric("sluice_sink_events_total",
                 {{"component", "k"}, {"type", "recording"}, {"outcome", "ok"}}) == 3);
  r.group.reset();
}

TEST_CASE("sink group: a delivery timeout counts as retry and the late answer is ignored",
          "[unit][group]") {
  Rig r(GroupConfig{.max_in_flight = 1, .batch_events = 10}, 30ms);
  r.sink.hold_next(1);
  r.put(3, 0);
  r.group->start();
  // The held delivery times out; its slot stays with the sink, and the lease goes out again in a
  // new slot, so a hung sink does not stop the group.
  REQUIRE(test::run_until(r.loop, 2s, [&] { return r.channel.events() == 0; }));
  CHECK(r.metric("sluice_sink_timeouts_total", {{"component", "k"}, {"type", "recording"}}) == 1);
  CHECK(r.sink.attempted == std::vector<std::string>{"e0", "e1", "e2", "e0", "e1", "e2"});
  CHECK(r.group->in_flight() == 1);  // the abandoned delivery
  r.sink.release_held();             // its late answer must not commit anything twice
  REQUIRE(test::run_until(r.loop, 2s, [&] { return r.group->in_flight() == 0; }));
  CHECK(r.safe.safe == 1);
  CHECK(r.metric("sluice_channel_committed_events_total",
                 {{"component", "buf"}, {"type", "memory"}}) == 3);
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

TEST_CASE("failover processor: best live sink by priority, doubling penalties, failback",
          "[unit][group]") {
  Loop loop;
  test::RecordingSink a(loop), b(loop), c(loop);
  test::ManualClock clock;
  FailoverProcessor p({&a, &b, &c}, 1s, 8s);
  CHECK(p.pick(clock.now()) == &a);
  p.penalize(a, clock.now());
  CHECK(p.pick(clock.now()) == &b);
  p.penalize(b, clock.now());
  CHECK(p.pick(clock.now()) == &c);
  clock.advance(1s);
  // a's penalty is over: it must pass a probe (or take the next batch) before it wins again.
  CHECK(p.due_for_probe(clock.now()) == &a);
  p.set_probing(a, true);
  CHECK(p.pick(clock.now()) ==
        &b);                   // b's first penalty (1s) is over too, and it has no probe running
  p.penalize(a, clock.now());  // the probe failed: 2s now
  p.set_probing(a, false);
  CHECK(p.next_ready(clock.now()) == clock.now());  // b and c are live
  clock.advance(2s);
  CHECK(p.pick(clock.now()) == &a);  // failback: the preferred sink is live again
  p.succeeded(a);
  CHECK(p.due_for_probe(clock.now()) == &b);  // b was penalised and not yet seen healthy
  for (int i = 0; i < 10; ++i) p.penalize(c, clock.now());
  const auto& m = p.members();
  CHECK(m[2].until == clock.now() + 8s);  // capped at max_penalty
}

TEST_CASE("load balance processor: round robin over live sinks, random among them",
          "[unit][group]") {
  Loop loop;
  test::RecordingSink a(loop), b(loop), c(loop);
  test::ManualClock clock;
  LoadBalanceProcessor rr({&a, &b, &c}, Selector::round_robin, 1s, 8s);
  CHECK(rr.pick(clock.now()) == &a);
  CHECK(rr.pick(clock.now()) == &b);
  CHECK(rr.pick(clock.now()) == &c);
  CHECK(rr.pick(clock.now()) == &a);
  rr.penalize(b, clock.now());
  CHECK(rr.pick(clock.now()) == &c);
  CHECK(rr.pick(clock.now()) == &a);
  CHECK(rr.pick(clock.now()) == &c);
  LoadBalanceProcessor rnd({&a, &b, &c}, Selector::random, 1s, 8s, 42);
  rnd.penalize(a, clock.now());
  std::map<Sink*, int> seen;
  for (int i = 0; i < 300; ++i) ++seen[rnd.pick(clock.now())];
  CHECK(seen.count(&a) == 0);
  CHECK(seen[&b] > 100);
  CHECK(seen[&c] > 100);
  rnd.penalize(b, clock.now());
  rnd.penalize(c, clock.now());
  CHECK(rnd.pick(clock.now()) == nullptr);
}

namespace {

// Two scripted sinks behind a failover group on one memory channel.
struct FailoverRig {
  Loop loop;
  MetricsRegistry metrics;
  SteadyClock clock;
  ComponentContext ch_ctx{loop, metrics, "buf", "memory", "/tmp"};
  channels::MemoryChannel channel{
      {.max_events = 1000, .max_bytes = {1 << 20}, .transaction_events = 10}, ch_ctx};
  test::RecordingSink primary{loop}, backup{loop}, dead{loop};
  Safe safe;
  SourceOutput output{loop, {&channel}, 4};
  std::unique_ptr<SinkGroup> group;

  explicit FailoverRig(bool with_dead_letter = false) {
    output.set_listener(&safe);
    GroupConfig cfg{
        .max_in_flight = 2, .batch_events = 2, .max_penalty = 40ms, .penalty_base = 20ms};
    std::vector<GroupMember> members{{"primary", "recording", &primary, 5s},
                                     {"backup", "recording", &backup, 5s}};
    std::optional<GroupMember> dl;
    if (with_dead_letter) dl = GroupMember{"dead", "recording", &dead, 5s};
    group = std::make_unique<SinkGroup>(
        ComponentContext{loop, metrics, "up", "failover", "/tmp"}, channel,
        *channel.open_cursor("up"),
        std::make_unique<FailoverProcessor>(std::vector<Sink*>{&primary, &backup}, cfg.penalty_base,
                                            cfg.max_penalty),
        std::move(members), cfg, clock, std::move(dl));
  }
  void put(std::size_t n, std::size_t first) {
    Batch b = test::make_batch(n, "e", first);
    output.put(b, {});
  }
  double metric(const char* name, Labels l) {
    double v = 0;
    metrics.find(name, l, v);
    return v;
  }
};

std::vector<std::string> sorted_union(std::vector<std::string> a,
                                      const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  std::sort(a.begin(), a.end());
  a.erase(std::unique(a.begin(), a.end()), a.end());
  return a;
}

}  // namespace

TEST_CASE("failover group: a failing primary hands the batch to the backup, then traffic returns",
          "[unit][group]") {
  FailoverRig r;
  r.primary.script({DeliveryResult::retry("down")});
  r.put(2, 0);
  r.group->start();
  REQUIRE(test::run_until(r.loop, 2s, [&] { return r.channel.events() == 0; }));
  CHECK(r.backup.delivered == std::vector<std::string>{"e0", "e1"});  // neither lost nor reordered
  CHECK(r.group->active() == "backup");
  // After the penalty (20ms) the primary gets the next batch again (it has no probe): failback.
  const auto until = std::chrono::steady_clock::now() + 30ms;
  test::run_until(r.loop, 1s, [&] { return std::chrono::steady_clock::now() >= until; });
  r.put(2, 2);
  REQUIRE(test::run_until(r.loop, 2s, [&] { return r.channel.events() == 0; }));
  CHECK(r.primary.delivered == std::vector<std::string>{"e2", "e3"});
  CHECK(r.group->active() == "primary");
  CHECK(r.metric("sluice_group_switches_total", {{"component", "up"}, {"type", "failover"}}) == 2);
  CHECK(r.metric("sluice_group_active_sink",
                 {{"component", "up"}, {"type", "failover"}, {"sink", "primary"}}) == 1);
  CHECK(r.metric("sluice_group_active_sink",
                 {{"component", "up"}, {"type", "failover"}, {"sink", "backup"}}) == 0);
  CHECK(sorted_union(r.primary.delivered, r.backup.delivered) ==
        std::vector<std::string>{"e0", "e1", "e2", "e3"});
  r.group.reset();
}

TEST_CASE("failover group: everything fails for a while, nothing is lost", "[unit][group]") {
  FailoverRig r;
  std::vector<DeliveryResult> fail(6, DeliveryResult::retry("down"));
  r.primary.script(fail);
  r.backup.script(fail);
  for (std::size_t i = 0; i < 20; i += 2) r.put(2, i);
  r.group->start();
  REQUIRE(test::run_until(r.loop, 5s,
                          [&] { return r.channel.events() == 0 && r.group->in_flight() == 0; }));
  std::vector<std::string> expected;
  for (int i = 0; i < 20; ++i) expected.push_back("e" + std::to_string(i));
  std::sort(expected.begin(), expected.end());
  CHECK(sorted_union(r.primary.delivered, r.backup.delivered) == expected);
  CHECK(r.safe.safe == 10);
  r.group.reset();
}

TEST_CASE(
    "dead letter: rejected events go to the dead-letter sink with the reason, the rest commit",
    "[unit][group]") {
  FailoverRig r(true);
  r.primary.script({DeliveryResult::reject("message too large", {1})});
  r.put(2, 0);
  r.group->start();
  REQUIRE(test::run_until(r.loop, 2s,
                          [&] { return r.channel.events() == 0 && r.group->in_flight() == 0; }));
  CHECK(r.dead.delivered == std::vector<std::string>{"e1"});
  CHECK(r.metric("sluice_group_dead_letter_events_total",
                 {{"component", "up"}, {"type", "failover"}}) == 1);
  CHECK(r.metric("sluice_group_rejected_dropped_events_total",
                 {{"component", "up"}, {"type", "failover"}}) == 0);
  CHECK(r.safe.safe == 1);
  r.group.reset();
}

TEST_CASE("dead letter: a failing dead-letter sink holds the lease until it succeeds",
          "[unit][group]") {
  FailoverRig r(true);
  r.primary.script({DeliveryResult::reject("bad record")});
  r.dead.script({DeliveryResult::retry("disk full")});
  r.put(2, 0);
  r.group->start();
  REQUIRE(test::run_until(r.loop, 3s,
                          [&] { return r.channel.events() == 0 && r.group->in_flight() == 0; }));
  CHECK(r.dead.attempted == std::vector<std::string>{"e0", "e1", "e0", "e1"});
  CHECK(r.dead.delivered == std::vector<std::string>{"e0", "e1"});
  CHECK(r.safe.safe == 1);
  r.group.reset();
}

// A rollback while the dead-letter sink's retry waited on its timer: the timer went on, sent the
// rolled-back events to the dead letter again, and its answer found a slot outside the group's
// order, never freed (in_flight stuck, so a drain never ended).
TEST_CASE("dead letter: a rollback while its retry waits frees the slot and sends nothing more",
          "[unit][group]") {
  FailoverRig r(true);
  r.primary.script({DeliveryResult::retry("down"), DeliveryResult::reject("bad record")});
  r.primary.hold_next(1);
  r.dead.script({DeliveryResult::retry("disk full")});
  r.put(4, 0);
  r.group->start();
  REQUIRE(test::run_until(r.loop, 2s, [&] { return r.dead.deliveries == 1; }));
  r.primary.release_held();
  REQUIRE(test::run_until(r.loop, 2s,
                          [&] { return r.channel.events() == 0 && r.group->in_flight() == 0; }));
  CHECK(sorted_union(r.primary.delivered, r.backup.delivered) ==
        std::vector<std::string>{"e0", "e1", "e2", "e3"});
  // The dead letter's 1 s retry would have fired by now.
  CHECK_FALSE(test::run_until(r.loop, 1500ms, [&] { return r.dead.deliveries > 1; }));
  CHECK(r.group->in_flight() == 0);
  CHECK(r.metric("sluice_group_dead_letter_events_total",
                 {{"component", "up"}, {"type", "failover"}}) == 0);
  bool drained = false;
  r.group->drain([&] { drained = true; });
  CHECK(test::run_until(r.loop, 1s, [&] { return drained; }));
  r.group.reset();
}

namespace {

// A channel that, like the lmdb channel, tells a waiting group about data from inside rollback()
// and claims to be durable; the events are kept by a memory channel underneath.
class InlineRollbackChannel final : public Channel, private DataListener {
 public:
  explicit InlineRollbackChannel(Channel& inner) : inner_(inner) {}
  Result<CursorId> open_cursor(std::string_view group) override {
    return inner_.open_cursor(group);
  }
  std::uint32_t max_transaction_events() const noexcept override {
    return inner_.max_transaction_events();
  }
  void put(Batch& batch, const SourceCheckpoint& cp, PutListener& done) override {
    inner_.put(batch, cp, done);
  }
  void wait_for_space(SpaceListener& l) override { inner_.wait_for_space(l); }
  Result<Lease> take(CursorId cursor, Batch& out, TakeLimits limits) override {
    Result<Lease> l = inner_.take(cursor, out, limits);
    if (!l || !l->held()) return l;
    const std::uint64_t token = ++next_;
    const std::uint32_t events = l->events();
    const std::uint64_t bytes = l->bytes();
    leases_.emplace(token, std::move(*l));
    return Lease(this, token, events, bytes);
  }
  void wait_for_data(CursorId cursor, DataListener& l) override {
    cursor_ = cursor;
    waiter_ = &l;
    inner_.wait_for_data(cursor, *this);
  }
  void commit(Lease&& lease, CommitListener& done) override {
    auto it = leases_.find(lease.token());
    REQUIRE(it != leases_.end());
    Lease inner = std::move(it->second);
    leases_.erase(it);
    lease.release();
    inner_.commit(std::move(inner), done);
  }
  bool durable() const noexcept override { return true; }
  std::uint64_t events() const noexcept override { return inner_.events(); }
  std::uint64_t bytes() const noexcept override { return inner_.bytes(); }
  std::size_t leases() const noexcept { return leases_.size(); }

 protected:
  void rollback(const Lease& lease) noexcept override {
    auto it = leases_.find(lease.token());
    if (it == leases_.end()) return;
    it->second.rollback();
    leases_.erase(it);
    // Inline, as the lmdb channel's rollback() does.
    if (DataListener* w = std::exchange(waiter_, nullptr)) w->on_data();
  }

 private:
  void on_data() noexcept override {
    if (DataListener* w = std::exchange(waiter_, nullptr)) w->on_data();
  }
  Channel& inner_;
  CursorId cursor_ = 0;
  DataListener* waiter_ = nullptr;
  std::map<std::uint64_t, Lease> leases_;
  std::uint64_t next_ = 0;
};

}  // namespace

// Hardening item 2: the rollback of the primary's lease woke the group from inside retry_from(),
// which took the batch again for the backup and then erased that new lease from its order, so the
// backup's delivery was never committed (SIGTERM waited the whole shutdown_timeout).
TEST_CASE(
    "failover group: a rollback that wakes the group at once still commits the backup's batch",
    "[unit][group]") {
  Loop loop;
  MetricsRegistry metrics;
  SteadyClock clock;
  {
    ComponentContext ch_ctx{loop, metrics, "buf", "memory", "/tmp"};
    channels::MemoryChannel memory{
        {.max_events = 1000, .max_bytes = {1 << 20}, .transaction_events = 10}, ch_ctx};
    InlineRollbackChannel channel(memory);
    test::RecordingSink primary{loop}, backup{loop};
    Safe safe;
    SourceOutput output{loop, {&channel}, 4};
    output.set_listener(&safe);
    GroupConfig cfg{.max_in_flight = 4, .batch_events = 10, .max_penalty = 1s, .penalty_base = 1s};
    std::vector<GroupMember> members{{"primary", "recording", &primary, 5s},
                                     {"backup", "recording", &backup, 5s}};
    auto group = std::make_unique<SinkGroup>(
        ComponentContext{loop, metrics, "up", "failover", "/tmp"}, channel,
        *channel.open_cursor("up"),
        std::make_unique<FailoverProcessor>(std::vector<Sink*>{&primary, &backup}, cfg.penalty_base,
                                            cfg.max_penalty),
        std::move(members), cfg, clock);
    primary.script({DeliveryResult::retry("disk full")});
    group->start();
    Batch b = test::make_batch(3, "e", 0);
    output.put(b, {});
    REQUIRE(test::run_until(loop, 2s, [&] { return backup.delivered.size() == 3; }));
    CHECK(backup.delivered == std::vector<std::string>{"e0", "e1", "e2"});
    // The backup's answer commits its lease: nothing stays in flight or in the channel.
    CHECK(test::run_until(loop, 1s, [&] { return memory.events() == 0; }));
    CHECK(group->in_flight() == 0);
    CHECK(channel.leases() == 0);
    bool drained = false;
    group->drain([&] { drained = true; });
    CHECK(test::run_until(loop, 1s, [&] { return drained; }));
    group.reset();
  }
  REQUIRE(loop.close() == 0);  // every handle closed by its owner
}

TEST_CASE("sink group: an idle group's sink without a probe is live again once its penalty ends",
          "[unit][group]") {
  Loop loop;
  {
    MetricsRegistry metrics;
    SteadyClock clock;
    ComponentContext ch_ctx{loop, metrics, "buf", "memory", "/tmp"};
    channels::MemoryChannel channel(
        {.max_events = 1000, .max_bytes = {1 << 20}, .transaction_events = 10}, ch_ctx);
    test::RecordingSink sink{loop};
    Safe safe;
    SourceOutput output{loop, {&channel}, 4};
    output.set_listener(&safe);
    GroupConfig cfg;
    cfg.penalty_base = 200ms;
    cfg.max_penalty = 200ms;
    cfg.max_in_flight = 1;
    cfg.batch_events = 100;
    const CursorId cursor = *channel.open_cursor("g");
    std::vector<GroupMember> members{{"k", "recording", &sink, 5s}};
    SinkGroup group(ComponentContext{loop, metrics, "g", "group", "/tmp"}, channel, cursor,
                    std::make_unique<SingleProcessor>(sink, cfg.penalty_base, cfg.max_penalty),
                    std::move(members), cfg, clock);
    group.start();
    sink.script({DeliveryResult::retry("busy")});
    Batch five = test::make_batch(5, "e", 0);
    output.put(five, {});
    test::run_until(loop, 2s, [&] { return sink.deliveries == 1 && group.in_flight() == 0; });
    INFO(sink.deliveries << " in flight " << group.in_flight());
    REQUIRE(sink.deliveries == 1);
    REQUIRE(group.in_flight() == 0);
    CHECK_FALSE(group.has_live_sink());
    // The events go elsewhere (as a detached lmdb cursor's backlog would): the group is idle.
    Batch b;
    auto lease = channel.take(cursor, b, {1000, 1 << 20});
    REQUIRE(lease.has_value());
    REQUIRE(b.size() == 5);
    struct Done final : CommitListener {
      void on_committed(std::uint64_t, Status) noexcept override {}
    } done;
    channel.commit(std::move(*lease), done);
    CHECK(test::run_until(loop, 2s, [&] { return group.has_live_sink(); }));
    CHECK(sink.deliveries == 1);
  }
  REQUIRE(loop.close() == 0);
}

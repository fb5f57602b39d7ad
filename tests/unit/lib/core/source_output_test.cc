#include "lib/core/source_output.h"

#include <catch2/catch.hpp>
#include <deque>

#include "lib/core/metrics.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace std::chrono_literals;

namespace {

// A channel whose put answers are scripted, answered on a later loop turn as an asynchronous
// channel (lmdb) does, keeping the contract of channel.h: a failed put leaves the batch with the
// caller, an ok put takes it, and once a put failed every put made before that failure was
// reported fails too.
class ScriptedChannel final : public Channel {
 public:
  explicit ScriptedChannel(Loop& loop) : loop_(loop) {}

  /// Answers for the next put attempts that are not failed by an earlier failure, in order; when
  /// empty, every put answers ok.
  std::deque<Status> script;
  /// The bodies of every put attempt, and of the stored ones, in order.
  std::vector<std::vector<std::string>> attempts, stored;
  SpaceListener* space_waiter = nullptr;
  int empty_puts = 0;

  Result<CursorId> open_cursor(std::string_view) override { return CursorId{0}; }
  std::uint32_t max_transaction_events() const noexcept override { return 100; }
  void put(Batch& batch, const SourceCheckpoint& checkpoint, PutListener& done) override {
    if (batch.empty()) ++empty_puts;
    std::vector<std::string> bodies;
    for (std::size_t i = 0; i < batch.size(); ++i) bodies.emplace_back(batch[i].body());
    attempts.push_back(bodies);
    // Like lmdb: what is stored is copied during put(), the answer comes on a later turn.
    answers_.push_back({&done, checkpoint.listener, checkpoint.seq, attempts.size(), bodies});
    loop_.defer(&ScriptedChannel::answer_task, this, 0);
  }
  void wait_for_space(SpaceListener& listener) override { space_waiter = &listener; }
  Result<Lease> take(CursorId, Batch& out, TakeLimits) override {
    out.clear();
    return Lease();
  }
  void wait_for_data(CursorId, DataListener&) override {}
  void commit(Lease&& lease, CommitListener&) override { lease.release(); }
  bool durable() const noexcept override { return true; }
  std::uint64_t events() const noexcept override { return 0; }
  std::uint64_t bytes() const noexcept override { return 0; }

 protected:
  void rollback(const Lease&) noexcept override {}

 private:
  struct Answer {
    PutListener* done;
    SafeListener* safe;
    std::uint64_t seq;
    std::size_t attempt;
    std::vector<std::string> bodies;
  };
  static void answer_task(void* self, std::uint64_t) {
    auto* ch = static_cast<ScriptedChannel*>(self);
    Answer a = std::move(ch->answers_.front());
    ch->answers_.pop_front();
    Status st;
    if (a.attempt <= ch->fenced_upto_) {
      st = ch->fence_;
    } else if (!ch->script.empty()) {
      st = std::move(ch->script.front());
      ch->script.pop_front();
      if (!st.ok()) {
        ch->fence_ = st;
        ch->fenced_upto_ = ch->attempts.size();
      }
    }
    const bool ok = st.ok();
    if (ok) ch->stored.push_back(a.bodies);
    a.done->on_put_done(a.seq, std::move(st));
    if (ok && a.safe != nullptr) a.safe->on_safe_in_channel(a.seq);
  }
  std::size_t fenced_upto_ = 0;
  Status fence_;
  Loop& loop_;
  std::deque<Answer> answers_;
};

struct Listener final : OutputListener {
  std::vector<std::uint64_t> safe;
  int writable = 0;
  void on_safe(std::uint64_t seq) noexcept override { safe.push_back(seq); }
  void on_writable() noexcept override { ++writable; }
};

std::vector<std::string> batch_bodies(std::string_view prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(std::string(prefix) + std::to_string(i));
  return out;
}

int close_loop(Loop& loop) { return loop.close(); }

}  // namespace

TEST_CASE("source output: several failed puts are all retried in order, nothing lost",
          "[unit][source_output]") {
  Loop loop;
  {
    MetricsRegistry metrics;
    ScriptedChannel ch(loop);
    // Three puts in flight fail (the first with io, the two after it as the channel's contract
    // says: every later put already made fails too), then the first retry fails again, and the
    // two after it with it.
    ch.script = {Status(Errc::io, "disk on fire"), Status(Errc::io, "still on fire")};
    SourceOutput out(loop, {&ch}, 4);
    out.set_source_name("src");
    out.set_metrics(metrics, {{"component", "src"}, {"type", "test"}});
    Listener listener;
    out.set_listener(&listener);
    for (const char* p : {"a", "b", "c"}) {
      REQUIRE(out.writable());
      Batch b = test::make_batch(2, p);
      out.put(b, p);
    }
    REQUIRE(test::run_until(loop, 5s, [&] { return out.put_errors() >= 3; }));
    CHECK_FALSE(out.writable());
    CHECK(out.health_problem() == "source src: puts fail, retrying: io: disk on fire");
    REQUIRE(test::run_until(loop, 10s, [&] { return ch.stored.size() == 3 && out.idle(); }));
    CHECK(ch.stored == std::vector<std::vector<std::string>>{
                           batch_bodies("a", 2), batch_bodies("b", 2), batch_bodies("c", 2)});
    CHECK(ch.empty_puts == 0);
    CHECK(out.put_errors() == 6);
    CHECK(ch.attempts.size() == 9);
    REQUIRE(test::run_until(loop, 1s, [&] { return !listener.safe.empty(); }));
    CHECK(listener.safe.back() == 3);
    CHECK(out.writable());
    CHECK(out.health_problem().empty());
    double errors = 0;
    CHECK(metrics.find("sluice_source_put_errors_total",
                       {{"component", "src"}, {"type", "test"}, {"reason", "io"}}, errors));
    CHECK(errors == 6.0);
  }
  REQUIRE(close_loop(loop) == 0);
}

TEST_CASE("source output: puts refused for lack of space after the channel took them all resume",
          "[unit][source_output]") {
  Loop loop;
  {
    MetricsRegistry metrics;
    ScriptedChannel ch(loop);
    // A disk full seen by the store after the channel accepted the puts: back-pressure, answered
    // later, for every put in flight.
    ch.script.emplace_back(Errc::backpressure, "no space left");
    SourceOutput out(loop, {&ch}, 4);
    out.set_source_name("src");
    out.set_metrics(metrics, {{"component", "src"}, {"type", "test"}});
    Listener listener;
    out.set_listener(&listener);
    for (const char* p : {"a", "b", "c", "d"}) {
      REQUIRE(out.writable());
      Batch b = test::make_batch(3, p);
      out.put(b, p);
    }
    REQUIRE(test::run_until(loop, 5s, [&] { return out.put_errors() == 4; }));
    CHECK(out.waiting_for_space());
    CHECK_FALSE(out.writable());
    CHECK(out.health_problem() == "source src: puts fail, retrying: backpressure: no space left");
    REQUIRE(ch.space_waiter != nullptr);
    // Room again: every waiting put goes in, oldest first.
    std::exchange(ch.space_waiter, nullptr)->on_space();
    REQUIRE(test::run_until(loop, 5s, [&] { return ch.stored.size() == 4 && out.idle(); }));
    CHECK(ch.stored ==
          std::vector<std::vector<std::string>>{batch_bodies("a", 3), batch_bodies("b", 3),
                                                batch_bodies("c", 3), batch_bodies("d", 3)});
    REQUIRE(test::run_until(loop, 1s, [&] { return !listener.safe.empty(); }));
    CHECK(listener.safe.back() == 4);
    CHECK(listener.writable >= 1);
    CHECK(out.health_problem().empty());
    double errors = 0;
    CHECK(metrics.find("sluice_source_put_errors_total",
                       {{"component", "src"}, {"type", "test"}, {"reason", "no_space"}}, errors));
    CHECK(errors == 4.0);
  }
  REQUIRE(close_loop(loop) == 0);
}

namespace {

// Stores the first put and never reports it safe (a memory channel whose sink is dead); refuses
// every later put for lack of space, inside put() as the memory channel does.
class FullChannel final : public Channel {
 public:
  explicit FullChannel(Loop& loop) : loop_(loop) {}
  Result<CursorId> open_cursor(std::string_view) override { return CursorId{0}; }
  std::uint32_t max_transaction_events() const noexcept override { return 100; }
  void put(Batch& batch, const SourceCheckpoint& checkpoint, PutListener& done) override {
    if (stored_) return done.on_put_done(checkpoint.seq, Status(Errc::backpressure, "full"));
    stored_ = true;
    batch.clear();
    done.on_put_done(checkpoint.seq, Status());
  }
  void wait_for_space(SpaceListener&) override {}
  Result<Lease> take(CursorId, Batch& out, TakeLimits) override {
    out.clear();
    return Lease();
  }
  void wait_for_data(CursorId, DataListener&) override {}
  void commit(Lease&& lease, CommitListener&) override { lease.release(); }
  std::uint64_t events() const noexcept override { return stored_ ? 1 : 0; }
  std::uint64_t bytes() const noexcept override { return 0; }

 protected:
  void rollback(const Lease&) noexcept override {}

 private:
  Loop& loop_;
  bool stored_ = false;
};

}  // namespace

TEST_CASE("source output: refused puts behind an unsafe one do not grow its state",
          "[unit][source_output]") {
  Loop loop;
  {
    FullChannel ch(loop);
    SourceOutput out(loop, {&ch}, 4);
    Listener listener;
    out.set_listener(&listener);
    Batch first = test::make_batch(1, "kept");
    const std::uint64_t kept = out.put(first, "p");
    // A flood of requests answered FAILED / 503 within one loop turn, as a network source does.
    for (int i = 0; i < 100'000; ++i) {
      REQUIRE(out.writable());
      Batch b = test::make_batch(1, "refused");
      out.put(b, "p");
      REQUIRE(out.waiting_for_space());
      REQUIRE(out.abandon_waiting() == 1);
    }
    CHECK(out.unsafe_puts() <= 2);
    CHECK(loop.deferred_tasks() <= 1);
    loop.run_once();
    CHECK(listener.safe.empty());  // the stored put is still not safe
    CHECK(out.last_seq() == kept);
  }
  REQUIRE(close_loop(loop) == 0);
}

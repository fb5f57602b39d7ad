#include <catch2/catch.hpp>

#include "tests/support/allocation_check.h"
#include "tests/unit/sql/sql_test_support.h"

using namespace sluice;
using namespace sluice::sql;
using namespace sluice::sql::test;

namespace {

/// Events of `keys` x 2 groups spread over [from, from + span) seconds.
Batch make_events(int n, std::int64_t from_s, std::int64_t span_s, int keys) {
  Batch b;
  for (int e = 0; e < n; ++e) {
    const std::int64_t t = from_s * kSec + (span_s * kSec / n) * e;
    add_event(
        b, t,
        {s("game_id", "game-" + std::to_string(e % keys)), s("event", e % 2 ? "chat" : "login"),
         i("latency", 10 + e % 17), d("score", std::to_string(e % 9) + ".5")});
  }
  return b;
}

constexpr std::string_view kCommon =
    "SELECT game_id, event, COUNT(*) AS n, SUM(latency) AS total, AVG(score) AS avg_score, "
    "MIN(latency) AS lo, MAX(score) AS hi FROM src WHERE latency > 0 AND LOWER(event) <> 'x' ";

}  // namespace

TEST_CASE("sql: COUNT SUM AVG MIN MAX over known keys do not allocate per event", "[unit][sql]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  auto q =
      must_compile(std::string(kCommon) + "GROUP BY TUMBLE(INTERVAL '1' MINUTE), game_id, event");
  auto r = must_run(q);
  // Every key seen once in the window, then many more events for the same keys.
  Batch warm = make_events(400, 0, 10, 50);
  Batch hot = make_events(4000, 10, 40, 50);
  r->on_batch(warm);
  sluice::test::AllocationCounter allocs;
  for (std::size_t e = 0; e < hot.size(); ++e) {
    REQUIRE(r->on_event(hot[e]) == EventOutcome::accepted);
  }
  CHECK(allocs.count() == 0);
  CHECK(r->stats().events_accepted == 4400);
}

TEST_CASE("sql: TUMBLE windows closing and reopening do not allocate once warm", "[unit][sql]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  auto q =
      must_compile(std::string(kCommon) + "GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id, event");
  auto r = must_run(q);
  Batch out;
  std::vector<Batch> rounds;
  for (int w = 0; w < 40; ++w) rounds.push_back(make_events(500, 5 * w, 5, 50));
  for (int w = 0; w < 10; ++w) {  // warm-up: panes in the pool, output batch at size
    r->on_batch(rounds[w]);
    out.clear();
    r->emit_closed(out);
  }
  sluice::test::AllocationCounter allocs;
  std::size_t rows = 0;
  for (int w = 10; w < 40; ++w) {
    r->on_batch(rounds[w]);
    out.clear();
    rows += r->emit_closed(out);
  }
  CHECK(allocs.count() == 0);
  CHECK(rows == 30 * 50);  // 50 (game_id, event) groups per window
}

TEST_CASE("sql: HOP and SESSION over known keys do not allocate once warm", "[unit][sql]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  for (std::string_view window :
       {"GROUP BY HOP(INTERVAL '5' SECOND, INTERVAL '20' SECOND), game_id, event",
        "GROUP BY SESSION(INTERVAL '2' SECOND), game_id, event"}) {
    INFO(window);
    auto q = must_compile(std::string(kCommon) + std::string(window));
    auto r = must_run(q);
    Batch out;
    std::vector<Batch> rounds;
    // Bursts of 1 s with 4 s pauses: every session closes and a new one opens per key.
    for (int w = 0; w < 40; ++w) rounds.push_back(make_events(500, 5 * w, 1, 50));
    for (int w = 0; w < 10; ++w) {
      r->on_batch(rounds[w]);
      out.clear();
      r->emit_closed(out);
    }
    sluice::test::AllocationCounter allocs;
    std::size_t rows = 0;
    for (int w = 10; w < 40; ++w) {
      r->on_batch(rounds[w]);
      out.clear();
      rows += r->emit_closed(out);
    }
    CHECK(allocs.count() == 0);
    CHECK(rows == 30 * 50);  // 50 (game_id, event) groups per window
  }
}

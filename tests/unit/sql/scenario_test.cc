#include <algorithm>
#include <catch2/catch.hpp>

#include "tests/support/agent_process.h"
#include "tests/support/test_support.h"
#include "tests/unit/sql/sql_test_support.h"

using namespace sluice;
using namespace sluice::sql;
using namespace sluice::sql::test;

namespace {

constexpr std::string_view kReferenceQuery = R"(
CREATE TABLE game_event_source (
  create_time TIMESTAMP NOT NULL, uid BIGINT, event VARCHAR, game_id VARCHAR,
  role VARCHAR, server_id VARCHAR,
  WATERMARK FOR create_time AS create_time - INTERVAL '5 seconds'
);
SELECT game_id, event, COUNT(*) AS events, COUNT(DISTINCT uid) AS players
FROM game_event_source
GROUP BY TUMBLE(INTERVAL '5 SECONDS'), game_id, event;
)";

// Computed at authoring time by a python3 script independent of sluice: create_time read as UTC
// milliseconds, window end = floor(ms / 5000) * 5000 + 5000, an event late when its window end
// <= max time seen - 5000 (none is: the data is at most 4.2 s out of order), rows sorted.
const std::vector<std::string> kExpected = {
    "1750797000000|game_id=g1,event=chat,events=2,players=2",
    "1750797000000|game_id=g1,event=login,events=4,players=4",
    "1750797000000|game_id=g1,event=logout,events=3,players=3",
    "1750797000000|game_id=g1,event=pay,events=1,players=1",
    "1750797000000|game_id=g2,event=logout,events=3,players=3",
    "1750797000000|game_id=g2,event=pay,events=2,players=2",
    "1750797000000|game_id=g3,event=login,events=1,players=1",
    "1750797000000|game_id=g3,event=logout,events=1,players=1",
    "1750797005000|game_id=g1,event=chat,events=24,players=24",
    "1750797005000|game_id=g1,event=levelup,events=22,players=22",
    "1750797005000|game_id=g1,event=login,events=16,players=16",
    "1750797005000|game_id=g1,event=logout,events=19,players=19",
    "1750797005000|game_id=g1,event=pay,events=24,players=22",
    "1750797005000|game_id=g2,event=chat,events=15,players=15",
    "1750797005000|game_id=g2,event=levelup,events=18,players=18",
    "1750797005000|game_id=g2,event=login,events=18,players=18",
    "1750797005000|game_id=g2,event=logout,events=19,players=18",
    "1750797005000|game_id=g2,event=pay,events=14,players=14",
    "1750797005000|game_id=g3,event=chat,events=17,players=16",
    "1750797005000|game_id=g3,event=levelup,events=13,players=13",
    "1750797005000|game_id=g3,event=login,events=19,players=19",
    "1750797005000|game_id=g3,event=logout,events=10,players=10",
    "1750797005000|game_id=g3,event=pay,events=21,players=20",
    "1750797010000|game_id=g1,event=chat,events=14,players=14",
    "1750797010000|game_id=g1,event=levelup,events=22,players=20",
    "1750797010000|game_id=g1,event=login,events=19,players=19",
    "1750797010000|game_id=g1,event=logout,events=13,players=13",
    "1750797010000|game_id=g1,event=pay,events=21,players=20",
    "1750797010000|game_id=g2,event=chat,events=14,players=14",
    "1750797010000|game_id=g2,event=levelup,events=13,players=13",
    "1750797010000|game_id=g2,event=login,events=17,players=17",
    "1750797010000|game_id=g2,event=logout,events=21,players=20",
    "1750797010000|game_id=g2,event=pay,events=15,players=15",
    "1750797010000|game_id=g3,event=chat,events=12,players=12",
    "1750797010000|game_id=g3,event=levelup,events=15,players=15",
    "1750797010000|game_id=g3,event=login,events=13,players=13",
    "1750797010000|game_id=g3,event=logout,events=15,players=15",
    "1750797010000|game_id=g3,event=pay,events=16,players=16",
    "1750797015000|game_id=g1,event=chat,events=20,players=19",
    "1750797015000|game_id=g1,event=levelup,events=18,players=17",
    "1750797015000|game_id=g1,event=login,events=18,players=18",
    "1750797015000|game_id=g1,event=logout,events=17,players=17",
    "1750797015000|game_id=g1,event=pay,events=18,players=18",
    "1750797015000|game_id=g2,event=chat,events=22,players=20",
    "1750797015000|game_id=g2,event=levelup,events=14,players=13",
    "1750797015000|game_id=g2,event=login,events=14,players=14",
    "1750797015000|game_id=g2,event=logout,events=20,players=19",
    "1750797015000|game_id=g2,event=pay,events=15,players=15",
    "1750797015000|game_id=g3,event=chat,events=17,players=17",
    "1750797015000|game_id=g3,event=levelup,events=23,players=23",
    "1750797015000|game_id=g3,event=login,events=22,players=21",
    "1750797015000|game_id=g3,event=logout,events=27,players=27",
    "1750797015000|game_id=g3,event=pay,events=12,players=12",
    "1750797020000|game_id=g1,event=chat,events=17,players=17",
    "1750797020000|game_id=g1,event=levelup,events=26,players=25",
    "1750797020000|game_id=g1,event=login,events=17,players=16",
    "1750797020000|game_id=g1,event=logout,events=17,players=16",
    "1750797020000|game_id=g1,event=pay,events=20,players=20",
    "1750797020000|game_id=g2,event=chat,events=20,players=19",
    "1750797020000|game_id=g2,event=levelup,events=14,players=14",
    "1750797020000|game_id=g2,event=login,events=11,players=11",
    "1750797020000|game_id=g2,event=logout,events=21,players=21",
    "1750797020000|game_id=g2,event=pay,events=15,players=15",
    "1750797020000|game_id=g3,event=chat,events=17,players=17",
    "1750797020000|game_id=g3,event=levelup,events=15,players=15",
    "1750797020000|game_id=g3,event=login,events=12,players=12",
    "1750797020000|game_id=g3,event=logout,events=23,players=22",
    "1750797020000|game_id=g3,event=pay,events=22,players=22",
    "1750797025000|game_id=g1,event=chat,events=21,players=21",
    "1750797025000|game_id=g1,event=levelup,events=11,players=11",
    "1750797025000|game_id=g1,event=login,events=11,players=11",
    "1750797025000|game_id=g1,event=logout,events=12,players=12",
    "1750797025000|game_id=g1,event=pay,events=15,players=15",
    "1750797025000|game_id=g2,event=chat,events=18,players=18",
    "1750797025000|game_id=g2,event=levelup,events=18,players=17",
    "1750797025000|game_id=g2,event=login,events=19,players=19",
    "1750797025000|game_id=g2,event=logout,events=28,players=28",
    "1750797025000|game_id=g2,event=pay,events=12,players=12",
    "1750797025000|game_id=g3,event=chat,events=18,players=17",
    "1750797025000|game_id=g3,event=levelup,events=9,players=9",
    "1750797025000|game_id=g3,event=login,events=21,players=21",
    "1750797025000|game_id=g3,event=logout,events=16,players=16",
    "1750797025000|game_id=g3,event=pay,events=19,players=18",
    "1750797030000|game_id=g1,event=chat,events=11,players=11",
    "1750797030000|game_id=g1,event=levelup,events=22,players=21",
    "1750797030000|game_id=g1,event=login,events=14,players=14",
    "1750797030000|game_id=g1,event=logout,events=20,players=19",
    "1750797030000|game_id=g1,event=pay,events=9,players=9",
    "1750797030000|game_id=g2,event=chat,events=9,players=9",
    "1750797030000|game_id=g2,event=levelup,events=19,players=19",
    "1750797030000|game_id=g2,event=login,events=17,players=17",
    "1750797030000|game_id=g2,event=logout,events=19,players=19",
    "1750797030000|game_id=g2,event=pay,events=20,players=20",
    "1750797030000|game_id=g3,event=chat,events=17,players=17",
    "1750797030000|game_id=g3,event=levelup,events=15,players=14",
    "1750797030000|game_id=g3,event=login,events=24,players=23",
    "1750797030000|game_id=g3,event=logout,events=14,players=14",
    "1750797030000|game_id=g3,event=pay,events=14,players=14",
    "1750797035000|game_id=g1,event=chat,events=16,players=16",
    "1750797035000|game_id=g1,event=levelup,events=14,players=14",
    "1750797035000|game_id=g1,event=login,events=24,players=23",
    "1750797035000|game_id=g1,event=logout,events=20,players=20",
    "1750797035000|game_id=g1,event=pay,events=15,players=15",
    "1750797035000|game_id=g2,event=chat,events=13,players=13",
    "1750797035000|game_id=g2,event=levelup,events=16,players=16",
    "1750797035000|game_id=g2,event=login,events=19,players=19",
    "1750797035000|game_id=g2,event=logout,events=15,players=15",
    "1750797035000|game_id=g2,event=pay,events=18,players=18",
    "1750797035000|game_id=g3,event=chat,events=25,players=23",
    "1750797035000|game_id=g3,event=levelup,events=15,players=15",
    "1750797035000|game_id=g3,event=login,events=18,players=18",
    "1750797035000|game_id=g3,event=logout,events=23,players=22",
    "1750797035000|game_id=g3,event=pay,events=17,players=16",
    "1750797040000|game_id=g1,event=chat,events=11,players=11",
    "1750797040000|game_id=g1,event=levelup,events=13,players=13",
    "1750797040000|game_id=g1,event=login,events=8,players=8",
    "1750797040000|game_id=g1,event=logout,events=7,players=7",
    "1750797040000|game_id=g1,event=pay,events=9,players=9",
    "1750797040000|game_id=g2,event=chat,events=19,players=19",
    "1750797040000|game_id=g2,event=levelup,events=13,players=13",
    "1750797040000|game_id=g2,event=login,events=11,players=11",
    "1750797040000|game_id=g2,event=logout,events=7,players=7",
    "1750797040000|game_id=g2,event=pay,events=10,players=10",
    "1750797040000|game_id=g3,event=chat,events=14,players=14",
    "1750797040000|game_id=g3,event=levelup,events=6,players=6",
    "1750797040000|game_id=g3,event=login,events=9,players=9",
    "1750797040000|game_id=g3,event=logout,events=17,players=16",
    "1750797040000|game_id=g3,event=pay,events=16,players=16",
};

std::vector<std::string> sorted_rows(const Batch& out) {
  std::vector<std::string> rows;
  for (std::size_t k = 0; k < out.size(); ++k) {
    rows.push_back(std::to_string(out[k].timestamp_ns() / 1'000'000) + "|" + row_text(out[k]));
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

}  // namespace

TEST_CASE("sql: scenario 2 reference query over game_events.ndjson", "[unit][sql]") {
  auto q = must_compile(kReferenceQuery);
  CHECK(!q.insert_into());
  CHECK(q.from() == "game_event_source");
  CHECK(q.watermark_column() == std::optional<std::string_view>("create_time"));
  CHECK(q.watermark_delay_ns() == std::optional<std::int64_t>(5 * kSec));
  Batch in, out;
  parse_ndjson(
      sluice::test::read_file(sluice::test::source_dir() + "/tests/data/game_events.ndjson"), in);
  REQUIRE(in.size() == 2000);
  auto r = must_run(q);
  for (std::size_t k = 0; k < in.size(); ++k) {
    CHECK(r->on_event(in[k]) == EventOutcome::accepted);
    r->emit_closed(out);  // rows leave as soon as their window closes
  }
  const std::size_t before_flush = out.size();
  CHECK(before_flush > 0);
  r->flush(out);
  CHECK(r->stats().events_late == 0);
  CHECK(r->stats().events_accepted == 2000);
  CHECK(sorted_rows(out) == kExpected);
  // Windows emitted before the flush all ended at or before the final watermark.
  for (std::size_t k = 0; k < before_flush; ++k) {
    CHECK(out[k].timestamp_ns() <= r->watermark());
  }
}

TEST_CASE("sql: scenario 2 state restored mid-stream gives the same rows", "[unit][sql]") {
  auto q = must_compile(kReferenceQuery);
  Batch in;
  parse_ndjson(
      sluice::test::read_file(sluice::test::source_dir() + "/tests/data/game_events.ndjson"), in);
  for (std::size_t cut : {1u, 417u, 1000u, 1999u}) {
    Batch out;
    auto a = must_run(q);
    for (std::size_t k = 0; k < cut; ++k) {
      a->on_event(in[k]);
      if (k % 7 == 0) a->emit_closed(out);
    }
    std::string state;
    a->serialize_state(state);
    a.reset();
    auto b = must_run(q);
    REQUIRE(b->restore_state(state).ok());
    for (std::size_t k = cut; k < in.size(); ++k) b->on_event(in[k]);
    b->flush(out);
    CHECK(sorted_rows(out) == kExpected);
    CHECK(b->stats().events_accepted == 2000);
  }
}

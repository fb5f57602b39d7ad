#include <catch2/catch.hpp>

#include "tests/unit/sql/sql_test_support.h"

using namespace sluice;
using namespace sluice::sql;
using namespace sluice::sql::test;

TEST_CASE("sql: tumble count per key closes on the watermark", "[unit][sql]") {
  auto q = must_compile(
      "INSERT INTO out SELECT game_id, COUNT(*) AS events, SUM(x) AS total FROM src "
      "GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id");
  CHECK(q.insert_into() == std::optional<std::string_view>("out"));
  CHECK(q.from() == "src");
  auto r = must_run(q);
  Batch in, out;
  add_event(in, 1 * kSec, {s("game_id", "g1"), i("x", 2)});
  add_event(in, 2 * kSec, {s("game_id", "g2"), i("x", 3)});
  add_event(in, 3 * kSec, {s("game_id", "g1"), i("x", 4)});
  add_event(in, 6 * kSec, {s("game_id", "g1"), i("x", 1)});
  for (std::size_t k = 0; k < in.size(); ++k) CHECK(r->on_event(in[k]) == EventOutcome::accepted);
  CHECK(r->emit_closed(out) == 2);
  CHECK(rows_of(out) ==
        std::vector<std::string>{"game_id=g1,events=2,total=6", "game_id=g2,events=1,total=3"});
  CHECK(out[0].timestamp_ns() == 5 * kSec);
  CHECK(out[0].body() == R"({"game_id":"g1","events":2,"total":6})");
  out.clear();
  CHECK(r->flush(out) == 1);
  CHECK(rows_of(out) == std::vector<std::string>{"game_id=g1,events=1,total=1"});
}

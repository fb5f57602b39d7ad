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

TEST_CASE("sql: rows leave in bounded batches and a checkpoint between them loses none",
          "[unit][sql]") {
  for (std::string_view window : {"TUMBLE(INTERVAL '5' SECOND)", "SESSION(INTERVAL '2' SECOND)"}) {
    INFO(window);
    auto q = must_compile("SELECT k, COUNT(*) AS n, SUM(x) AS total FROM src GROUP BY " +
                          std::string(window) + ", k");
    Batch in;
    for (int e = 0; e < 300; ++e) {
      add_event(in, (e / 100) * 10 * kSec + e, {s("k", "key" + std::to_string(e % 37)), i("x", e)});
    }
    auto whole = must_run(q);
    whole->on_batch(in);
    Batch all;
    whole->flush(all);
    REQUIRE(all.size() == 3 * 37);

    auto r = must_run(q);
    r->on_batch(in);
    Batch parts, chunk;
    CHECK(r->flush(chunk, 10) == 10);
    CHECK(r->has_pending_rows());
    for (std::size_t k = 0; k < chunk.size(); ++k) parts.append_range(chunk, k, k + 1);
    // A checkpoint taken now holds only the rows not yet returned.
    std::string state;
    r->serialize_state(state);
    auto restored = must_run(q);
    REQUIRE(restored->restore_state(state).ok());
    CHECK(restored->has_pending_rows());
    while (restored->has_pending_rows()) {
      chunk.clear();
      const std::size_t got = restored->emit_closed(chunk, 7);
      CHECK(got <= 7);
      CHECK(got == chunk.size());
      parts.append_range(chunk, 0, chunk.size());
    }
    CHECK(rows_of(parts) == rows_of(all));
  }
}

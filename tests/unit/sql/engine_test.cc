#include <catch2/catch.hpp>
#include <charconv>

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

TEST_CASE("sql: explain describes source, filter, key, window, aggregates and state",
          "[unit][sql]") {
  auto q = must_compile(
      "INSERT INTO rows SELECT server_id, COUNT(DISTINCT uid) AS active, "
      "APPROX_PERCENTILE(ms, 0.99) AS p99 FROM web WHERE status >= 500 "
      "GROUP BY HOP(INTERVAL '10' SECOND, INTERVAL '1' MINUTE), server_id HAVING active > 1");
  CHECK(q.explain() ==
        "source:     web\n"
        "target:     rows\n"
        "event time: (runner options)\n"
        "filter:     status >= 500\n"
        "key:        server_id ANY\n"
        "window:     HOP size 1min slide 10s (each event in 6 windows)\n"
        "aggregates:\n"
        "  COUNT(DISTINCT uid) -> BIGINT (exact up to distinct_exact_limit, then HyperLogLog, "
        "0.81% standard error)\n"
        "  APPROX_PERCENTILE(ms, 0.99) -> DOUBLE (DDSketch, 1% relative error)\n"
        "having:     active > 1\n"
        "output:     server_id ANY, active BIGINT, p99 DOUBLE\n"
        "reads:      status, server_id, uid, ms\n"
        "state:      about 448 bytes per group and open window, plus up to 32 bytes per distinct "
        "value (16 KiB once HyperLogLog)\n");
  CHECK(q.referenced_fields() == std::vector<std::string>{"status", "server_id", "uid", "ms"});
  CHECK(q.window().kind == WindowKind::hop);
  CHECK(q.window().size_ns == 60 * kSec);
  CHECK(q.window().slide_ns == 10 * kSec);
  REQUIRE(q.output().size() == 3);
  CHECK(q.output()[1].name == "active");
  CHECK(q.output()[1].is_aggregate);
  CHECK(!q.output()[0].is_aggregate);
}

TEST_CASE("sql: runner options are checked", "[unit][sql]") {
  auto q = must_compile("SELECT COUNT(*) AS n FROM src GROUP BY TUMBLE(INTERVAL '5' SECOND)");
  RunnerOptions o;
  o.allowed_lateness_ns = -1;
  CHECK(WindowRunner::create(q, o).error().message() == "allowed_lateness must not be negative");
  o = {};
  o.time_source = TimeSource::field;
  CHECK(WindowRunner::create(q, o).error().message() ==
        "event time from a field needs time_field (or a WATERMARK in the query)");
  o = {};
  o.distinct_exact_limit = std::size_t{1} << 30;
  CHECK(WindowRunner::create(q, o).error().message() ==
        "distinct_exact_limit must be at most 16777216");
}

// Floating fields are read as std::from_chars reads them, digit for digit, by the fast path for
// plain decimals and by from_chars for the rest.
TEST_CASE("sql: floating fields read exactly as from_chars reads them", "[unit][sql]") {
  const std::vector<std::string> texts = {"0.1",
                                          "-12.75",
                                          "49.5",
                                          "0.3",
                                          "2.675",
                                          "123456789012345",
                                          "12345678901234.5",
                                          "1234567890123456",
                                          "9007199254740993",
                                          "0.000000000000001",
                                          "1e3",
                                          "-0.0",
                                          "5.",
                                          "-",
                                          "1.5x",
                                          "0.1e-2",
                                          "00012.50",
                                          "999999999999999.9",
                                          "99999999999999.99",
                                          "1.7976931348623157e308",
                                          "4.9e-324",
                                          "123.456e-7",
                                          "-7",
                                          ".5"};
  auto q = must_compile("SELECT k, MIN(x) AS v FROM src GROUP BY TUMBLE(INTERVAL '5' SECOND), k");
  auto r = must_run(q);
  Batch in, out;
  for (std::size_t k = 0; k < texts.size(); ++k) {
    add_event(in, kSec, {i("k", static_cast<long long>(k)), d("x", texts[k])});
  }
  for (std::size_t k = 0; k < in.size(); ++k) CHECK(r->on_event(in[k]) == EventOutcome::accepted);
  REQUIRE(r->flush(out) == texts.size());
  std::vector<std::string> want;
  for (std::size_t k = 0; k < texts.size(); ++k) {
    double v = 0;
    std::from_chars(texts[k].data(), texts[k].data() + texts[k].size(), v);
    char buf[32];
    const auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
    REQUIRE(ec == std::errc());
    want.push_back("k=" + std::to_string(k) + ",v=" + std::string(buf, p));
  }
  CHECK(rows_of(out) == want);
}

TEST_CASE("sql: body is the event's text unless the event or CREATE TABLE has that name",
          "[unit][sql]") {
  auto q = must_compile(
      "SELECT body, COUNT(*) AS n FROM src WHERE body LIKE 'GET %' "
      "GROUP BY TUMBLE(INTERVAL '5' SECOND), body");
  auto r = must_run(q);
  Batch in, out;
  in.add("GET /a", 1 * kSec, 0);
  in.add("POST /a", 1 * kSec, 0);
  in.add("GET /a", 2 * kSec, 0);
  add_event(in, 3 * kSec, {s("body", "GET /field")});  // a field of that name wins
  for (std::size_t k = 0; k < in.size(); ++k) r->on_event(in[k]);
  CHECK(r->flush(out) == 2);
  CHECK(rows_of(out) == std::vector<std::string>{"body=GET /a,n=2", "body=GET /field,n=1"});
  // Declared by CREATE TABLE, body is a field like any: missing, it is NULL.
  auto declared = must_compile(
      "CREATE TABLE src (body VARCHAR, k VARCHAR); SELECT k, COUNT(body) AS n FROM src "
      "GROUP BY TUMBLE(INTERVAL '5' SECOND), k");
  auto r2 = must_run(declared);
  Batch in2, out2;
  in2.add("the line", 1 * kSec, 0);
  in2.add_field("k", "a", FieldType::string);
  for (std::size_t k = 0; k < in2.size(); ++k) r2->on_event(in2[k]);
  CHECK(r2->flush(out2) == 1);
  CHECK(rows_of(out2) == std::vector<std::string>{"k=a,n=0"});
}

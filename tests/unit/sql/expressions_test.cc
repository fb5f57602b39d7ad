#include <catch2/catch.hpp>

#include "tests/unit/sql/sql_test_support.h"

using namespace sluice;
using namespace sluice::sql;
using namespace sluice::sql::test;

namespace {

/// The value of `expr` over one event, as its output field text and type ("BIGINT:3").
std::string value_of(std::string_view expr, const std::vector<F>& fields,
                     std::string_view table = "") {
  const std::string sql = std::string(table) + "SELECT " + std::string(expr) +
                          " AS v FROM src GROUP BY TUMBLE(INTERVAL '1' SECOND), " +
                          std::string(expr);
  auto q = compile(sql);
  if (!q) return "error: " + q.error().message();
  auto r = must_run(*q);
  Batch in, out;
  add_event(in, 0, fields);
  r->on_event(in[0]);
  r->flush(out);
  REQUIRE(out.size() == 1);
  const Field f = out[0].field(0);
  static const char* kNames[] = {"VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN", "NULL", "JSON"};
  return std::string(kNames[static_cast<int>(f.type)]) + ":" + std::string(f.text);
}

const std::vector<F> kEv = {s("name", "Alice"),
                            i("n", 7),
                            d("x", "2.5"),
                            s("path", "/api/v1/users"),
                            s("num_text", "42"),
                            {"flag", "true", FieldType::boolean},
                            {"nothing", "null", FieldType::null},
                            s("user.id", "u-9")};

}  // namespace

TEST_CASE("sql expressions: arithmetic and comparisons", "[unit][sql]") {
  CHECK(value_of("n + 1", kEv) == "BIGINT:8");
  CHECK(value_of("n * 2 - 3", kEv) == "BIGINT:11");
  CHECK(value_of("n / 2", kEv) == "BIGINT:3");
  CHECK(value_of("n % 4", kEv) == "BIGINT:3");
  CHECK(value_of("n / 0", kEv) == "NULL:null");
  CHECK(value_of("x * 2", kEv) == "DOUBLE:5");
  CHECK(value_of("n + x", kEv) == "DOUBLE:9.5");
  CHECK(value_of("-n", kEv) == "BIGINT:-7");
  CHECK(value_of("num_text + 1", kEv) == "BIGINT:43");  // untyped text that is a number
  CHECK(value_of("n > 5 AND x < 3", kEv) == "BOOLEAN:true");
  CHECK(value_of("n = 7.0", kEv) == "BOOLEAN:true");
  CHECK(value_of("n <> 7 OR NOT flag", kEv) == "BOOLEAN:false");
  CHECK(value_of("n BETWEEN 1 AND 7", kEv) == "BOOLEAN:true");
  CHECK(value_of("n NOT BETWEEN 1 AND 7", kEv) == "BOOLEAN:false");
  CHECK(value_of("missing > 1", kEv) == "NULL:null");
  CHECK(value_of("missing > 1 OR n = 7", kEv) == "BOOLEAN:true");
  CHECK(value_of("missing > 1 AND n = 8", kEv) == "BOOLEAN:false");
}

TEST_CASE("sql expressions: IN LIKE IS NULL CASE COALESCE", "[unit][sql]") {
  CHECK(value_of("name IN ('Bob', 'Alice')", kEv) == "BOOLEAN:true");
  CHECK(value_of("n NOT IN (1, 2, 3)", kEv) == "BOOLEAN:true");
  CHECK(value_of("n IN (1, missing)", kEv) == "NULL:null");
  CHECK(value_of("path LIKE '/api/%'", kEv) == "BOOLEAN:true");
  CHECK(value_of("path LIKE '/api/v_/%s'", kEv) == "BOOLEAN:true");
  CHECK(value_of("path NOT LIKE '%users'", kEv) == "BOOLEAN:false");
  CHECK(value_of("name LIKE 'A%e'", kEv) == "BOOLEAN:true");
  CHECK(value_of("name LIKE 'a%'", kEv) == "BOOLEAN:false");  // case-sensitive
  CHECK(value_of("nothing IS NULL", kEv) == "BOOLEAN:true");
  CHECK(value_of("missing IS NOT NULL", kEv) == "BOOLEAN:false");
  CHECK(value_of("CASE WHEN n > 10 THEN 'big' WHEN n > 5 THEN 'mid' ELSE 'small' END", kEv) ==
        "VARCHAR:mid");
  CHECK(value_of("CASE n WHEN 1 THEN 'one' WHEN 7 THEN 'seven' END", kEv) == "VARCHAR:seven");
  CHECK(value_of("CASE WHEN n > 10 THEN 'big' END", kEv) == "NULL:null");
  CHECK(value_of("CASE WHEN flag THEN 1 ELSE 2.5 END", kEv) == "DOUBLE:1");
  CHECK(value_of("COALESCE(missing, nothing, name)", kEv) == "VARCHAR:Alice");
  CHECK(value_of("COALESCE(missing, 0)", kEv) == "BIGINT:0");
}

TEST_CASE("sql expressions: strings and casts", "[unit][sql]") {
  CHECK(value_of("LOWER(name)", kEv) == "VARCHAR:alice");
  CHECK(value_of("UPPER(name)", kEv) == "VARCHAR:ALICE");
  CHECK(value_of("SUBSTR(path, 2, 3)", kEv) == "VARCHAR:api");
  CHECK(value_of("SUBSTR(path, 9)", kEv) == "VARCHAR:users");
  CHECK(value_of("SUBSTRING(path FROM 6 FOR 2)", kEv) == "VARCHAR:v1");
  CHECK(value_of("SUBSTR(name, 10)", kEv) == "VARCHAR:");
  CHECK(value_of("CONCAT(name, '-', n)", kEv) == "VARCHAR:Alice-7");
  CHECK(value_of("CONCAT(name, missing)", kEv) == "VARCHAR:Alice");
  CHECK(value_of("name || '/' || x", kEv) == "VARCHAR:Alice/2.5");
  CHECK(value_of("LENGTH(name)", kEv) == "BIGINT:5");
  CHECK(value_of("CAST(num_text AS BIGINT) * 2", kEv) == "BIGINT:84");
  CHECK(value_of("CAST(x AS BIGINT)", kEv) == "BIGINT:2");
  CHECK(value_of("CAST(n AS VARCHAR)", kEv) == "VARCHAR:7");
  CHECK(value_of("CAST(n AS DOUBLE) / 2", kEv) == "DOUBLE:3.5");
  CHECK(value_of("CAST(name AS BIGINT)", kEv) == "NULL:null");
  CHECK(value_of("CAST('true' AS BOOLEAN)", kEv) == "BOOLEAN:true");
  CHECK(value_of("CAST(1750797000000 AS TIMESTAMP)", kEv) == "VARCHAR:2025-06-24T20:30:00.000Z");
  CHECK(value_of("CAST('2025-06-24 20:30:09.903' AS TIMESTAMP)", kEv) ==
        "VARCHAR:2025-06-24T20:30:09.903Z");
  CHECK(value_of("CAST(-1 AS TIMESTAMP)", kEv) == "VARCHAR:1969-12-31T23:59:59.999Z");
  CHECK(value_of("CAST(0 AS TIMESTAMP)", kEv) == "VARCHAR:1970-01-01T00:00:00.000Z");
  CHECK(value_of("CAST(9000000000007 AS TIMESTAMP)", kEv) == "VARCHAR:2255-03-14T16:00:00.007Z");
}

TEST_CASE("sql expressions: nested field names", "[unit][sql]") {
  // A path is the field of that name (json `fields = ["user.id"]` keeps the dots).
  CHECK(value_of("user.id", kEv) == "VARCHAR:u-9");
  CHECK(value_of("\"user.id\"", kEv) == "VARCHAR:u-9");
  // Inside an object the json format kept as JSON text.
  const std::vector<F> nested = {
      {"req",
       R"({"path":"/x","meta":{"status":404,"ms":1.5,"ok":false,"tags":["a"]},"u":"\u00e9\"q"})",
       FieldType::json}};
  CHECK(value_of("req.path", nested) == "VARCHAR:/x");
  CHECK(value_of("req.meta.status + 1", nested) == "BIGINT:405");
  CHECK(value_of("req.meta.ms", nested) == "DOUBLE:1.5");
  CHECK(value_of("req.meta.ok", nested) == "BOOLEAN:false");
  CHECK(value_of("req.meta.tags", nested) == "VARCHAR:[\"a\"]");
  CHECK(value_of("req.u", nested) == "VARCHAR:\xc3\xa9\"q");
  CHECK(value_of("req.meta.nothing", nested) == "NULL:null");
  CHECK(value_of("req.path.deeper", nested) == "NULL:null");
}

TEST_CASE("sql expressions: declared types convert fields", "[unit][sql]") {
  const std::string_view t = "CREATE TABLE src (n VARCHAR, num_text BIGINT, x BIGINT); ";
  CHECK(value_of("n", kEv, t) == "VARCHAR:7");
  CHECK(value_of("num_text + 1", kEv, t) == "BIGINT:43");
  CHECK(value_of("x", kEv, t) == "BIGINT:2");
}

TEST_CASE("sql: window bounds, HAVING and row output", "[unit][sql]") {
  auto q = must_compile(
      "SELECT window_start, window_end, k, COUNT(*) AS n, MAX(x) AS top, "
      "COUNT(*) * 10 AS n10 FROM src GROUP BY TUMBLE(INTERVAL '10' SECOND), k HAVING n >= 2");
  auto r = must_run(q);
  Batch in, out;
  add_event(in, 1 * kSec, {s("k", "a"), d("x", "1.5")});
  add_event(in, 2 * kSec, {s("k", "a"), d("x", "3.25")});
  add_event(in, 3 * kSec, {s("k", "b"), d("x", "9")});
  r->on_batch(in);
  r->flush(out);
  REQUIRE(out.size() == 1);
  CHECK(row_text(out[0]) ==
        "window_start=1970-01-01T00:00:00.000Z,window_end=1970-01-01T00:00:10.000Z,k=a,n=2,top=3."
        "25,n10=20");
  CHECK(
      out[0].body() ==
      R"({"window_start":"1970-01-01T00:00:00.000Z","window_end":"1970-01-01T00:00:10.000Z","k":"a","n":2,"top":3.25,"n10":20})");
  CHECK(out[0].field(3).type == FieldType::integer);
  CHECK(out[0].field(4).type == FieldType::floating);
  CHECK(r->stats().rows_filtered_by_having == 1);
  CHECK(r->stats().rows_emitted == 1);
}

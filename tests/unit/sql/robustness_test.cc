#include <catch2/catch.hpp>
#include <random>

#include "tests/unit/sql/sql_test_support.h"

using namespace sluice;
using namespace sluice::sql;
using namespace sluice::sql::test;

TEST_CASE("sql: mangled queries fail with an error inside the text, never crash", "[unit][sql]") {
  const std::string seeds[] = {
      "CREATE TABLE t (a BIGINT, b VARCHAR, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '5' "
      "SECOND); INSERT INTO out SELECT b, COUNT(*) AS n, COUNT(DISTINCT a) AS d, "
      "APPROX_PERCENTILE(a, 0.9) AS p FROM t WHERE a > 1 AND b LIKE 'x%' GROUP BY "
      "TUMBLE(INTERVAL '5' SECOND), b HAVING n > 2",
      "SELECT CASE WHEN x IN (1, 2) THEN UPPER(y) ELSE CONCAT(y, '-', CAST(z AS VARCHAR)) END AS "
      "c, window_end, SUM(x) FROM s GROUP BY HOP(INTERVAL '1' SECOND, INTERVAL '4' SECOND), "
      "CASE WHEN x IN (1, 2) THEN UPPER(y) ELSE CONCAT(y, '-', CAST(z AS VARCHAR)) END",
  };
  std::mt19937 rng(3);
  const std::string alphabet = "(),.;'\"*+-/%<>=!| \nabcSELECTFROMGROUPBY0123456789";
  std::size_t failures = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string sql = seeds[round % 2];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = rng() % sql.size();
      switch (rng() % 3) {
        case 0:
          sql = sql.substr(0, at) + sql.substr(std::min(sql.size(), at + 1 + rng() % 8));
          break;
        case 1:
          sql = sql.substr(0, at) + alphabet[rng() % alphabet.size()] + sql.substr(at);
          break;
        default:
          sql[at] = alphabet[rng() % alphabet.size()];
          break;
      }
      if (sql.empty()) sql = "x";
    }
    CompileError err;
    auto q = compile(sql, {}, &err);
    if (!q) {
      ++failures;
      CHECK(err.offset <= sql.size());
      CHECK(!err.message.empty());
      continue;
    }
    // Whatever compiled also runs.
    auto r = WindowRunner::create(*q, {});
    if (!r) continue;
    Batch in, out;
    add_event(in, 1, {i("a", 3), s("b", "xy"), i("x", 1), s("y", "q"), d("z", "2.5")});
    (*r)->on_batch(in);
    (*r)->flush(out);
  }
  CHECK(failures > 10000);
}

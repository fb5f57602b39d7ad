#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "tests/unit/sql/sql_test_support.h"

using namespace sluice;
using namespace sluice::sql;
using namespace sluice::sql::test;

TEST_CASE("sql: COUNT(DISTINCT) is exact up to the limit then within HyperLogLog's error",
          "[unit][sql]") {
  auto q = must_compile(
      "SELECT k, COUNT(DISTINCT u) AS uv, COUNT(*) AS pv FROM src "
      "GROUP BY TUMBLE(INTERVAL '1' MINUTE), k");
  RunnerOptions o;
  o.distinct_exact_limit = 1000;
  auto r = must_run(q, o);
  Batch in, out;
  // k=exact: 1,000 distinct values (each twice); k=hll: 50,000 distinct values.
  for (int v = 0; v < 2000; ++v) add_event(in, 0, {s("k", "exact"), i("u", v % 1000)});
  for (int v = 0; v < 50000; ++v)
    add_event(in, 0, {s("k", "hll"), s("u", "user" + std::to_string(v))});
  r->on_batch(in);
  r->flush(out);
  REQUIRE(out.size() == 2);
  CHECK(row_text(out[0]) == "k=exact,uv=1000,pv=2000");
  const Field uv = out[1].field(1);
  const double est = std::stod(std::string(uv.text));
  // 3 standard errors of HyperLogLog at precision 14 (1.04 / sqrt(16384) = 0.81%).
  CHECK(std::fabs(est - 50000) <= 3 * 0.0081 * 50000);
  CHECK(row_text(out[1]).substr(0, 6) == "k=hll,");
}

TEST_CASE("sql: APPROX_PERCENTILE is within 1% of the exact rank's value", "[unit][sql]") {
  auto q = must_compile(
      "SELECT APPROX_PERCENTILE(ms, 0.5) AS p50, APPROX_PERCENTILE(ms, 0.99) AS p99, "
      "APPROX_PERCENTILE(ms, 0) AS lo, APPROX_PERCENTILE(ms, 1) AS hi FROM src "
      "GROUP BY TUMBLE(INTERVAL '1' MINUTE)");
  auto r = must_run(q);
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(3.0, 1.0);
  std::vector<double> xs;
  Batch in, out;
  for (int e = 0; e < 20000; ++e) {
    const double x = dist(rng);
    xs.push_back(x);
    add_event(in, 0, {d("ms", std::to_string(x))});
  }
  // The text a field holds is what was summarised: compare with the parsed values.
  for (double& x : xs) x = std::stod(std::to_string(x));
  std::sort(xs.begin(), xs.end());
  r->on_batch(in);
  r->flush(out);
  REQUIRE(out.size() == 1);
  auto at = [&](double quantile) {
    return xs[static_cast<std::size_t>(std::floor(quantile * static_cast<double>(xs.size() - 1)))];
  };
  const double want[] = {at(0.5), at(0.99), xs.front(), xs.back()};
  for (int c = 0; c < 4; ++c) {
    const double got = std::stod(std::string(out[0].field(static_cast<std::size_t>(c)).text));
    INFO("column " << c << " got " << got << " want " << want[c]);
    CHECK(std::fabs(got - want[c]) <= 0.01 * want[c]);
  }
}

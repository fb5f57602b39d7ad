// The aggregate states are mergeable and encodable (the base of tiered aggregation, issue 14):
// merging the states of any split of a stream equals the state of the whole stream, merge is
// commutative and associative, and encode -> decode is the identity.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <tuple>

#include "sql/aggregates.h"
#include "sql/sketch/encoding.h"
#include "tests/unit/sql/sql_test_support.h"

using namespace sluice;
using namespace sluice::sql;
using namespace sluice::sql::test;
namespace enc = sluice::sql::sketch::enc;

namespace {

struct State {
  std::vector<std::int64_t> cells;  // a Row
  SideStore side;
};

std::string results(const Aggregates& aggs, const State& s) {
  std::vector<Value> out(aggs.size());
  aggs.finalize(s.cells.data(), s.side, out.data());
  std::string text;
  for (const Value& v : out) {
    switch (v.type) {
      case SqlType::null:
        text += "null";
        break;
      case SqlType::integer:
        text += std::to_string(v.i);
        break;
      case SqlType::floating:
        text += std::to_string(v.d);
        break;
      case SqlType::string:
        text += std::string(v.s);
        break;
      default:
        text += "?";
        break;
    }
    text += ",";
  }
  return text;
}

}  // namespace

TEST_CASE("sql aggregate states: merge of any split equals the whole, encode round-trips",
          "[unit][sql]") {
  auto q = must_compile(
      "SELECT COUNT(*) AS a, COUNT(x) AS b, COUNT(DISTINCT x) AS c, SUM(x) AS d, AVG(x) AS e, "
      "MIN(x) AS f, MAX(x) AS g, FIRST_VALUE(x) AS h, LAST_VALUE(x) AS i, "
      "APPROX_PERCENTILE(x, 0.9) AS j, MIN(name) AS k, MAX(name) AS l FROM src "
      "GROUP BY TUMBLE(INTERVAL '1' SECOND)");
  const QueryPlan& plan = q.plan();
  Aggregates aggs(plan, 50);  // small exact limit: the splits cross into HyperLogLog
  std::mt19937_64 rng(11);
  for (int round = 0; round < 200; ++round) {
    const int n = 1 + static_cast<int>(rng() % 300);
    std::vector<std::vector<Value>> rows;
    std::vector<std::int64_t> times;
    std::vector<std::string> names;
    names.reserve(static_cast<std::size_t>(n));
    for (int e = 0; e < n; ++e) names.push_back("n" + std::to_string(rng() % 40));
    for (int e = 0; e < n; ++e) {
      std::vector<Value> args(aggs.size());
      const Value x =
          rng() % 10 == 0 ? Value::null() : Value::integer(static_cast<long>(rng() % 200) - 50);
      for (std::size_t a = 0; a < aggs.size(); ++a) args[a] = x;
      args[10] = args[11] = Value::string(names[static_cast<std::size_t>(e)]);
      rows.push_back(args);
      times.push_back(static_cast<std::int64_t>(e));  // distinct times: FIRST/LAST unambiguous
    }
    auto fresh = [&] {
      State s;
      s.cells.resize(aggs.row_words());
      aggs.init(s.cells.data(), s.side);
      return s;
    };
    State whole = fresh();
    for (int e = 0; e < n; ++e)
      aggs.update(whole.cells.data(), whole.side, rows[e].data(), times[e]);
    // Split into three contiguous parts, merge in two orders.
    const int c1 = static_cast<int>(rng() % (n + 1));
    const int c2 = c1 + static_cast<int>(rng() % (n - c1 + 1));
    State parts[3] = {fresh(), fresh(), fresh()};
    for (int e = 0; e < n; ++e) {
      State& p = parts[e < c1 ? 0 : e < c2 ? 1 : 2];
      aggs.update(p.cells.data(), p.side, rows[e].data(), times[e]);
    }
    State left = fresh();  // (p0 + p1) + p2
    aggs.merge(left.cells.data(), left.side, parts[0].cells.data(), parts[0].side);
    aggs.merge(left.cells.data(), left.side, parts[1].cells.data(), parts[1].side);
    aggs.merge(left.cells.data(), left.side, parts[2].cells.data(), parts[2].side);
    State right = fresh();  // p2 + (p1 + p0): commuted and re-associated
    State inner = fresh();
    aggs.merge(inner.cells.data(), inner.side, parts[1].cells.data(), parts[1].side);
    aggs.merge(inner.cells.data(), inner.side, parts[0].cells.data(), parts[0].side);
    aggs.merge(right.cells.data(), right.side, parts[2].cells.data(), parts[2].side);
    aggs.merge(right.cells.data(), right.side, inner.cells.data(), inner.side);
    const std::string want = results(aggs, whole);
    CHECK(results(aggs, left) == want);
    CHECK(results(aggs, right) == want);
    // Encoding: decode(encode(s)) gives the same results and the same bytes.
    std::string bytes;
    aggs.encode(left.cells.data(), left.side, bytes);
    State back = fresh();
    std::string_view in = bytes;
    REQUIRE(aggs.decode(in, back.cells.data(), back.side));
    CHECK(in.empty());
    CHECK(results(aggs, back) == want);
    std::string again;
    aggs.encode(back.cells.data(), back.side, again);
    CHECK(again == bytes);
  }
}

TEST_CASE("sql aggregate states: a few values kept in the cell answer and encode as a sketch does",
          "[unit][sql]") {
  // COUNT(DISTINCT) and APPROX_PERCENTILE keep a group's first two values in the cell (no side
  // counter, no sketch); from the third they move to a side entry. Either way the results, the
  // encoding and merges equal those of a counter and a sketch fed the same values.
  auto q = must_compile(
      "SELECT COUNT(DISTINCT x) AS c, APPROX_PERCENTILE(x, 0.9) AS p, APPROX_PERCENTILE(x, 0.1) "
      "AS p10 FROM src GROUP BY TUMBLE(INTERVAL '1' SECOND)");
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<std::vector<double>> inputs = {
      {},        {7.5},        {-3},         {0},   {7.5, 7.5},        {1, 2},   {-1, 1e300},
      {2, 1, 3}, {5, 5, 5, 6}, {1e-310, -0}, {inf}, {4, std::nan("")}, {-2, -4}, {0.5, 0.25, 8}};
  for (const std::size_t limit :
       {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{50}}) {
    Aggregates aggs(q.plan(), limit);
    auto feed = [&](const std::vector<double>& xs, State& st) {
      st.cells.resize(aggs.row_words());
      aggs.init(st.cells.data(), st.side);
      for (double x : xs) {
        std::vector<Value> args(aggs.size(), Value::floating(x));
        aggs.update(st.cells.data(), st.side, args.data(), 0);
      }
    };
    auto direct = [&](const std::vector<double>& xs) {
      sketch::DistinctCounter dc(limit);
      sketch::QuantileSketch qs;
      for (double x : xs) {
        dc.add(distinct_hash(Value::floating(x)));
        qs.add(x);
      }
      std::string bytes;
      dc.encode(bytes);
      qs.encode(bytes);
      qs.encode(bytes);
      std::string text = std::to_string(dc.estimate()) + ",";
      for (double p : {0.9, 0.1}) {
        text += qs.count() == 0 ? "null" : std::to_string(qs.quantile(p));
        text += ",";
      }
      return std::make_pair(bytes, text);
    };
    for (const auto& xs : inputs) {
      INFO("limit " << limit << ", " << xs.size() << " values");
      State st;
      feed(xs, st);
      const auto [want_bytes, want_text] = direct(xs);
      std::string bytes;
      aggs.encode(st.cells.data(), st.side, bytes);
      CHECK(bytes == want_bytes);
      CHECK(results(aggs, st) == want_text);
      // The memory claim: two finite values (one distinct at most `limit`) take no side entry.
      std::size_t finite = 0;
      for (double x : xs) finite += std::isfinite(x) ? 1 : 0;
      if (xs.size() <= 2 && finite == xs.size()) CHECK(st.side.quantiles.empty());
      if (xs.size() <= std::min<std::size_t>(limit, 2)) CHECK(st.side.distincts.empty());
      // Merges of every pair of inputs, in both directions, equal the concatenation.
      for (const auto& ys : inputs) {
        State a, b;
        feed(xs, a);
        feed(ys, b);
        aggs.merge(a.cells.data(), a.side, b.cells.data(), b.side);
        std::vector<double> both = xs;
        both.insert(both.end(), ys.begin(), ys.end());
        const auto [merged_bytes, merged_text] = direct(both);
        std::string got;
        aggs.encode(a.cells.data(), a.side, got);
        CHECK(got == merged_bytes);
        CHECK(results(aggs, a) == merged_text);
      }
      // decode -> encode is the identity.
      State back;
      back.cells.resize(aggs.row_words());
      aggs.init(back.cells.data(), back.side);
      std::string_view in = bytes;
      REQUIRE(aggs.decode(in, back.cells.data(), back.side));
      CHECK(in.empty());
      std::string again;
      aggs.encode(back.cells.data(), back.side, again);
      CHECK(again == bytes);
    }
  }
}

TEST_CASE("sql aggregate states: values of every type survive the 24-byte cells", "[unit][sql]") {
  // The value kinds keep a double's bits in i and their type in the meta word: doubles, strings,
  // integers and booleans come back exact from update, merge and decode.
  auto q = must_compile(
      "SELECT MIN(x) AS a, MAX(x) AS b, FIRST_VALUE(x) AS c, LAST_VALUE(x) AS d, SUM(x) AS e, "
      "AVG(x) AS f, COUNT(x) AS g FROM src GROUP BY TUMBLE(INTERVAL '1' SECOND)");
  Aggregates aggs(q.plan(), 8);
  auto fresh = [&] {
    State st;
    st.cells.resize(aggs.row_words());
    aggs.init(st.cells.data(), st.side);
    return st;
  };
  auto feed = [&](State& st, const Value& v, std::int64_t t) {
    std::vector<Value> args(aggs.size(), v);
    aggs.update(st.cells.data(), st.side, args.data(), t);
  };
  State a = fresh(), b = fresh();
  feed(a, Value::floating(-2.75), 10);
  feed(a, Value::floating(1e300), 11);
  feed(b, Value::integer(-5), 5);
  feed(b, Value::floating(0.125), 20);
  CHECK(results(aggs, a) == "-2.750000," + std::to_string(1e300) + ",-2.750000," +
                                std::to_string(1e300) + "," + std::to_string(1e300 - 2.75) + "," +
                                std::to_string((1e300 - 2.75) / 2) + ",2,");
  aggs.merge(a.cells.data(), a.side, b.cells.data(), b.side);
  const std::string merged = results(aggs, a);
  CHECK(merged == "-5," + std::to_string(1e300) + ",-5,0.125000," +
                      std::to_string(1e300 - 2.75 - 5 + 0.125) + "," +
                      std::to_string((1e300 - 2.75 - 5 + 0.125) / 4) + ",4,");
  std::string bytes;
  aggs.encode(a.cells.data(), a.side, bytes);
  State back = fresh();
  std::string_view in = bytes;
  REQUIRE(aggs.decode(in, back.cells.data(), back.side));
  CHECK(results(aggs, back) == merged);
  // Strings and booleans in the value kinds.
  auto qs = must_compile(
      "SELECT MIN(s) AS a, MAX(s) AS b, FIRST_VALUE(s) AS c, LAST_VALUE(ok) AS d FROM src GROUP "
      "BY TUMBLE(INTERVAL '1' SECOND)");
  Aggregates sa(qs.plan(), 8);
  State st;
  st.cells.resize(sa.row_words());
  sa.init(st.cells.data(), st.side);
  const std::string long_text(40, 'z');  // beyond the short-string buffer
  for (const auto& [text, ok, t] : std::vector<std::tuple<std::string, bool, int>>{
           {"m", true, 3}, {long_text, false, 1}, {"b", true, 7}}) {
    std::vector<Value> args = {Value::string(text), Value::string(text), Value::string(text),
                               Value::boolean(ok)};
    sa.update(st.cells.data(), st.side, args.data(), t);
  }
  std::vector<Value> out(sa.size());
  sa.finalize(st.cells.data(), st.side, out.data());
  CHECK(out[0].s == "b");
  CHECK(out[1].s == long_text);
  CHECK(out[2].s == long_text);  // the earliest event time
  CHECK(out[3].type == SqlType::boolean);
  CHECK(out[3].b);
}

TEST_CASE("sql aggregate states: a SUM count past 2^56 is a damaged state", "[unit][sql]") {
  // SUM and AVG keep their count in 56 bits (the flags take the rest of the word).
  auto q = must_compile("SELECT SUM(x) AS s FROM src GROUP BY TUMBLE(INTERVAL '1' SECOND)");
  Aggregates aggs(q.plan(), 8);
  for (const std::uint64_t count : {(std::uint64_t{1} << 56) - 1, std::uint64_t{1} << 56}) {
    std::string bytes;
    enc::put_varint(bytes, enc::zigzag(7));
    enc::put_f64(bytes, 0.5);
    enc::put_varint(bytes, count);
    enc::put_u8(bytes, 1);
    State st;
    st.cells.resize(aggs.row_words());
    aggs.init(st.cells.data(), st.side);
    std::string_view in = bytes;
    CHECK(aggs.decode(in, st.cells.data(), st.side) == (count < (std::uint64_t{1} << 56)));
  }
}

TEST_CASE("sql aggregate states: a SUM past int64 goes on as a double from the exact sum",
          "[unit][sql]") {
  auto q =
      must_compile("SELECT SUM(x) AS s, AVG(x) AS a FROM src GROUP BY TUMBLE(INTERVAL '1' SECOND)");
  Aggregates aggs(q.plan(), 8);
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  auto sum_of = [&](std::initializer_list<std::int64_t> xs) {
    State st;
    st.cells.resize(aggs.row_words());
    aggs.init(st.cells.data(), st.side);
    for (const std::int64_t x : xs) {
      const Value args[] = {Value::integer(x), Value::integer(x)};
      aggs.update(st.cells.data(), st.side, args, 0);
    }
    std::vector<Value> out(aggs.size());
    aggs.finalize(st.cells.data(), st.side, out.data());
    return out;
  };
  // The overflowing addition wrote the wrapped sum over the one it was to add to.
  const auto a = sum_of({kMax - 1, 10});
  REQUIRE(a[0].type == SqlType::floating);
  CHECK(a[0].d == Approx(9223372036854775806.0 + 10.0));
  CHECK(a[1].d == Approx((9223372036854775806.0 + 10.0) / 2));
  const auto b = sum_of({kMax, kMax});
  REQUIRE(b[0].type == SqlType::floating);
  CHECK(b[0].d == Approx(2.0 * 9223372036854775807.0));
  const auto c = sum_of({-kMax, -kMax, -5});
  REQUIRE(c[0].type == SqlType::floating);
  CHECK(c[0].d == Approx(-2.0 * 9223372036854775807.0 - 5));
}

TEST_CASE("sql aggregate states: MIN and MAX pass over NaN wherever it comes", "[unit][sql]") {
  auto q = must_compile(
      "SELECT MIN(x) AS lo, MAX(x) AS hi FROM src GROUP BY TUMBLE(INTERVAL '1' SECOND)");
  Aggregates aggs(q.plan(), 8);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const auto& xs : {std::vector<double>{nan, 1, 3}, std::vector<double>{1, nan, 3},
                         std::vector<double>{1, 3, nan}}) {
    State st;
    st.cells.resize(aggs.row_words());
    aggs.init(st.cells.data(), st.side);
    for (const double x : xs) {
      const Value args[] = {Value::floating(x), Value::floating(x)};
      aggs.update(st.cells.data(), st.side, args, 0);
    }
    std::vector<Value> out(aggs.size());
    aggs.finalize(st.cells.data(), st.side, out.data());
    REQUIRE(out[0].type == SqlType::floating);
    REQUIRE(out[1].type == SqlType::floating);
    CHECK(out[0].d == 1.0);
    CHECK(out[1].d == 3.0);
  }
}

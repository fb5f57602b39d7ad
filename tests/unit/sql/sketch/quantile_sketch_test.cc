#include "sql/sketch/quantile_sketch.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "tests/support/allocation_check.h"

using namespace sluice;
using namespace sluice::sql::sketch;

namespace {

// Uniform in (0, 1], from the engine's bits alone, so every platform draws the same values.
double uniform01(std::mt19937_64& rng) {
  return (static_cast<double>(rng() >> 11) + 1.0) * 0x1.0p-53;
}

double normal(std::mt19937_64& rng) {
  return std::sqrt(-2.0 * std::log(uniform01(rng))) *
         std::cos(2 * std::numbers::pi * uniform01(rng));
}

struct Distribution {
  const char* name;
  std::function<double(std::mt19937_64&)> draw;
};

const std::vector<Distribution>& distributions() {
  static const std::vector<Distribution> all = {
      {"uniform", [](std::mt19937_64& r) { return 1000.0 * uniform01(r); }},
      {"exponential", [](std::mt19937_64& r) { return -50.0 * std::log(uniform01(r)); }},
      {"pareto 1.1", [](std::mt19937_64& r) { return 1.0 / std::pow(uniform01(r), 1 / 1.1); }},
      {"lognormal 0 3", [](std::mt19937_64& r) { return std::exp(3.0 * normal(r)); }},
      {"normal 0 100", [](std::mt19937_64& r) { return 100.0 * normal(r); }},
      {"with zeros",
       [](std::mt19937_64& r) { return r() % 4 == 0 ? 0.0 : -std::log(uniform01(r)); }},
  };
  return all;
}

std::string encoded(const QuantileSketch& s) {
  std::string out;
  s.encode(out);
  return out;
}

std::string unhex(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i + 1 < text.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

std::string decode_error(const std::string& bytes) {
  std::string_view in = bytes;
  Result<QuantileSketch> r = QuantileSketch::decode(in);
  return r ? "ok" : r.error().str();
}

}  // namespace

// The bound is against the value of rank floor(q (n - 1)) of the sorted input.
TEST_CASE("quantile sketch: answers are within the relative accuracy", "[unit][sketch]") {
  for (const Distribution& d : distributions()) {
    for (std::uint64_t seed : {1, 2, 3}) {
      std::mt19937_64 rng(seed);
      std::vector<double> values(200'000);
      for (double& v : values) v = d.draw(rng);
      QuantileSketch s;
      for (double v : values) s.add(v);
      std::sort(values.begin(), values.end());
      REQUIRE(s.count() == values.size());
      CHECK(s.quantile(0) == values.front());
      CHECK(s.quantile(1) == values.back());
      for (double q : {0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0}) {
        const double truth = values[static_cast<std::size_t>(q * (values.size() - 1))];
        const double answer = s.quantile(q);
        INFO(d.name << " seed " << seed << " q " << q << " truth " << truth << " answer "
                    << answer);
        CHECK(std::abs(answer - truth) <= 0.01 * std::abs(truth) * (1 + 1e-9));
      }
    }
  }
}

TEST_CASE("quantile sketch: small inputs and edge values", "[unit][sketch]") {
  // The widest bucket range, so that 42 and 1e300 both keep their own buckets.
  QuantileSketch s(0.01, QuantileSketch::kMaxMaxBuckets);
  CHECK(std::isnan(s.quantile(0.5)));
  CHECK(s.count() == 0);
  s.add(42.0);
  CHECK(s.quantile(0) == 42.0);
  CHECK(s.quantile(0.5) == 42.0);  // clamped into [min, max]
  CHECK(s.quantile(1) == 42.0);
  s.add(std::nan(""));
  s.add(INFINITY);
  s.add(-INFINITY);
  CHECK(s.count() == 1);
  CHECK(s.non_finite() == 3);
  s.add(-1e-320);  // subnormal: counts as zero
  s.add(1e300);
  s.add(-1e300);
  CHECK(s.count() == 4);
  CHECK(s.zero_count() == 1);
  CHECK(s.quantile(0) == -1e300);
  CHECK(s.quantile(1) == 1e300);
  CHECK(s.quantile(0.34) == 0.0);
  CHECK(std::abs(s.quantile(0.67) - 42.0) <= 0.42);
  CHECK(std::abs(s.quantile(0.01) + 1e300) <= 1e298);
  CHECK(s.quantile(-3) == -1e300);
  CHECK(s.quantile(7) == 1e300);
  s.clear();
  CHECK(s.count() == 0);
  CHECK(s == QuantileSketch(0.01, QuantileSketch::kMaxMaxBuckets));
}

TEST_CASE("quantile sketch: values far below the largest are collapsed upwards", "[unit][sketch]") {
  // 2048 buckets of 1% span a factor of about 6e17: 42 is collapsed into the lowest bucket
  // kept below 1e300, counted but no longer within the bound.
  QuantileSketch s;
  s.add(42.0);
  s.add(1e300);
  CHECK(s.positive().span() == 2048);
  CHECK(s.positive().at(s.positive().lowest()) == 1);
  CHECK(s.quantile(0) == 42.0);  // the exact minimum is kept
  const double low = s.quantile(0.4);
  CHECK(low > 1e282);
  CHECK(low < 1e283);
  CHECK(s.quantile(1) == 1e300);
}

TEST_CASE("quantile sketch: memory stays bounded by collapsing the lowest buckets",
          "[unit][sketch]") {
  QuantileSketch s(0.01, 256);
  std::mt19937_64 rng(4);
  for (int i = 0; i < 200'000; ++i) {
    const double v = std::exp(1400 * (uniform01(rng) - 0.5));  // from 1e-304 to 1e304
    s.add(rng() % 2 == 0 ? v : -v);
  }
  CHECK(s.positive().span() == 256);
  CHECK(s.negative().span() == 256);
  CHECK(s.memory_bytes() <= sizeof(QuantileSketch) + 2 * 256 * 8);
  // The top quantiles, within a factor gamma^255 of the largest value, keep the bound.
  const double top = s.quantile(0.9999);
  CHECK(top > 0);
}

TEST_CASE("quantile sketch: merging the partials of any split equals sketching the whole stream",
          "[unit][sketch]") {
  std::mt19937_64 rng(20261201);
  for (int trial = 0; trial < 60; ++trial) {
    const Distribution& d = distributions()[trial % distributions().size()];
    const std::size_t max_buckets = trial % 2 == 0 ? 2048 : 32;  // 32 forces collapsing
    const std::size_t n = 1 + rng() % 20'000;
    std::vector<double> values(n);
    for (double& v : values) v = d.draw(rng);
    QuantileSketch whole(0.01, max_buckets);
    for (double v : values) whole.add(v);
    const std::size_t parts = 2 + rng() % 7;
    std::vector<QuantileSketch> partial(parts, QuantileSketch(0.01, max_buckets));
    for (double v : values) partial[rng() % parts].add(v);
    QuantileSketch merged(0.01, max_buckets);
    for (const QuantileSketch& p : partial) merged.merge(p);
    INFO("trial " << trial << " " << d.name << " n " << n << " parts " << parts);
    CHECK(merged == whole);
    QuantileSketch ab = partial[0], ba = partial[1];
    ab.merge(partial[1]);
    ba.merge(partial[0]);
    CHECK(ab == ba);
    if (parts >= 3) {
      QuantileSketch left = ab, right = partial[1];
      left.merge(partial[2]);
      right.merge(partial[2]);
      QuantileSketch a_then = partial[0];
      a_then.merge(right);
      CHECK(left == a_then);
    }
    QuantileSketch twice = whole;
    twice.merge(twice);
    CHECK(twice.count() == 2 * whole.count());
  }
}

TEST_CASE("quantile sketch: merge takes the smaller bucket limit", "[unit][sketch]") {
  std::mt19937_64 rng(8);
  QuantileSketch wide(0.01, 2048), narrow(0.01, 64), both_narrow(0.01, 64);
  for (int i = 0; i < 10'000; ++i) {
    const double v = std::exp(10 * normal(rng));
    (i % 2 == 0 ? wide : narrow).add(v);
    both_narrow.add(v);
  }
  QuantileSketch a = wide, b = narrow;
  a.merge(narrow);
  b.merge(wide);
  CHECK(a == b);
  CHECK(a == both_narrow);
  CHECK(a.max_buckets() == 64);
}

TEST_CASE("quantile sketch: a merge across accuracies adds both errors", "[unit][sketch]") {
  std::mt19937_64 rng(9);
  QuantileSketch fine(0.01), coarse(0.05);
  std::vector<double> values;
  for (int i = 0; i < 50'000; ++i) {
    const double v = -100.0 * std::log(uniform01(rng));
    values.push_back(v);
    (i % 2 == 0 ? fine : coarse).add(v);
  }
  fine.merge(coarse);
  CHECK(fine.count() == values.size());
  std::sort(values.begin(), values.end());
  for (double q : {0.01, 0.5, 0.9, 0.99, 0.999}) {
    const double truth = values[static_cast<std::size_t>(q * (values.size() - 1))];
    INFO("q " << q);
    CHECK(std::abs(fine.quantile(q) - truth) <= 0.06 * truth * 1.05);
  }
}

TEST_CASE("quantile sketch: a merge across accuracies keeps the extreme doubles",
          "[unit][sketch]") {
  QuantileSketch fine(0.01, QuantileSketch::kMaxMaxBuckets), coarse(0.05, 64);
  coarse.add(std::numeric_limits<double>::max());
  coarse.add(std::numeric_limits<double>::min());
  coarse.add(-std::numeric_limits<double>::max());
  fine.merge(coarse);
  CHECK(fine.count() == 3);
  CHECK(fine.quantile(0) == -std::numeric_limits<double>::max());
  CHECK(fine.quantile(1) == std::numeric_limits<double>::max());
  CHECK(std::isfinite(fine.quantile(0.5)));
}

TEST_CASE("quantile sketch: encode and decode round trip", "[unit][sketch]") {
  for (std::size_t k = 0; k < distributions().size(); ++k) {
    std::mt19937_64 rng(k);
    for (std::size_t max_buckets : {32, 2048}) {
      QuantileSketch s(0.02, max_buckets);
      for (int i = 0; i < 5000; ++i) s.add(distributions()[k].draw(rng));
      s.add(NAN);
      const std::string bytes = encoded(s) + "tail";
      std::string_view in = bytes;
      Result<QuantileSketch> back = QuantileSketch::decode(in);
      INFO(distributions()[k].name << " buckets " << max_buckets);
      REQUIRE(back);
      CHECK(in == "tail");
      CHECK(*back == s);
      CHECK(encoded(*back) + "tail" == bytes);
      CHECK(back->quantile(0.5) == s.quantile(0.5));
    }
  }
  std::string empty = encoded(QuantileSketch());
  std::string_view in = empty;
  Result<QuantileSketch> back = QuantileSketch::decode(in);
  REQUIRE(back);
  CHECK(*back == QuantileSketch());
  CHECK(empty.size() == 15);
}

// Bytes written by encoding version 1 (computed independently from the documented layout).
// Decoding them must keep working in every later version.
TEST_CASE("quantile sketch: decodes states written by encoding version 1", "[unit][sketch]") {
  QuantileSketch s;
  for (double v : {1.0, 2.0, 3.0, -1.0, 0.0, 2.5, 1.5, std::nan(""), -1.01, 3.0}) s.add(v);
  // Version, α = 0.01, 2048 buckets, 1 non-finite, 1 zero; the positive store: 56 buckets from
  // index 0 (1.0) to 55 (3.0, twice); the negative store: 2 buckets from index 0; min, max.
  const std::string v1 = unhex(
      "01"
      "7b14ae47e17a843f"
      "8010"
      "01"
      "01"
      "38"
      "00"
      "01000000000000000000000000000000000000000001000000000000000000000000000100000000000000"
      "00000001000000000000000002"
      "02"
      "00"
      "0101"
      "295c8fc2f528f0bf"
      "0000000000000840");
  CHECK(encoded(s) == v1);
  std::string_view in = v1;
  Result<QuantileSketch> back = QuantileSketch::decode(in);
  REQUIRE(back);
  CHECK(in.empty());
  CHECK(*back == s);
  CHECK(back->count() == 9);
  CHECK(back->non_finite() == 1);
  CHECK(back->quantile(0) == -1.01);
  CHECK(back->quantile(1) == 3.0);
}

TEST_CASE("quantile sketch: decode rejects garbage with the reason", "[unit][sketch]") {
  const std::string head = unhex("017b14ae47e17a843f8010");  // version, alpha 0.01, 2048 buckets
  CHECK(decode_error("") == "invalid_data: quantile sketch state: empty input");
  CHECK(decode_error("\x07") ==
        "invalid_data: quantile sketch state: unknown encoding version 7 (this build reads 1)");
  CHECK(decode_error(unhex("01000000000000f03f8010")) ==
        "invalid_data: quantile sketch state: relative accuracy is not in [0.0001, 0.5]");
  CHECK(decode_error(unhex("01000000000000f87f8010")) ==
        "invalid_data: quantile sketch state: relative accuracy is not in [0.0001, 0.5]");
  CHECK(decode_error(unhex("017b14ae47e17a843f0f")) ==
        "invalid_data: quantile sketch state: bucket limit 15 is not in [16, 65536]");
  CHECK(decode_error(head + unhex("0000"
                                  "8110")) ==
        "invalid_data: quantile sketch state: more buckets than the bucket limit");
  CHECK(decode_error(head + unhex("0000"
                                  "01"
                                  "feffffff0f"
                                  "01")) ==
        "invalid_data: quantile sketch state: bucket index out of range");
  CHECK(decode_error(head + unhex("0000"
                                  "02"
                                  "00"
                                  "0100"
                                  "00")) ==
        "invalid_data: quantile sketch state: a store's first or last bucket is empty");
  CHECK(decode_error(head + unhex("0000"
                                  "01"
                                  "00"
                                  "01"
                                  "00"
                                  "000000000000f03f"
                                  "0000000000000000")) ==
        "invalid_data: quantile sketch state: minimum and maximum are not finite and ordered");
  CHECK(decode_error(head + unhex("00"
                                  "ffffffffffffffffff01"
                                  "01"
                                  "00"
                                  "01"
                                  "00")) == "invalid_data: quantile sketch state: counts overflow");
  CHECK(decode_error(head + unhex("0000"
                                  "01"
                                  "00"
                                  "01"
                                  "00"
                                  "000000000000f03f")) ==
        "invalid_data: quantile sketch state: truncated minimum and maximum");
  CHECK(decode_error(head + unhex("0000"
                                  "04"
                                  "00"
                                  "0101")) ==
        "invalid_data: quantile sketch state: truncated buckets");
  CHECK(decode_error(head + unhex("00"
                                  "8000")) ==
        "invalid_data: quantile sketch state: truncated or malformed counts");
}

TEST_CASE("quantile sketch: every truncation of a valid state is an error", "[unit][sketch]") {
  std::mt19937_64 rng(12);
  QuantileSketch s;
  for (int i = 0; i < 1000; ++i) s.add(100 * normal(rng));
  const std::string bytes = encoded(s);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    std::string_view in(bytes.data(), n);
    INFO("prefix " << n);
    CHECK_FALSE(QuantileSketch::decode(in));
  }
}

TEST_CASE("quantile sketch: random bytes never crash decode", "[unit][sketch]") {
  std::mt19937_64 rng(13);
  QuantileSketch s;
  for (int i = 0; i < 50; ++i) s.add(100 * normal(rng));
  const std::string valid = encoded(s);
  int decoded = 0;
  for (int trial = 0; trial < 20'000; ++trial) {
    std::string bytes = valid;
    for (int k = 0; k < 1 + trial % 4; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    std::string_view in = bytes;
    Result<QuantileSketch> r = QuantileSketch::decode(in);
    if (r) {
      ++decoded;
      for (double q : {0.0, 0.5, 0.99, 1.0}) (void)r->quantile(q);
      QuantileSketch m = *r;
      m.merge(s);
      CHECK(m.count() == r->count() + s.count());
    }
  }
  CHECK(decoded > 0);
}

TEST_CASE("quantile sketch: add does not allocate once warm", "[unit][sketch]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  QuantileSketch s;
  std::mt19937_64 rng(14);
  auto draw = [&] { return (rng() % 2 ? 1 : -1) * std::exp(13 * uniform01(rng) - 6); };
  for (int i = 0; i < 100'000; ++i) s.add(draw());  // warm: every bucket of the range seen
  std::vector<double> values(100'000);
  for (double& v : values) v = draw();
  sluice::test::AllocationCounter allocs;
  for (double v : values) s.add(v);
  CHECK(allocs.count() == 0);
  CHECK(s.count() == 2 * values.size());
}

TEST_CASE("quantile sketch: a few values cost a few words", "[unit][sketch]") {
  QuantileSketch s;
  s.add(0.001);
  s.add(1e6);
  s.add(-5);
  // Sparse: (index, count) pairs, not the 1400 buckets between 0.001 and 1e6.
  CHECK(s.positive().sparse);
  CHECK(s.positive().span() > 1000);
  CHECK(s.memory_bytes() <= sizeof(QuantileSketch) + 2 * 4 * 8);
  CHECK(std::abs(s.quantile(0.5) - 0.001) <= 0.00001);
  CHECK(std::abs(s.quantile(1) - 1e6) == 0);
  // Filling the range turns the store dense, with the same buckets.
  QuantileSketch filled = s;
  for (int i = 0; i < 2000; ++i) filled.add(0.001 * std::pow(1.01, i));
  CHECK_FALSE(filled.positive().sparse);
  QuantileSketch merged;
  QuantileSketch rest;
  for (int i = 0; i < 2000; ++i) rest.add(0.001 * std::pow(1.01, i));
  merged.merge(rest);
  merged.merge(s);
  CHECK(merged == filled);
}

TEST_CASE("quantile sketch: a group's first two buckets need no heap block", "[unit][sketch]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  CHECK(sizeof(QuantileSketch) <= 128);
  std::vector<QuantileSketch> many;
  many.reserve(1000);
  sluice::test::AllocationCounter allocs;
  for (int g = 0; g < 1000; ++g) {
    QuantileSketch& s = many.emplace_back();
    s.add(0.5 + g);
    s.add(2.5 * (g + 1));  // another bucket
    s.add(0.0);            // zero is a counter, not a bucket
    s.add(0.5 + g);        // the same bucket again
  }
  CHECK(allocs.count() == 0);
  for (const QuantileSketch& s : many) CHECK(s.memory_bytes() == sizeof(QuantileSketch));
  // Copies and moves keep the inline buckets (and the same answers); a third bucket spills.
  QuantileSketch copy = many[7];
  QuantileSketch moved = std::move(many[8]);
  CHECK(copy == many[7]);
  CHECK(copy.quantile(0) == 0.0);
  CHECK(copy.quantile(1) == 20.0);
  CHECK(moved.count() == 4);
  CHECK(moved.quantile(1) == 22.5);
  CHECK(std::abs(moved.quantile(0.5) - 8.5) <= 0.085);
  copy.add(1e6);
  CHECK(copy.memory_bytes() > sizeof(QuantileSketch));
  CHECK(copy.positive().span() > 500);
  std::string a, b;
  many[7].encode(a);
  QuantileSketch reference;
  for (double v : {7.5, 20.0, 0.0, 7.5}) reference.add(v);
  reference.encode(b);
  CHECK(a == b);
}

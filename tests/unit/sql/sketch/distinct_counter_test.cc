#include "sql/sketch/distinct_counter.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "sql/sketch/hash.h"
#include "tests/support/allocation_check.h"

using namespace sluice;
using namespace sluice::sql::sketch;

namespace {

// A stream of `n` values with `distinct` distinct ones (hashed ints), in a random order.
std::vector<std::uint64_t> stream(std::mt19937_64& rng, std::size_t n, std::size_t distinct) {
  const std::uint64_t base = rng();
  std::vector<std::uint64_t> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t v = i < distinct ? i : rng() % distinct;
    out.push_back(hash_int(static_cast<std::int64_t>(base + v)));
  }
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

DistinctCounter count_all(const std::vector<std::uint64_t>& values, std::size_t limit,
                          int precision = DistinctCounter::kDefaultPrecision) {
  DistinctCounter c(limit, precision);
  for (std::uint64_t h : values) c.add(h);
  return c;
}

std::string encoded(const DistinctCounter& c) {
  std::string out;
  c.encode(out);
  return out;
}

std::string hex(std::string_view bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (char ch : bytes) {
    const auto b = static_cast<unsigned char>(ch);
    out += digits[b >> 4];
    out += digits[b & 15];
  }
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
  Result<DistinctCounter> r = DistinctCounter::decode(in);
  return r ? "ok" : r.error().str();
}

}  // namespace

TEST_CASE("distinct counter: exact up to the limit then HLL", "[unit][sketch]") {
  DistinctCounter c(1000);
  for (int round = 0; round < 3; ++round) {
    for (std::int64_t i = 0; i < 1000; ++i) c.add(hash_int(i));
  }
  CHECK(c.exact());
  CHECK(c.estimate() == 1000);
  CHECK(c.standard_error() == 0.0);
  CHECK(c.registers().empty());
  c.add(hash_int(1000));
  CHECK_FALSE(c.exact());
  CHECK(c.registers().size() == 16384);
  CHECK(c.standard_error() == Approx(0.008125));
  CHECK(c.exact_hashes().empty());
  CHECK(std::llabs(static_cast<long long>(c.estimate()) - 1001) <= 3 * 0.0081 * 1001);
}

TEST_CASE("distinct counter: exact mode counts every distinct hash including zero",
          "[unit][sketch]") {
  DistinctCounter c(100);
  CHECK(c.estimate() == 0);
  c.add(0);
  c.add(0);
  CHECK(c.estimate() == 1);
  for (std::uint64_t h = 1; h <= 99; ++h) c.add(h << 20);  // collide in the low bits on purpose
  c.add(0);
  CHECK(c.exact());
  CHECK(c.estimate() == 100);
  CHECK(c.exact_hashes().front() == 0);
  CHECK(c.exact_hashes().size() == 100);
  c.add(std::uint64_t{100} << 20);
  CHECK_FALSE(c.exact());
  c.clear();
  CHECK(c.exact());
  CHECK(c.estimate() == 0);
}

TEST_CASE("distinct counter: a zero limit is HLL from the first value", "[unit][sketch]") {
  DistinctCounter c(0);
  CHECK(c.exact());
  CHECK(c.estimate() == 0);
  c.add(hash_string("a"));
  CHECK_FALSE(c.exact());
  CHECK(c.estimate() == 1);
}

// HLL with p = 14 has a standard error of 1.04 / sqrt(16384) = 0.8125%. Over cardinalities from 1
// to 10M and several seeds, every estimate must be within 3 sigma, and the fractions within 1 and
// 2 sigma must be what a normal error gives (68% and 95%; asserted with slack).
TEST_CASE("distinct counter: HLL estimates are within their standard error", "[unit][sketch]") {
  const double sigma = 1.04 / std::sqrt(16384.0);
  std::vector<std::uint64_t> cardinalities;
  for (std::uint64_t decade = 1; decade <= 1'000'000; decade *= 10) {
    for (std::uint64_t f : {1, 2, 5}) cardinalities.push_back(f * decade);
  }
  cardinalities.push_back(10'000'000);
  int runs = 0, within1 = 0, within2 = 0, within3 = 0;
  double worst = 0;
  for (std::uint64_t n : cardinalities) {
    const int seeds = n >= 5'000'000 ? 3 : 10;
    for (int seed = 0; seed < seeds; ++seed) {
      DistinctCounter c(0);
      const std::uint64_t base = static_cast<std::uint64_t>(seed) << 40;
      for (std::uint64_t i = 0; i < n; ++i) c.add(hash_int(static_cast<std::int64_t>(base + i)));
      const double error = (static_cast<double>(c.estimate()) - n) / n;
      worst = std::max(worst, std::abs(error));
      ++runs;
      within1 += std::abs(error) <= sigma;
      within2 += std::abs(error) <= 2 * sigma;
      within3 += std::abs(error) <= 3 * sigma;
      INFO("n " << n << " seed " << seed << " estimate " << c.estimate());
      CHECK(std::abs(error) <= 3 * sigma);
    }
  }
  INFO("runs " << runs << " within 1 sigma " << within1 << " within 2 sigma " << within2
               << " worst relative error " << worst);
  CHECK(within3 == runs);
  CHECK(within2 >= 0.90 * runs);
  CHECK(within1 >= 0.55 * runs);
}

TEST_CASE("distinct counter: merging the partials of any split equals counting the whole stream",
          "[unit][sketch]") {
  std::mt19937_64 rng(20261201);
  for (int trial = 0; trial < 60; ++trial) {
    const std::size_t limit = trial % 3 == 0 ? 0 : 500;
    const std::size_t distinct = 1 + rng() % (trial % 2 == 0 ? 800 : 20000);
    const std::vector<std::uint64_t> values = stream(rng, distinct * 2, distinct);
    const DistinctCounter whole = count_all(values, limit);
    const std::size_t parts = 2 + rng() % 7;
    std::vector<DistinctCounter> partial(parts, DistinctCounter(limit));
    for (std::uint64_t h : values) partial[rng() % parts].add(h);
    DistinctCounter merged(limit);
    for (const DistinctCounter& p : partial) merged.merge(p);
    INFO("trial " << trial << " distinct " << distinct << " parts " << parts);
    CHECK(merged == whole);
    CHECK(merged.exact() == (distinct <= limit));
    CHECK(merged.estimate() == whole.estimate());
    // Commutative and associative, on three of the partials.
    DistinctCounter ab = partial[0], ba = partial[1];
    ab.merge(partial[1]);
    ba.merge(partial[0]);
    CHECK(ab == ba);
    if (parts >= 3) {
      DistinctCounter left = ab, right = partial[1];
      left.merge(partial[2]);
      right.merge(partial[2]);
      DistinctCounter a_then = partial[0];
      a_then.merge(right);
      CHECK(left == a_then);
    }
    DistinctCounter self = whole;
    self.merge(self);
    CHECK(self == whole);
  }
}

TEST_CASE("distinct counter: merging a higher precision folds its registers exactly",
          "[unit][sketch]") {
  std::mt19937_64 rng(7);
  const std::vector<std::uint64_t> values = stream(rng, 50'000, 30'000);
  const DistinctCounter fine = count_all(values, 0, 14);
  const DistinctCounter coarse = count_all(values, 0, 11);
  DistinctCounter folded(0, 11);
  folded.merge(fine);
  CHECK(folded == coarse);
  DistinctCounter other_way = fine;
  other_way.merge(DistinctCounter(0, 11));
  CHECK(other_way == coarse);
  // An exact counter of a higher precision takes the lower one when merged.
  DistinctCounter exact_fine = count_all({hash_int(1), hash_int(2)}, 10, 14);
  exact_fine.merge(DistinctCounter(10, 12));
  CHECK(exact_fine.precision() == 12);
  CHECK(exact_fine.exact());
}

TEST_CASE("distinct counter: merge keeps the smaller limit", "[unit][sketch]") {
  DistinctCounter small = count_all({hash_int(1), hash_int(2)}, 2);
  DistinctCounter big = count_all({hash_int(3)}, 100);
  DistinctCounter a = small, b = big;
  a.merge(big);
  b.merge(small);
  CHECK(a == b);
  CHECK_FALSE(a.exact());
  CHECK(a.exact_limit() == 2);
  CHECK(a.estimate() == 3);
}

TEST_CASE("distinct counter: encode and decode round trip in every form", "[unit][sketch]") {
  std::mt19937_64 rng(99);
  for (std::size_t distinct : {0, 1, 10, 1000, 5000, 100'000}) {
    for (std::size_t limit : {std::size_t{0}, std::size_t{2000}}) {
      const DistinctCounter c = count_all(stream(rng, distinct, distinct), limit);
      const std::string bytes = encoded(c) + "tail";
      std::string_view in = bytes;
      Result<DistinctCounter> back = DistinctCounter::decode(in);
      INFO("distinct " << distinct << " limit " << limit);
      REQUIRE(back);
      CHECK(in == "tail");
      CHECK(*back == c);
      CHECK(encoded(*back) + "tail" == bytes);
      CHECK(back->estimate() == c.estimate());
    }
  }
}

TEST_CASE("distinct counter: encoded sizes", "[unit][sketch]") {
  std::mt19937_64 rng(5);
  // Version, kind, precision, limit (2 bytes), count, 8 bytes per value.
  CHECK(encoded(count_all(stream(rng, 10, 10), 1000)).size() == 6 + 80);
  // Sparse HLL: count, then (index delta, value) pairs of 2 + 1 bytes for 10 registers out of
  // 16384.
  CHECK(encoded(count_all(stream(rng, 10, 10), 0)).size() == 5 + 30);
  // Nibbles: a base, 4 bits per register, the escape count and a few escaped registers.
  const std::string ten_thousand = encoded(count_all(stream(rng, 10'000, 10'000), 0));
  CHECK(ten_thousand.size() >= 4 + 1 + 8192 + 1);
  CHECK(ten_thousand.size() <= 4 + 1 + 8192 + 1 + 3 * 20);
  CHECK(ten_thousand[1] == 3);
  const std::string million = encoded(count_all(stream(rng, 1'000'000, 1'000'000), 0));
  CHECK(million.size() >= 4 + 1 + 8192 + 1);
  CHECK(million.size() <= 4 + 1 + 8192 + 1 + 3 * 20);
}

// Bytes written by encoding version 1. Decoding them must keep working in every later version;
// if this fails, a change broke stored and in-flight states.
TEST_CASE("distinct counter: decodes states written by encoding version 1", "[unit][sketch]") {
  SECTION("exact") {
    const DistinctCounter c = count_all({hash_int(1), hash_int(2), hash_int(1)}, 3);
    const std::string v1 = unhex(
        "01000e0302"
        "83c47f4e5d9efa2e"
        "0997b3a8d645fb8a");
    CHECK(hex(encoded(c)) == hex(v1));
    std::string_view in = v1;
    Result<DistinctCounter> back = DistinctCounter::decode(in);
    REQUIRE(back);
    CHECK(*back == c);
    CHECK(back->estimate() == 2);
    CHECK(back->exact_limit() == 3);
  }
  SECTION("sparse HLL") {
    const DistinctCounter c =
        count_all({hash_int(1), hash_int(2), hash_int(3), hash_string("x")}, 0);
    const std::string v1 = unhex(
        "01020e0004"
        "be1701"
        "850c01"
        "dd0a03"
        "9e1701");
    CHECK(hex(encoded(c)) == hex(v1));
    std::string_view in = v1;
    Result<DistinctCounter> back = DistinctCounter::decode(in);
    REQUIRE(back);
    CHECK(*back == c);
    CHECK(back->estimate() == 4);
  }
  SECTION("dense HLL, written back as nibbles") {
    std::vector<std::uint64_t> values;
    for (std::int64_t i = 0; i < 100; ++i) values.push_back(hash_int(i));
    const DistinctCounter c = count_all(values, 0, 4);
    // Registers 4 0 3 3 2 6 7 5 3 4 4 6 2 3 6 4, 6 bits each.
    const std::string dense = unhex(
        "01010400"
        "04300c"
        "827114"
        "034118"
        "c26010");
    std::string_view in = dense;
    Result<DistinctCounter> back = DistinctCounter::decode(in);
    REQUIRE(back);
    CHECK(*back == c);
    CHECK(back->precision() == 4);
    CHECK(back->estimate() == c.estimate());
    // The same registers as nibbles over base 0 (10 bytes beat the 12 of the dense form).
    const std::string nibbles = unhex(
        "01030400"
        "00"
        "0433625743643246"
        "00");
    CHECK(hex(encoded(c)) == hex(nibbles));
    in = nibbles;
    back = DistinctCounter::decode(in);
    REQUIRE(back);
    CHECK(*back == c);
  }
  SECTION("nibbles with an escaped register") {
    // p = 6: register 0 is 20, the other 63 are 1. Over base 1, register 0 is escaped.
    const std::string nibbles = unhex(
        "01030600"
        "01"
        "0f" +
        std::string(62, '0') +
        "01"
        "00"
        "14");
    std::string_view in = nibbles;
    Result<DistinctCounter> back = DistinctCounter::decode(in);
    REQUIRE(back);
    CHECK(in.empty());
    REQUIRE(back->registers().size() == 64);
    CHECK(back->registers()[0] == 20);
    CHECK(std::count(back->registers().begin(), back->registers().end(), 1) == 63);
    CHECK(hex(encoded(*back)) == hex(nibbles));
  }
}

TEST_CASE("distinct counter: decode rejects garbage with the reason", "[unit][sketch]") {
  CHECK(decode_error("") == "invalid_data: distinct counter state: empty input");
  CHECK(decode_error("\x02") ==
        "invalid_data: distinct counter state: unknown encoding version 2 (this build reads 1)");
  CHECK(decode_error(unhex("01040e00")) == "invalid_data: distinct counter state: unknown kind 4");
  CHECK(decode_error(unhex("01011300")) ==
        "invalid_data: distinct counter state: precision 19 is not in [4, 18]");
  CHECK(decode_error(unhex("01000e8180800800")) ==
        "invalid_data: distinct counter state: exact limit 16777217 is above 16777216");
  CHECK(decode_error(unhex("01000e0203"
                           "0100000000000000"
                           "0200000000000000"
                           "0300000000000000")) ==
        "invalid_data: distinct counter state: more exact values than the exact limit");
  CHECK(decode_error(unhex("01000e0302"
                           "0200000000000000"
                           "0100000000000000")) ==
        "invalid_data: distinct counter state: exact values are not strictly ascending");
  CHECK(decode_error(unhex("01000e0302"
                           "0200000000000000"
                           "0200000000000000")) ==
        "invalid_data: distinct counter state: exact values are not strictly ascending");
  CHECK(decode_error(unhex("01000e0302"
                           "0200000000000000")) ==
        "invalid_data: distinct counter state: truncated exact values");
  CHECK(decode_error(unhex("01020e0001"
                           "0034")) ==
        "invalid_data: distinct counter state: register value 52 out of range");
  CHECK(decode_error(unhex("01020e0002"
                           "0501"
                           "0001")) ==
        "invalid_data: distinct counter state: sparse register indexes are not ascending");
  CHECK(decode_error(unhex("01020e0001"
                           "808001"
                           "01")) ==
        "invalid_data: distinct counter state: sparse register index out of range");
  const std::string p4 = "01030400";
  CHECK(decode_error(unhex(p4 + "3e")) ==
        "invalid_data: distinct counter state: nibble base 62 out of range");
  CHECK(decode_error(unhex(p4 + "00"
                                "00000000000000")) ==
        "invalid_data: distinct counter state: truncated nibble registers");
  CHECK(decode_error(unhex(p4 + "3d"
                                "0100000000000000"
                                "00")) ==
        "invalid_data: distinct counter state: register value 62 out of range");
  CHECK(decode_error(unhex(p4 + "00"
                                "0f00000000000000"
                                "00")) ==
        "invalid_data: distinct counter state: escape count does not match the escaped registers");
  CHECK(decode_error(unhex(p4 + "00"
                                "0f00000000000000"
                                "01"
                                "01"
                                "20")) ==
        "invalid_data: distinct counter state: escaped register 1 is not marked");
  CHECK(decode_error(unhex(p4 + "00"
                                "0f00000000000000"
                                "01"
                                "00"
                                "0e")) ==
        "invalid_data: distinct counter state: escaped register value 14 out of range");
  CHECK(decode_error(unhex(p4 + "00"
                                "ff00000000000000"
                                "02"
                                "00"
                                "20"
                                "00"
                                "20")) ==
        "invalid_data: distinct counter state: escaped register indexes are not ascending");
  CHECK(decode_error(unhex(p4 + "00"
                                "0f00000000000000"
                                "01"
                                "00")) ==
        "invalid_data: distinct counter state: truncated escaped registers");
  CHECK(decode_error(unhex("01000e8000")) ==
        "invalid_data: distinct counter state: truncated or malformed exact limit");
}

TEST_CASE("distinct counter: every truncation of a valid state is an error", "[unit][sketch]") {
  std::mt19937_64 rng(3);
  for (std::size_t distinct : {5, 300, 20'000}) {
    const std::string bytes = encoded(count_all(stream(rng, distinct, distinct), 1000));
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      std::string_view in(bytes.data(), n);
      INFO("distinct " << distinct << " prefix " << n);
      CHECK_FALSE(DistinctCounter::decode(in));
    }
  }
}

TEST_CASE("distinct counter: random bytes never crash decode", "[unit][sketch]") {
  std::mt19937_64 rng(11);
  const std::string valid = encoded(count_all(stream(rng, 50, 50), 0));
  int decoded = 0;
  for (int trial = 0; trial < 20'000; ++trial) {
    std::string bytes = valid;
    for (int k = 0; k < 1 + trial % 4; ++k) bytes[rng() % bytes.size()] = static_cast<char>(rng());
    std::string_view in = bytes;
    Result<DistinctCounter> r = DistinctCounter::decode(in);
    if (r) {
      ++decoded;
      (void)r->estimate();
      std::string again;
      r->encode(again);
      std::string_view again_in = again;
      Result<DistinctCounter> twice = DistinctCounter::decode(again_in);
      REQUIRE(twice);
      CHECK(*twice == *r);
    }
  }
  CHECK(decoded > 0);
}

TEST_CASE("distinct counter: memory is bounded in both modes", "[unit][sketch]") {
  DistinctCounter c(1000);
  CHECK(c.memory_bytes() == sizeof(DistinctCounter));
  for (std::int64_t i = 0; i < 1000; ++i) c.add(hash_int(i));
  // 1000 values at most 3/4 full: 2048 slots of 8 bytes.
  CHECK(c.memory_bytes() == sizeof(DistinctCounter) + 2048 * 8);
  for (std::int64_t i = 0; i < 1'000'000; ++i) c.add(hash_int(i));
  CHECK(c.memory_bytes() == sizeof(DistinctCounter) + 16384);
}

TEST_CASE("distinct counter: add does not allocate once warm", "[unit][sketch]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  DistinctCounter exact(4096);
  for (std::int64_t i = 0; i < 4096; ++i) exact.add(hash_int(i));
  exact.clear();  // keeps the set's capacity
  DistinctCounter hll(0);
  hll.add(hash_int(-1));
  sluice::test::AllocationCounter allocs;
  for (std::int64_t i = 0; i < 4096; ++i) exact.add(hash_int(i + 10'000));
  for (std::int64_t i = 0; i < 100'000; ++i) exact.add(hash_int(i % 4096 + 10'000));
  for (std::int64_t i = 0; i < 1'000'000; ++i) hll.add(hash_int(i));
  CHECK(allocs.count() == 0);
  CHECK(exact.exact());
  CHECK(exact.estimate() == 4096);
}

TEST_CASE("distinct counter: two values fit in the object without allocating", "[unit][sketch]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  CHECK(sizeof(DistinctCounter) == 32);
  sluice::test::AllocationCounter allocs;
  DistinctCounter c(1000);
  c.add(hash_int(1));
  c.add(hash_int(2));
  c.add(0);  // hash 0 is kept apart
  c.add(hash_int(1));
  CHECK(allocs.count() == 0);
  CHECK(c.estimate() == 3);
  CHECK(c.memory_bytes() == sizeof(DistinctCounter));
  c.add(hash_int(3));
  CHECK(allocs.count() == 1);
  CHECK(c.memory_bytes() == sizeof(DistinctCounter) + 8 * 8);
  std::vector<std::uint64_t> expected{0, hash_int(1), hash_int(2), hash_int(3)};
  std::sort(expected.begin(), expected.end());
  CHECK(c.exact_hashes() == expected);
}

TEST_CASE("distinct counter: copies are deep and moves leave an empty counter", "[unit][sketch]") {
  std::mt19937_64 rng(21);
  for (std::size_t distinct : {0, 2, 50, 5000}) {
    const DistinctCounter original = count_all(stream(rng, distinct, distinct), 1000, 12);
    DistinctCounter copy = original;
    CHECK(copy == original);
    copy.add(hash_string("another"));
    CHECK(copy.estimate() >= original.estimate());
    if (original.exact() && distinct < 1000) CHECK_FALSE(copy == original);
    if (!original.exact()) CHECK(copy.registers().data() != original.registers().data());
    DistinctCounter moved = std::move(copy);
    CHECK(moved.estimate() >= original.estimate());
    CHECK(copy.exact());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
    CHECK(copy.estimate() == 0);
    CHECK(copy.precision() == 12);
    copy.add(hash_int(5));
    CHECK(copy.estimate() == 1);
    DistinctCounter assigned(10);
    assigned = original;
    CHECK(assigned == original);
    assigned = std::move(moved);
    CHECK(assigned.estimate() >= original.estimate());
    const DistinctCounter& alias = assigned;
    assigned = alias;  // self-assignment
    CHECK(assigned.estimate() >= original.estimate());
    std::vector<DistinctCounter> many(100, original);
    many.resize(1000, original);  // moves on reallocation
    CHECK(many.back() == original);
    CHECK(many.front() == original);
  }
}

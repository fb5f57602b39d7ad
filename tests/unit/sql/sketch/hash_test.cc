#include "sql/sketch/hash.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>

using namespace sluice::sql::sketch;

namespace {

// The bytes (i * 31 + 7) mod 256, i = 0, 1, ...
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + 7) & 0xFF);
  return s;
}

}  // namespace

// Expected values from the reference library (libxxhash 0.8.1, XXH64(data, len, seed)), covering
// every code path: the 32-byte stripes, the 8- and 4-byte tails and the single bytes.
TEST_CASE("sketch hash: xxh64 equals the reference implementation", "[unit][sketch]") {
  struct Vector {
    std::size_t length;
    std::uint64_t seed0;
    std::uint64_t seed12345;
  };
  const Vector vectors[] = {
      {0, 0xEF46DB3751D8E999ULL, 0x95584AF7701F808DULL},
      {1, 0xA96C7F0CE858BBB7ULL, 0x496FC29A1E753BD7ULL},
      {3, 0x56E6957632A487F9ULL, 0x94FF877CD86385BEULL},
      {4, 0xC60D15B1E3FF8F04ULL, 0x1034B01F61E3B2E6ULL},
      {5, 0x808815858624DD4EULL, 0x1EA5E74045B19544ULL},
      {7, 0xAFBEFC3D6C6F9A8EULL, 0xD06AA9DBE7ADD6D1ULL},
      {8, 0x3DA5C7AA269683E0ULL, 0x23BEFC2F0D90DA1AULL},
      {9, 0x4B17A9BA9E215C09ULL, 0x9117B0959C2277A2ULL},
      {15, 0xAE2A37EB9357CAA7ULL, 0x634D78FB3228F038ULL},
      {16, 0xA19AD429B02BC413ULL, 0x9383D5F07C7D635AULL},
      {31, 0x4A74F3A1A39AD4A1ULL, 0xBFF21E6871CDF167ULL},
      {32, 0x8D57D6A4671CC43DULL, 0x7BDFE9FBCC771266ULL},
      {33, 0x62C9FD21ED857664ULL, 0x5A23927B0946B212ULL},
      {63, 0x5C320A0D2707057FULL, 0x60148113D74960D3ULL},
      {64, 0x7BBABBC45729D17EULL, 0xEEFF42E996F0F7D5ULL},
      {65, 0xF3980C34BAE65DC1ULL, 0x9D282E6E33ED77C1ULL},
      {100, 0xEFA0AD2D3E70C151ULL, 0x4F2E446AB943E539ULL},
      {200, 0x95D9A0C977B4B6FBULL, 0x328168CBAECC7B96ULL},
  };
  for (const Vector& v : vectors) {
    INFO("length " << v.length);
    const std::string data = pattern(v.length);
    CHECK(xxh64(data) == v.seed0);
    CHECK(xxh64(data, 12345) == v.seed12345);
  }
}

// Stored HLL registers and exact sets depend on these values: a change here breaks every
// encoded DistinctCounter state, so these are pinned (and computed with the reference library).
TEST_CASE("sketch hash: the typed hashes are pinned", "[unit][sketch]") {
  CHECK(hash_string("abc") == 0x44BC2CF5AD770999ULL);
  CHECK(hash_int(0) == 0x22C76AFD15F0110FULL);
  CHECK(hash_int(1) == 0x8AFB45D6A8B39709ULL);
  CHECK(hash_int(-1) == 0x0AD7F61289875125ULL);
  CHECK(hash_int(42) == 0x602F275014CD5D53ULL);
  CHECK(hash_int(std::numeric_limits<std::int64_t>::max()) == 0x4E9C4F439CAE2980ULL);
  CHECK(hash_int(std::numeric_limits<std::int64_t>::min()) == 0xCAF0DB6A7176F71EULL);
  CHECK(hash_double(0.5) == 0x70036197296017D3ULL);
  CHECK(hash_double(1e300) == 0xC5572E391BF01B56ULL);
  CHECK(hash_double(std::nan("")) == 0x252C58C5E8218467ULL);
  CHECK(hash_bool(true) == 0x2759B6277D4F45E1ULL);
  CHECK(hash_bool(false) == 0xC301F8F02EF4B4AAULL);
}

// hash_int() is xxh64() of the number's 8 little-endian bytes with seed 1, for every number (its
// steps are written out for that length).
TEST_CASE("sketch hash: hash_int is xxh64 of the little-endian bytes", "[unit][sketch]") {
  std::uint64_t v = 0x9E3779B97F4A7C15ULL;
  for (int k = 0; k < 10000; ++k) {
    v = v * 6364136223846793005ULL + 1442695040888963407ULL;
    const std::uint64_t n = k < 64 ? (std::uint64_t{1} << k) - 1 : v;
    char bytes[8];
    for (int b = 0; b < 8; ++b) bytes[b] = static_cast<char>(n >> (8 * b));
    REQUIRE(hash_int(static_cast<std::int64_t>(n)) == xxh64(std::string_view(bytes, 8), 1));
  }
}

TEST_CASE("sketch hash: values SQL calls equal hash alike", "[unit][sketch]") {
  CHECK(hash_double(1.0) == hash_int(1));
  CHECK(hash_double(-42.0) == hash_int(-42));
  CHECK(hash_double(-0.0) == hash_int(0));
  CHECK(hash_double(0.0) == hash_int(0));
  CHECK(hash_double(-9223372036854775808.0) == hash_int(std::numeric_limits<std::int64_t>::min()));
  CHECK(hash_double(std::nan("1")) == hash_double(-std::nan("2")));
  CHECK(hash_double(9223372036854775808.0) != hash_int(std::numeric_limits<std::int64_t>::max()));
  CHECK(hash_double(1.5) != hash_double(2.5));
  // Types are kept apart: the string "1", the integer 1 and true differ.
  CHECK(hash_string("1") != hash_int(1));
  CHECK(hash_bool(true) != hash_int(1));
  std::string eight_bytes("\x01\0\0\0\0\0\0\0", 8);
  CHECK(hash_string(eight_bytes) != hash_int(1));
}

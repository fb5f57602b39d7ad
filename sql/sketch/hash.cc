#include "sql/sketch/hash.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace sluice::sql::sketch {
namespace {

constexpr std::uint64_t kP1 = 0x9E3779B185EBCA87ULL;
constexpr std::uint64_t kP2 = 0xC2B2AE3D27D4EB4FULL;
constexpr std::uint64_t kP3 = 0x165667B19E3779F9ULL;
constexpr std::uint64_t kP4 = 0x85EBCA77C2B2AE63ULL;
constexpr std::uint64_t kP5 = 0x27D4EB2F165667C5ULL;

// One seed per SQL type, so that values of different types never hash alike by construction.
constexpr std::uint64_t kStringSeed = 0;
constexpr std::uint64_t kIntSeed = 1;
constexpr std::uint64_t kDoubleSeed = 2;
constexpr std::uint64_t kBoolSeed = 3;

// Little-endian reads, so the hash is the same on every machine.
std::uint64_t read64(const unsigned char* p) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  }
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
std::uint64_t read32(const unsigned char* p) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
  return std::uint64_t{p[0]} | std::uint64_t{p[1]} << 8 | std::uint64_t{p[2]} << 16 |
         std::uint64_t{p[3]} << 24;
}

std::uint64_t round(std::uint64_t acc, std::uint64_t input) noexcept {
  acc += input * kP2;
  acc = std::rotl(acc, 31);
  return acc * kP1;
}
std::uint64_t merge_round(std::uint64_t acc, std::uint64_t val) noexcept {
  acc ^= round(0, val);
  return acc * kP1 + kP4;
}

std::uint64_t avalanche(std::uint64_t h) noexcept {
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

// xxh64() of v's 8 little-endian bytes, its steps for that length written out (COUNT(DISTINCT)
// hashes a number per event); hash_test.cc pins it to the reference values.
std::uint64_t hash_u64(std::uint64_t v, std::uint64_t seed) noexcept {
  std::uint64_t h = seed + kP5 + 8;
  h ^= round(0, v);
  h = std::rotl(h, 27) * kP1 + kP4;
  return avalanche(h);
}

}  // namespace

std::uint64_t xxh64(std::string_view bytes, std::uint64_t seed) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t len = bytes.size();
  const unsigned char* const end = p + len;
  std::uint64_t h;
  if (len >= 32) {
    std::uint64_t v1 = seed + kP1 + kP2, v2 = seed + kP2, v3 = seed, v4 = seed - kP1;
    const unsigned char* const limit = end - 32;
    do {
      v1 = round(v1, read64(p));
      v2 = round(v2, read64(p + 8));
      v3 = round(v3, read64(p + 16));
      v4 = round(v4, read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = std::rotl(v1, 1) + std::rotl(v2, 7) + std::rotl(v3, 12) + std::rotl(v4, 18);
    h = merge_round(h, v1);
    h = merge_round(h, v2);
    h = merge_round(h, v3);
    h = merge_round(h, v4);
  } else {
    h = seed + kP5;
  }
  h += static_cast<std::uint64_t>(len);
  while (end - p >= 8) {
    h ^= round(0, read64(p));
    h = std::rotl(h, 27) * kP1 + kP4;
    p += 8;
  }
  if (end - p >= 4) {
    h ^= read32(p) * kP1;
    h = std::rotl(h, 23) * kP2 + kP3;
    p += 4;
  }
  while (p < end) {
    h ^= *p * kP5;
    h = std::rotl(h, 11) * kP1;
    ++p;
  }
  return avalanche(h);
}

std::uint64_t hash_string(std::string_view s) noexcept { return xxh64(s, kStringSeed); }

std::uint64_t hash_int(std::int64_t v) noexcept {
  return hash_u64(static_cast<std::uint64_t>(v), kIntSeed);
}

std::uint64_t hash_double(double v) noexcept {
  if (std::isnan(v)) return hash_u64(0x7FF8000000000000ULL, kDoubleSeed);
  // [-2^63, 2^63) holds exactly the doubles that convert to int64 without overflow.
  constexpr double kTwo63 = 9223372036854775808.0;
  if (v >= -kTwo63 && v < kTwo63 && std::trunc(v) == v) {
    return hash_int(static_cast<std::int64_t>(v));  // also maps -0.0 to 0
  }
  return hash_u64(std::bit_cast<std::uint64_t>(v), kDoubleSeed);
}

std::uint64_t hash_bool(bool v) noexcept { return hash_u64(v ? 1 : 0, kBoolSeed); }

}  // namespace sluice::sql::sketch

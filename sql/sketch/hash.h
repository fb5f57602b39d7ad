#pragma once

#include <cstdint>
#include <string_view>

namespace sluice::sql::sketch {

/// XXH64 (xxHash, 64-bit) of `bytes` with `seed`, bit-identical to the reference implementation
/// (XXH64("", 0) == 0xEF46DB3751D8E999). DistinctCounter's stored HyperLogLog registers and exact
/// sets hold these hashes, so states written by one agent merge with states of another only while
/// every agent hashes a value the same way: this function and the hash_* helpers below are part of
/// the encoding (pinned by tests/unit/sql/sketch/hash_test.cc) and must never change. FNV-1a
/// (lib/codec/hash.h) is not used because its high bits, which pick the HLL register, are poorly
/// mixed for short inputs.
std::uint64_t xxh64(std::string_view bytes, std::uint64_t seed = 0) noexcept;

/// Hashes for COUNT(DISTINCT x). Each type has its own seed, so a string never collides with a
/// number by construction. SQL's equality is respected: 1, 1.0 and -0.0 == 0 hash alike (a double
/// holding an integer in int64's range hashes as that integer); every NaN hashes alike.
std::uint64_t hash_string(std::string_view s) noexcept;
std::uint64_t hash_int(std::int64_t v) noexcept;
std::uint64_t hash_double(double v) noexcept;
std::uint64_t hash_bool(bool v) noexcept;

}  // namespace sluice::sql::sketch

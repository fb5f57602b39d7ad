#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

// Byte helpers shared by the sketch encodings: little-endian fixed-width integers and doubles,
// and LEB128 varints. Readers take the input by reference, consume what they read and return
// false (leaving the input unspecified) when it is truncated or malformed.
namespace sluice::sql::sketch::enc {

inline void put_u8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }

inline void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

inline void put_f64(std::string& out, double v) { put_u64(out, std::bit_cast<std::uint64_t>(v)); }

inline void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

inline std::uint64_t zigzag(std::int64_t v) {
  return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}
inline std::int64_t unzigzag(std::uint64_t v) {
  return static_cast<std::int64_t>(v >> 1) ^ -static_cast<std::int64_t>(v & 1);
}

inline bool get_u8(std::string_view& in, std::uint8_t& v) {
  if (in.empty()) return false;
  v = static_cast<std::uint8_t>(in[0]);
  in.remove_prefix(1);
  return true;
}

inline bool get_u64(std::string_view& in, std::uint64_t& v) {
  if (in.size() < 8) return false;
  v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  in.remove_prefix(8);
  return true;
}

inline bool get_f64(std::string_view& in, double& v) {
  std::uint64_t bits;
  if (!get_u64(in, bits)) return false;
  v = std::bit_cast<double>(bits);
  return true;
}

/// Rejects varints longer than 10 bytes, overflowing 64 bits, or not in their shortest form, so
/// that every value has exactly one encoding.
inline bool get_varint(std::string_view& in, std::uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    const auto b = static_cast<std::uint8_t>(in[0]);
    in.remove_prefix(1);
    if (shift == 63 && b > 1) return false;
    v |= std::uint64_t{b & 0x7FU} << shift;
    if ((b & 0x80) == 0) return b != 0 || shift == 0;
  }
  return false;
}

}  // namespace sluice::sql::sketch::enc

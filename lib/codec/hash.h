#pragma once

#include <cstdint>
#include <string_view>

namespace sluice::codec {

/// FNV-1a over `bytes`, stable across runs, builds and machines. Its offset basis is
/// 1469598103934665603, not the published 14695981039346656037: sluice has used this value since
/// its first release, and stored file fingerprints, event ids and sampling decisions depend on it,
/// so it must never change (the hash is as good for these uses).
constexpr std::uint64_t kFnvBasis = 1469598103934665603ULL;

/// FNV-1a continued from state `h` (a previous result, or another offset basis), so that a hash
/// over several pieces needs no buffer: fnv1a64(b, fnv1a64(a)) == fnv1a64(a + b).
constexpr std::uint64_t fnv1a64(std::string_view bytes, std::uint64_t h) noexcept {
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

constexpr std::uint64_t fnv1a64(std::string_view bytes) noexcept {
  return fnv1a64(bytes, kFnvBasis);
}

}  // namespace sluice::codec

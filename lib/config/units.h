#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

/// A size in bytes, written in configuration as "64MiB", "512KiB", "10MB" or a plain integer.
struct ByteSize {
  std::uint64_t bytes = 0;
  friend auto operator<=>(ByteSize, ByteSize) = default;
};

/// "250ms", "5s", "1.5m", "2h", "1d" (also "ns", "us"). Whole nanoseconds; nullopt if malformed.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);
/// "64MiB", "10MB", "512KiB", "1GiB", "100B", "4096". nullopt if malformed or over 2^63.
std::optional<ByteSize> parse_size(std::string_view text);
/// The shortest exact spelling: "250ms", "5s", "2m".
std::string format_duration(std::chrono::nanoseconds d);
/// "64MiB" when exact, else bytes: "1000".
std::string format_size(ByteSize s);

}  // namespace sluice

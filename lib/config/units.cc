#include "lib/config/units.h"

#include <cmath>
#include <limits>
#include <utility>

namespace sluice {
namespace {

// Splits "12.5ms" into 12.5 and "ms". Rejects spaces, signs and empty parts.
bool split_number(std::string_view text, long double& value, std::string_view& unit) {
  std::size_t i = 0;
  bool digits = false, dot = false;
  long double v = 0, scale = 1;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c >= '0' && c <= '9') {
      digits = true;
      if (dot) {
        scale /= 10;
        v += (c - '0') * scale;
      } else {
        v = v * 10 + (c - '0');
      }
    } else if (c == '.' && !dot) {
      dot = true;
    } else {
      break;
    }
  }
  if (!digits) return false;
  value = v;
  unit = text.substr(i);
  return true;
}

}  // namespace

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  long double v = 0;
  std::string_view unit;
  if (!split_number(text, v, unit)) return std::nullopt;
  static constexpr std::pair<std::string_view, long double> kUnits[] = {
      {"ns", 1.0L}, {"us", 1e3L},   {"ms", 1e6L},   {"s", 1e9L},
      {"m", 60e9L}, {"h", 3600e9L}, {"d", 86400e9L}};
  for (const auto& [name, ns] : kUnits) {
    if (unit == name) {
      const long double total = v * ns;
      if (total > static_cast<long double>(std::numeric_limits<std::int64_t>::max()))
        return std::nullopt;
      return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(total)));
    }
  }
  return std::nullopt;
}

std::optional<ByteSize> parse_size(std::string_view text) {
  long double v = 0;
  std::string_view unit;
  if (!split_number(text, v, unit)) return std::nullopt;
  static constexpr std::pair<std::string_view, long double> kUnits[] = {{"", 1.0L},
                                                                        {"B", 1.0L},
                                                                        {"KB", 1e3L},
                                                                        {"MB", 1e6L},
                                                                        {"GB", 1e9L},
                                                                        {"TB", 1e12L},
                                                                        {"KiB", 1024.0L},
                                                                        {"MiB", 1048576.0L},
                                                                        {"GiB", 1073741824.0L},
                                                                        {"TiB", 1099511627776.0L}};
  for (const auto& [name, mult] : kUnits) {
    if (unit == name) {
      const long double total = v * mult;
      if (total > 9.2e18L || total != std::floor(total)) return std::nullopt;
      return ByteSize{static_cast<std::uint64_t>(total)};
    }
  }
  return std::nullopt;
}

std::string format_duration(std::chrono::nanoseconds d) {
  const std::int64_t ns = d.count();
  static constexpr std::pair<std::string_view, std::int64_t> kUnits[] = {
      {"d", 86'400'000'000'000}, {"h", 3'600'000'000'000}, {"m", 60'000'000'000},
      {"s", 1'000'000'000},      {"ms", 1'000'000},        {"us", 1'000}};
  if (ns != 0) {
    for (const auto& [name, unit] : kUnits) {
      if (ns % unit == 0) return std::to_string(ns / unit) + std::string(name);
    }
  }
  return std::to_string(ns) + (ns == 0 ? "s" : "ns");
}

std::string format_size(ByteSize s) {
  static constexpr std::pair<std::string_view, std::uint64_t> kUnits[] = {
      {"TiB", 1ULL << 40}, {"GiB", 1ULL << 30}, {"MiB", 1ULL << 20}, {"KiB", 1ULL << 10}};
  if (s.bytes != 0) {
    for (const auto& [name, unit] : kUnits) {
      if (s.bytes % unit == 0) return std::to_string(s.bytes / unit) + std::string(name);
    }
  }
  return std::to_string(s.bytes);
}

}  // namespace sluice

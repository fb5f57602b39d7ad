#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <string_view>

#include "lib/core/clock.h"

namespace sluice {

/// Sets up the process-wide logger on stderr. Under journald (JOURNAL_STREAM names our stderr)
/// lines carry a "<N>" syslog priority prefix and no timestamp; otherwise an ISO time and level.
void init_logging(spdlog::level::level_enum level);
/// Parses "trace", "debug", "info", "warn", "error", "critical", "off".
bool parse_log_level(std::string_view text, spdlog::level::level_enum& out);

/// Lets `burst` messages through per `window`; counts the rest, which the next message that gets
/// through reports ("(N similar messages suppressed)"). One per call site of a repeated warning.
class RateLimiter {
 public:
  explicit RateLimiter(std::uint32_t burst = 5,
                       std::chrono::seconds window = std::chrono::seconds(10))
      : burst_(burst), window_(window) {}
  /// True if the caller should log now; `suppressed` is set to what was held back since the last
  /// one.
  bool allow(std::uint64_t& suppressed) noexcept {
    const TimePoint now = std::chrono::steady_clock::now();
    if (now - start_ >= window_) {
      start_ = now;
      used_ = 0;
    }
    if (used_ >= burst_) {
      ++suppressed_;
      return false;
    }
    ++used_;
    suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  std::uint32_t burst_;
  std::chrono::seconds window_;
  TimePoint start_{};
  std::uint32_t used_ = 0;
  std::uint64_t suppressed_ = 0;
};

}  // namespace sluice

/// Logs at warn through `limiter` (a RateLimiter), appending the count of suppressed messages.
#define SLUICE_WARN_LIMITED(limiter, ...)                                             \
  do {                                                                                \
    std::uint64_t sluice_suppressed_ = 0;                                             \
    if ((limiter).allow(sluice_suppressed_)) {                                        \
      if (sluice_suppressed_ > 0) {                                                   \
        spdlog::warn("{} ({} similar messages suppressed)", fmt::format(__VA_ARGS__), \
                     sluice_suppressed_);                                             \
      } else {                                                                        \
        spdlog::warn(__VA_ARGS__);                                                    \
      }                                                                               \
    }                                                                                 \
  } while (0)

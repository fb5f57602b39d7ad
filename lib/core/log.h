#pragma once

#include <fmt/format.h>
#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "lib/core/clock.h"

namespace sluice {

/// Sets up the process-wide logger on stderr. Under journald (JOURNAL_STREAM names our stderr)
/// lines carry a "<N>" syslog priority prefix and no timestamp; otherwise an ISO time and level.
/// Every message passes through sanitize_log_message(), so no log line can carry a raw control
/// byte, whatever a call site forgot to escape.
void init_logging(spdlog::level::level_enum level);
/// Parses "trace", "debug", "info", "warn", "error", "critical", "off".
bool parse_log_level(std::string_view text, spdlog::level::level_enum& out);

/// Appends `text` to `out` so that it reads as one inert line: printable ASCII and valid UTF-8 as
/// they are; `\` as `\\`; `\n` `\r` `\t` as those two-character escapes; other C0 controls, DEL and
/// every byte of invalid UTF-8 as `\xHH`; C1 controls, line/paragraph separators and bidi
/// overrides (which terminals and editors obey) as `\uHHHH`. At most `max_bytes` of the input
/// are shown (cut on a character boundary), then `...(N bytes)` with the input's full size.
void append_log_excerpt(std::string& out, std::string_view text, std::size_t max_bytes = 120);
/// The same as a new string.
std::string escape_for_log(std::string_view text, std::size_t max_bytes = 120);

/// An input excerpt for a log argument: `spdlog::warn("bad line: {}", log_excerpt(line))`. Input
/// (bodies, lines, paths, header values, stored positions) is only ever logged through this, so
/// a client cannot forge log lines or send escape sequences to an operator's terminal. Formats
/// lazily: a message that a RateLimiter holds back costs nothing.
struct LogExcerpt {
  std::string_view text;
  std::size_t max_bytes;
};
inline LogExcerpt log_excerpt(std::string_view text, std::size_t max_bytes = 120) noexcept {
  return {text, max_bytes};
}

/// Escapes control bytes and invalid UTF-8 in a whole message (not `\`, which call sites already
/// escaped in their excerpts): the logger's last line of defence. Returns false, without touching
/// `out`, when `message` is clean, which is the common case.
bool sanitize_log_message(std::string_view message, std::string& out);
/// Wraps `inner` so that each message's text is sanitized before it is formatted.
std::unique_ptr<spdlog::formatter> make_sanitizing_formatter(
    std::unique_ptr<spdlog::formatter> inner);

/// Rate limit for one call site of a repeated warning: lets `burst` messages through per `window`
/// and holds back the rest. What was held back is reported once per window: appended to the next
/// message that gets through, or, if none comes, as a summary line from log_summaries() ("N similar
/// messages suppressed in the last 10s; the first: ..."). Thread-safe; not copyable (the
/// summaries find every live limiter through a registry).
class RateLimiter {
 public:
  explicit RateLimiter(std::uint32_t burst = 5, Duration window = std::chrono::seconds(10),
                       const Clock* clock = nullptr);
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  /// True if the caller should log now; `suppressed` is set to what was held back since the last
  /// one that was let through or summarised (the caller appends it to its message).
  bool allow(std::uint64_t& suppressed) noexcept;
  /// After allow() said no: true for the first message held back since the last report, whose
  /// text the summary quotes (so a call site formats at most one held-back message per window).
  bool wants_sample() noexcept;
  void set_sample(std::string text);
  /// The summary of what was held back, once the window in which it was held back has ended (or
  /// at once with `force`); nullopt if there is nothing to report. Resets the count.
  std::optional<std::string> take_summary(bool force = false);

  /// Logs (at warn) the summary of every live limiter that has one. The agent calls it every
  /// second on its loop, and with `force` when it exits, so that no held-back count is lost.
  static void log_summaries(bool force = false);

 private:
  TimePoint now() const noexcept;

  const std::uint32_t burst_;
  const Duration window_;
  const Clock* clock_;
  std::mutex mu_;
  bool started_ = false;
  TimePoint start_{};
  std::uint32_t used_ = 0;
  std::uint64_t suppressed_ = 0;
  std::string sample_;
  bool sampled_ = false;
};

}  // namespace sluice

template <>
struct fmt::formatter<sluice::LogExcerpt> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const sluice::LogExcerpt& e, FormatContext& ctx) const -> decltype(ctx.out()) {
    std::string s;
    sluice::append_log_excerpt(s, e.text, e.max_bytes);
    return fmt::formatter<std::string_view>::format(s, ctx);
  }
};

/// Logs at warn through `limiter` (a RateLimiter), appending the count of suppressed messages.
/// Input in the message goes through log_excerpt().
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
    } else if ((limiter).wants_sample()) {                                            \
      (limiter).set_sample(fmt::format(__VA_ARGS__));                                 \
    }                                                                                 \
  } while (0)

/// SLUICE_WARN_LIMITED with a limiter of its own for this call site (5 per 10 s, shared by every
/// instance of the component), for a warning that can repeat in a burst.
#define SLUICE_WARN_RATE_LIMITED(...)                       \
  do {                                                      \
    static ::sluice::RateLimiter sluice_site_limiter_;      \
    SLUICE_WARN_LIMITED(sluice_site_limiter_, __VA_ARGS__); \
  } while (0)

#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/result.h"
#include "lib/parse/timezone.h"

namespace sluice::parse {

/// How event time is written in a field. Formats:
///   "iso8601" / "rfc3339": 2025-06-24T20:30:09.903Z, "2025-06-24 20:30:09", offsets, up to ns;
///   "epoch" (seconds, fraction allowed), "epoch_ms", "epoch_us", "epoch_ns": numbers;
///   a strftime-like pattern: %Y %y %m %d %e %j %H %I %p %M %S %f (fraction, 1-9 digits) %z %Z
///   %b/%h %B (English month names) %a %A (weekday, skipped) %s (epoch s) %T %F %D %% ; a space
///   matches one or more spaces. Without a year (%b %e %H:%M:%S, syslog) the current year is used,
///   or the previous one if that would put the time more than a day in the future.
/// Text without an offset is local time in `zone`.
class TimeFormat {
 public:
  /// The last time text parsed, up to its fraction of a second, and that second: a caller that
  /// keeps one per format (not shared between threads) lets parse() read only the fraction of an
  /// event stamped in the same second as the one before it, which is most events of a busy log.
  class SecondCache {
   public:
    static constexpr std::size_t kMaxPrefix = 48;

   private:
    friend class TimeFormat;
    const TimeFormat* format = nullptr;  // null: empty
    std::int64_t second_ns = 0;          // the prefix's time, without its fraction
    std::size_t len = 0;
    char prefix[kMaxPrefix];
  };

  static Result<TimeFormat> make(std::string_view format, const TimeZone& zone);
  /// The UTC time in nanoseconds, or nullopt if `text` does not match. `now_ns` is used only when
  /// the format has no year.
  std::optional<std::int64_t> parse(std::string_view text, std::int64_t now_ns) const noexcept;
  /// The same result as parse(text, now_ns), faster when `cache` holds the text's second: for
  /// patterns that end in a fraction after '.' or ',' ("%Y-%m-%d %H:%M:%S.%f") and have a year.
  std::optional<std::int64_t> parse(std::string_view text, std::int64_t now_ns,
                                    SecondCache& cache) const noexcept;
  const std::string& spec() const noexcept { return spec_; }
  /// False when parse() never reads `now_ns` (every format with a year, or none at all), so a
  /// caller on a hot path can skip reading the clock.
  bool needs_now() const noexcept { return needs_now_; }

 private:
  enum class Kind : std::uint8_t { iso8601, epoch_s, epoch_ms, epoch_us, epoch_ns, pattern };
  std::optional<std::int64_t> parse_iso(std::string_view text) const noexcept;
  std::optional<std::int64_t> parse_pattern(std::string_view text,
                                            std::int64_t now_ns) const noexcept;

  Kind kind_ = Kind::iso8601;
  bool needs_now_ = false;
  char fraction_sep_ = 0;  // '.' or ',' before a final %f (the only one) of a pattern; 0: none
  std::string spec_;
  TimeZone zone_;
};

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept;

}  // namespace sluice::parse

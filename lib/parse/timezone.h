#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/result.h"

namespace sluice::parse {

/// A time zone for turning local wall-clock text into UTC: UTC, a fixed offset ("+08:00"), or
/// a zone from the system's tz database ("Asia/Shanghai", "local" for /etc/localtime), read
/// from its TZif file once. Lookups are a binary search over the zone's transitions, no locks and
/// no global state (unlike mktime with TZ). Beyond the file's last transition (2037 for Debian's
/// tzdata) the last offset applies.
class TimeZone {
 public:
  TimeZone() = default;  // UTC
  static Result<TimeZone> load(std::string_view name);

  /// Seconds to add to UTC to get local time, at UTC instant `utc_s`.
  std::int64_t offset_at_utc(std::int64_t utc_s) const noexcept;
  /// The UTC instant of local wall-clock second `local_s`. In a gap (spring forward) the offset
  /// before the gap applies; in an overlap (fall back) the earlier instant wins.
  std::int64_t to_utc(std::int64_t local_s) const noexcept;
  const std::string& name() const noexcept { return name_; }

 private:
  std::string name_ = "UTC";
  std::int64_t fixed_ = 0;
  std::vector<std::int64_t> transitions_;  // UTC seconds, ascending
  std::vector<std::int32_t> offsets_;      // offsets_[i] applies from transitions_[i]
  std::int32_t initial_ = 0;               // before the first transition
};

/// Parses "+08:00", "-0530", "+08", "Z"; false if `text` is not an offset.
bool parse_utc_offset(std::string_view text, std::int64_t& seconds) noexcept;

}  // namespace sluice::parse

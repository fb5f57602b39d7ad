#include "lib/parse/time_format.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

namespace sluice::parse {
namespace {

constexpr std::int64_t kNs = 1'000'000'000;

// Seconds and nanoseconds as int64 nanoseconds (years 1678-2261), or nullopt outside that range.
std::optional<std::int64_t> ns_of(std::int64_t s, std::int64_t nanos) {
  constexpr std::int64_t kMax = INT64_MAX / kNs - 1;
  if (s > kMax || s < -kMax) return std::nullopt;
  return s * kNs + nanos;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Reads between min and max digits; false if fewer than min.
bool digits(std::string_view& s, std::size_t min, std::size_t max, std::int64_t& out) {
  std::size_t n = 0;
  std::int64_t v = 0;
  while (n < max && n < s.size() && is_digit(s[n])) {
    if (v > (INT64_MAX - (s[n] - '0')) / 10) return false;  // does not fit: not a time
    v = v * 10 + (s[n] - '0');
    ++n;
  }
  if (n < min) return false;
  s.remove_prefix(n);
  out = v;
  return true;
}

// A fraction of a second: 1-9 digits (more are read and ignored) -> nanoseconds.
bool fraction(std::string_view& s, std::int64_t& ns) {
  std::size_t n = 0;
  std::int64_t v = 0;
  while (n < s.size() && is_digit(s[n])) {
    if (n < 9) v = v * 10 + (s[n] - '0');
    ++n;
  }
  if (n == 0) return false;
  // Scaled to nanoseconds by one multiplication (a loop of them was an eighth of a cached parse).
  static constexpr std::int64_t kScale[10] = {
      1'000'000'000, 100'000'000, 10'000'000, 1'000'000, 100'000, 10'000, 1'000, 100, 10, 1};
  v *= kScale[std::min<std::size_t>(n, 9)];
  s.remove_prefix(n);
  ns = v;
  return true;
}

constexpr std::array<std::string_view, 12> kMonths = {
    "january", "february", "march",     "april",   "may",      "june",
    "july",    "august",   "september", "october", "november", "december"};
constexpr std::array<std::string_view, 7> kDays = {"sunday",   "monday", "tuesday", "wednesday",
                                                   "thursday", "friday", "saturday"};

bool iequal_prefix(std::string_view s, std::string_view word) {
  if (s.size() < word.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != word[i]) return false;
  }
  return true;
}

// A month or weekday name, full or abbreviated to three letters.
template <std::size_t N>
bool name(std::string_view& s, const std::array<std::string_view, N>& names, int& index) {
  for (std::size_t i = 0; i < N; ++i) {
    if (iequal_prefix(s, names[i])) {
      s.remove_prefix(names[i].size());
      index = static_cast<int>(i);
      return true;
    }
  }
  for (std::size_t i = 0; i < N; ++i) {
    if (iequal_prefix(s, names[i].substr(0, 3))) {
      s.remove_prefix(3);
      index = static_cast<int>(i);
      return true;
    }
  }
  return false;
}

bool offset(std::string_view& s, std::int64_t& seconds) {
  if (!s.empty() && (s[0] == 'Z' || s[0] == 'z')) {
    s.remove_prefix(1);
    seconds = 0;
    return true;
  }
  if (s.size() >= 3 && (s[0] == '+' || s[0] == '-')) {
    std::size_t n = 3;
    if (n < s.size() && s[n] == ':') ++n;
    if (n + 2 <= s.size() && is_digit(s[n]) && is_digit(s[n + 1])) {
      n += 2;
    } else if (s[n - 1] == ':') {
      return false;
    } else {
      n = 3;
    }
    if (!parse_utc_offset(s.substr(0, n), seconds)) return false;
    s.remove_prefix(n);
    return true;
  }
  for (std::string_view utc : {"UTC", "GMT"}) {
    if (s.substr(0, 3) == utc) {
      s.remove_prefix(3);
      seconds = 0;
      return true;
    }
  }
  return false;
}

struct Civil {
  std::int64_t year = 1970, month = 1, day = 1, yday = -1, hour = 0, minute = 0, second = 0,
               nanos = 0;
  bool has_offset = false, has_year = false, pm = false, has_ampm = false;
  std::int64_t offset = 0;
};

bool valid(const Civil& c) {
  return c.month >= 1 && c.month <= 12 && c.day >= 1 && c.day <= 31 && c.hour <= 23 &&
         c.minute <= 59 && c.second <= 60;
}

}  // namespace

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

Result<TimeFormat> TimeFormat::make(std::string_view format, const TimeZone& zone) {
  TimeFormat f;
  f.spec_ = std::string(format);
  f.zone_ = zone;
  if (format == "iso8601" || format == "rfc3339") {
    f.kind_ = Kind::iso8601;
  } else if (format == "epoch" || format == "epoch_s") {
    f.kind_ = Kind::epoch_s;
  } else if (format == "epoch_ms") {
    f.kind_ = Kind::epoch_ms;
  } else if (format == "epoch_us") {
    f.kind_ = Kind::epoch_us;
  } else if (format == "epoch_ns") {
    f.kind_ = Kind::epoch_ns;
  } else if (format.find('%') != std::string_view::npos) {
    f.kind_ = Kind::pattern;
    f.needs_now_ = true;
    for (std::size_t i = 0; i < format.size(); ++i) {
      if (format[i] != '%') continue;
      if (i + 1 == format.size())
        return Status(Errc::config, "time format \"" + f.spec_ + "\" ends with a lone '%'");
      const char d = format[++i];
      // A year (or an epoch, or a day of the year, which ignore it) means now_ns is not read.
      if (std::string_view("YyFDsj").find(d) != std::string_view::npos) f.needs_now_ = false;
      if (std::string_view("YymdejHIpMSfzZbhBaAsTFD%").find(d) == std::string_view::npos) {
        return Status(Errc::config, "time format \"" + f.spec_ + "\": unsupported directive %" +
                                        std::string(1, d));
      }
    }
    // A final "<sep>%f": the text before the separator decides the second alone, since no
    // directive reads a '.' or ',' (only a literal one matches it) nor looks past one.
    const std::size_t n = format.size();
    if (n >= 3 && format.substr(n - 2) == "%f" && (format[n - 3] == '.' || format[n - 3] == ',') &&
        (n < 4 || format[n - 4] != '%') && format.find("%f") == n - 2 && !f.needs_now_) {
      f.fraction_sep_ = format[n - 3];
    }
  } else {
    return Status(Errc::config, "\"" + f.spec_ +
                                    "\" is not a time format (use \"iso8601\", \"rfc3339\", "
                                    "\"epoch\", \"epoch_ms\", \"epoch_us\", \"epoch_ns\" or a "
                                    "pattern such as \"%Y-%m-%d %H:%M:%S.%f\")");
  }
  return f;
}

std::optional<std::int64_t> TimeFormat::parse(std::string_view text,
                                              std::int64_t now_ns) const noexcept {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  if (text.empty()) return std::nullopt;
  switch (kind_) {
    case Kind::iso8601:
      return parse_iso(text);
    case Kind::pattern:
      return parse_pattern(text, now_ns);
    default:
      break;
  }
  // Epoch numbers: an optional sign, digits, and a fraction (any unit).
  bool neg = false;
  if (text[0] == '-') {
    neg = true;
    text.remove_prefix(1);
  }
  std::int64_t whole = 0;
  if (text.empty() || text.size() > 19 || !digits(text, 1, 19, whole)) return std::nullopt;
  std::int64_t frac_ns = 0;
  if (!text.empty() && text[0] == '.') {
    text.remove_prefix(1);
    if (!fraction(text, frac_ns)) return std::nullopt;
  }
  if (!text.empty()) return std::nullopt;
  std::int64_t unit = kNs;
  if (kind_ == Kind::epoch_ms) unit = 1'000'000;
  if (kind_ == Kind::epoch_us) unit = 1'000;
  if (kind_ == Kind::epoch_ns) unit = 1;
  if (whole > INT64_MAX / unit) return std::nullopt;
  const std::int64_t v = whole * unit + frac_ns / (kNs / unit);
  return neg ? -v : v;
}

std::optional<std::int64_t> TimeFormat::parse(std::string_view text, std::int64_t now_ns,
                                              SecondCache& cache) const noexcept {
  if (fraction_sep_ == 0) return parse(text, now_ns);
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  // A match is <prefix><sep><digits>: the separator is the last one in the text.
  const std::size_t sep = text.rfind(fraction_sep_);
  if (sep == std::string_view::npos || sep + 1 == text.size() || sep > SecondCache::kMaxPrefix) {
    return parse(text, now_ns);
  }
  std::string_view frac = text.substr(sep + 1);
  for (const char c : frac) {
    if (!is_digit(c)) return parse(text, now_ns);  // not a match, said by the full parse
  }
  std::int64_t nanos = 0;
  fraction(frac, nanos);
  if (cache.format == this && cache.len == sep && std::memcmp(cache.prefix, text.data(), sep) == 0)
    return cache.second_ns + nanos;
  const auto t = parse(text, now_ns);
  if (t) {
    cache.format = this;
    cache.len = sep;
    std::memcpy(cache.prefix, text.data(), sep);
    cache.second_ns = *t - nanos;  // every result is seconds * 10^9 + the fraction's nanoseconds
  } else {
    cache.format = nullptr;
  }
  return t;
}

std::optional<std::int64_t> TimeFormat::parse_iso(std::string_view s) const noexcept {
  Civil c;
  if (!digits(s, 4, 4, c.year) || s.empty() || s[0] != '-') return std::nullopt;
  s.remove_prefix(1);
  if (!digits(s, 2, 2, c.month) || s.empty() || s[0] != '-') return std::nullopt;
  s.remove_prefix(1);
  if (!digits(s, 2, 2, c.day)) return std::nullopt;
  if (!s.empty()) {
    if (s[0] != 'T' && s[0] != 't' && s[0] != ' ') return std::nullopt;
    s.remove_prefix(1);
    if (!digits(s, 2, 2, c.hour) || s.empty() || s[0] != ':') return std::nullopt;
    s.remove_prefix(1);
    if (!digits(s, 2, 2, c.minute)) return std::nullopt;
    if (!s.empty() && s[0] == ':') {
      s.remove_prefix(1);
      if (!digits(s, 2, 2, c.second)) return std::nullopt;
      if (!s.empty() && (s[0] == '.' || s[0] == ',')) {
        s.remove_prefix(1);
        if (!fraction(s, c.nanos)) return std::nullopt;
      }
    }
    if (!s.empty() && s[0] == ' ') s.remove_prefix(1);
    if (!s.empty()) {
      if (!offset(s, c.offset)) return std::nullopt;
      c.has_offset = true;
    }
  }
  if (!s.empty() || !valid(c)) return std::nullopt;
  const std::int64_t local =
      days_from_civil(c.year, static_cast<unsigned>(c.month), static_cast<unsigned>(c.day)) *
          86400 +
      c.hour * 3600 + c.minute * 60 + c.second;
  const std::int64_t utc = c.has_offset ? local - c.offset : zone_.to_utc(local);
  return ns_of(utc, c.nanos);
}

std::optional<std::int64_t> TimeFormat::parse_pattern(std::string_view s,
                                                      std::int64_t now_ns) const noexcept {
  Civil c;
  std::optional<std::int64_t> epoch;
  std::string_view f = spec_;
  int index = 0;
  while (!f.empty()) {
    const char fc = f[0];
    if (fc == ' ') {
      f.remove_prefix(1);
      if (s.empty() || s[0] != ' ') return std::nullopt;
      while (!s.empty() && s[0] == ' ') s.remove_prefix(1);
      continue;
    }
    if (fc != '%') {
      if (s.empty() || s[0] != fc) return std::nullopt;
      s.remove_prefix(1);
      f.remove_prefix(1);
      continue;
    }
    const char d = f[1];
    f.remove_prefix(2);
    bool ok = true;
    switch (d) {
      case 'Y':
        ok = digits(s, 4, 4, c.year);
        c.has_year = true;
        break;
      case 'y':
        ok = digits(s, 2, 2, c.year);
        c.year += c.year < 69 ? 2000 : 1900;
        c.has_year = true;
        break;
      case 'm':
        ok = digits(s, 1, 2, c.month);
        break;
      case 'e':
        if (!s.empty() && s[0] == ' ') s.remove_prefix(1);
        ok = digits(s, 1, 2, c.day);
        break;
      case 'd':
        ok = digits(s, 1, 2, c.day);
        break;
      case 'j':
        ok = digits(s, 1, 3, c.yday) && c.yday >= 1 && c.yday <= 366;
        break;
      case 'H':
        ok = digits(s, 1, 2, c.hour);
        break;
      case 'I':
        ok = digits(s, 1, 2, c.hour) && c.hour >= 1 && c.hour <= 12;
        break;
      case 'p':
        if (iequal_prefix(s, "am") || iequal_prefix(s, "pm")) {
          c.pm = s[0] == 'p' || s[0] == 'P';
          c.has_ampm = true;
          s.remove_prefix(2);
        } else {
          ok = false;
        }
        break;
      case 'M':
        ok = digits(s, 1, 2, c.minute);
        break;
      case 'S':
        ok = digits(s, 1, 2, c.second);
        break;
      case 'f':
        ok = fraction(s, c.nanos);
        break;
      case 'z':
      case 'Z':
        ok = offset(s, c.offset);
        c.has_offset = true;
        break;
      case 'b':
      case 'h':
      case 'B':
        ok = name(s, kMonths, index);
        c.month = index + 1;
        break;
      case 'a':
      case 'A':
        ok = name(s, kDays, index);
        break;
      case 's': {
        std::int64_t v = 0;
        ok = digits(s, 1, 19, v);
        epoch = v;
        break;
      }
      case 'T':
        ok = digits(s, 1, 2, c.hour) && !s.empty() && s[0] == ':';
        if (ok) s.remove_prefix(1);
        ok = ok && digits(s, 1, 2, c.minute) && !s.empty() && s[0] == ':';
        if (ok) s.remove_prefix(1);
        ok = ok && digits(s, 1, 2, c.second);
        break;
      case 'F':
        ok = digits(s, 4, 4, c.year) && !s.empty() && s[0] == '-';
        if (ok) s.remove_prefix(1);
        ok = ok && digits(s, 1, 2, c.month) && !s.empty() && s[0] == '-';
        if (ok) s.remove_prefix(1);
        ok = ok && digits(s, 1, 2, c.day);
        c.has_year = true;
        break;
      case 'D':
        ok = digits(s, 1, 2, c.month) && !s.empty() && s[0] == '/';
        if (ok) s.remove_prefix(1);
        ok = ok && digits(s, 1, 2, c.day) && !s.empty() && s[0] == '/';
        if (ok) s.remove_prefix(1);
        ok = ok && digits(s, 2, 2, c.year);
        c.year += c.year < 69 ? 2000 : 1900;
        c.has_year = true;
        break;
      case '%':
        ok = !s.empty() && s[0] == '%';
        if (ok) s.remove_prefix(1);
        break;
      default:
        ok = false;
    }
    if (!ok) return std::nullopt;
  }
  if (!s.empty()) return std::nullopt;
  if (epoch) return ns_of(*epoch, c.nanos);
  if (c.has_ampm) c.hour = c.hour % 12 + (c.pm ? 12 : 0);
  if (c.yday > 0) {
    // Day of the year: resolved against the year (leap years included).
    const std::int64_t jan1 = days_from_civil(c.year, 1, 1);
    const std::int64_t days = jan1 + c.yday - 1;
    const std::int64_t local = days * 86400 + c.hour * 3600 + c.minute * 60 + c.second;
    const std::int64_t utc = c.has_offset ? local - c.offset : zone_.to_utc(local);
    return ns_of(utc, c.nanos);
  }
  if (!valid(c)) return std::nullopt;
  const auto compute = [&](std::int64_t year) {
    const std::int64_t local =
        days_from_civil(year, static_cast<unsigned>(c.month), static_cast<unsigned>(c.day)) *
            86400 +
        c.hour * 3600 + c.minute * 60 + c.second;
    return ns_of(c.has_offset ? local - c.offset : zone_.to_utc(local), c.nanos);
  };
  if (c.has_year) return compute(c.year);
  // No year (syslog): this year, unless that is more than a day ahead of now.
  const std::int64_t now_s = now_ns / kNs;
  std::int64_t year = 1970;
  {
    std::int64_t z = now_s / 86400 + 719468;  // civil_from_days, year only
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
    year = yoe + era * 400 + (m <= 2 ? 1 : 0);
  }
  auto t = compute(year);
  if (t && *t > now_ns + 86400 * kNs) t = compute(year - 1);
  return t;
}

}  // namespace sluice::parse

#include "lib/parse/timezone.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

namespace sluice::parse {
namespace {

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}
std::int64_t be64(const unsigned char* p) {
  return static_cast<std::int64_t>((std::uint64_t{be32(p)} << 32) | be32(p + 4));
}

struct TzifCounts {
  std::uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

bool read_counts(const unsigned char* p, std::size_t n, TzifCounts& c) {
  if (n < 44 || std::memcmp(p, "TZif", 4) != 0) return false;
  c = {be32(p + 20), be32(p + 24), be32(p + 28), be32(p + 32), be32(p + 36), be32(p + 40)};
  return true;
}

std::size_t data_size(const TzifCounts& c, std::size_t time_bytes) {
  return c.timecnt * time_bytes + c.timecnt + c.typecnt * 6 + c.charcnt +
         c.leapcnt * (time_bytes + 4) + c.isstdcnt + c.isutcnt;
}

bool valid_zone_name(std::string_view name) {
  if (name.empty() || name.front() == '/' || name.find("..") != std::string_view::npos)
    return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '/' || ch == '_' || ch == '-' || ch == '+';
  });
}

}  // namespace

bool parse_utc_offset(std::string_view t, std::int64_t& seconds) noexcept {
  if (t == "Z" || t == "z") {
    seconds = 0;
    return true;
  }
  if (t.size() < 3 || (t[0] != '+' && t[0] != '-')) return false;
  auto digit = [](char ch) { return ch >= '0' && ch <= '9'; };
  if (!digit(t[1]) || !digit(t[2])) return false;
  std::int64_t h = (t[1] - '0') * 10 + (t[2] - '0');
  std::int64_t m = 0;
  std::string_view rest = t.substr(3);
  if (!rest.empty() && rest[0] == ':') rest.remove_prefix(1);
  if (!rest.empty()) {
    if (rest.size() != 2 || !digit(rest[0]) || !digit(rest[1])) return false;
    m = (rest[0] - '0') * 10 + (rest[1] - '0');
  }
  if (h > 23 || m > 59) return false;
  seconds = (h * 3600 + m * 60) * (t[0] == '-' ? -1 : 1);
  return true;
}

Result<TimeZone> TimeZone::load(std::string_view name) {
  TimeZone tz;
  tz.name_ = std::string(name);
  if (name.empty() || name == "UTC" || name == "utc" || name == "Z") return tz;
  if (parse_utc_offset(name, tz.fixed_)) return tz;
  std::string path;
  if (name == "local" || name == "Local") {
    path = "/etc/localtime";
  } else if (valid_zone_name(name)) {
    path = "/usr/share/zoneinfo/" + std::string(name);
  } else {
    return Status(Errc::config, "\"" + std::string(name) +
                                    "\" is not a time zone (use \"UTC\", \"local\", an offset "
                                    "such as \"+08:00\" or a name such as \"Asia/Shanghai\")");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status(Errc::config, "unknown time zone \"" + std::string(name) + "\" (no " + path +
                                    "; is the tzdata package installed?)");
  }
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  const auto bad = [&] { return Status(Errc::config, path + " is not a TZif time zone file"); };
  TzifCounts c{};
  if (!read_counts(bytes.data(), bytes.size(), c)) return bad();
  const unsigned char* p = bytes.data() + 44;
  std::size_t left = bytes.size() - 44;
  std::size_t time_bytes = 4;
  if (bytes[4] >= '2') {
    // Skip the 32-bit block; the 64-bit one follows with its own header.
    const std::size_t skip = data_size(c, 4);
    if (left < skip) return bad();
    p += skip;
    left -= skip;
    if (!read_counts(p, left, c)) return bad();
    p += 44;
    left -= 44;
    time_bytes = 8;
  }
  if (left < data_size(c, time_bytes) || c.typecnt == 0) return bad();
  const unsigned char* times = p;
  const unsigned char* idx = times + c.timecnt * time_bytes;
  const unsigned char* types = idx + c.timecnt;
  std::vector<std::int32_t> utoff(c.typecnt);
  for (std::uint32_t i = 0; i < c.typecnt; ++i)
    utoff[i] = static_cast<std::int32_t>(be32(types + i * 6));
  tz.initial_ = utoff[0];
  for (std::uint32_t i = 0; i < c.timecnt; ++i) {
    const std::int64_t t =
        time_bytes == 8 ? be64(times + i * 8) : static_cast<std::int32_t>(be32(times + i * 4));
    if (idx[i] >= c.typecnt) return bad();
    tz.transitions_.push_back(t);
    tz.offsets_.push_back(utoff[idx[i]]);
  }
  if (tz.transitions_.empty()) tz.fixed_ = tz.initial_;
  return tz;
}

std::int64_t TimeZone::offset_at_utc(std::int64_t utc_s) const noexcept {
  if (transitions_.empty()) return fixed_;
  const auto it = std::upper_bound(transitions_.begin(), transitions_.end(), utc_s);
  if (it == transitions_.begin()) return initial_;
  return offsets_[static_cast<std::size_t>(it - transitions_.begin()) - 1];
}

std::int64_t TimeZone::to_utc(std::int64_t local_s) const noexcept {
  if (transitions_.empty()) return local_s - fixed_;
  // Try the offsets in force just before and after the candidate instants; prefer the earliest
  // instant whose offset maps back to local_s.
  const std::int64_t a = local_s - offset_at_utc(local_s - 86400);
  const std::int64_t b = local_s - offset_at_utc(local_s + 86400);
  const std::int64_t lo = std::min(a, b), hi = std::max(a, b);
  if (lo + offset_at_utc(lo) == local_s) return lo;
  if (hi + offset_at_utc(hi) == local_s) return hi;
  return local_s - offset_at_utc(lo);  // in a gap: the offset before it
}

}  // namespace sluice::parse

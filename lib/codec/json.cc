#include "lib/codec/json.h"

#include <cstring>
#include <ctime>

namespace sluice::codec {
namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid.
std::size_t utf8_len(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  auto cont = [&](std::size_t k) {
    return i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
  };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    const auto c1 = static_cast<unsigned char>(s[i + 1]);
    if (c == 0xE0 && c1 < 0xA0) return 0;  // overlong
    if (c == 0xED && c1 > 0x9F) return 0;  // surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const auto c1 = static_cast<unsigned char>(s[i + 1]);
    if (c == 0xF0 && c1 < 0x90) return 0;
    if (c == 0xF4 && c1 > 0x8F) return 0;
    return 4;
  }
  return 0;
}

}  // namespace

namespace {

// True if any byte of the 8 in `w` needs more than a copy: a control byte (< 0x20), a byte of a
// multi-byte UTF-8 sequence (>= 0x80, checked for validity one by one), '"' or '\\'.
inline bool needs_care(std::uint64_t w) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL, kHigh = 0x8080808080808080ULL;
  const std::uint64_t below_space = (w - kOnes * 0x20) & ~w;
  const std::uint64_t q = w ^ (kOnes * '"'), b = w ^ (kOnes * '\\');
  const std::uint64_t quote = (q - kOnes) & ~q, backslash = (b - kOnes) & ~b;
  return ((below_space | quote | backslash | w) & kHigh) != 0;
}

inline bool plain(unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (plain(c)) {
      // Copy the run of plain ASCII in one go, scanning eight bytes at a time.
      std::size_t j = i + 1;
      while (j + 8 <= s.size()) {
        std::uint64_t w;
        std::memcpy(&w, s.data() + j, 8);
        if (needs_care(w)) break;
        j += 8;
      }
      while (j < s.size() && plain(static_cast<unsigned char>(s[j]))) ++j;
      out.append(s.data() + i, j - i);
      i = j;
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        ++i;
        continue;
      case '\\':
        out += "\\\\";
        ++i;
        continue;
      case '\n':
        out += "\\n";
        ++i;
        continue;
      case '\r':
        out += "\\r";
        ++i;
        continue;
      case '\t':
        out += "\\t";
        ++i;
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      ++i;
      continue;
    }
    const std::size_t n = utf8_len(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
}

void append_rfc3339(std::string& out, std::int64_t ns) {
  std::int64_t secs = ns / 1'000'000'000;
  std::int64_t frac = ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  // Events of a batch mostly share their second: format the date and time once per second.
  thread_local std::int64_t cached_secs = -1;
  thread_local char cached[48];
  thread_local std::size_t cached_len = 0;
  if (secs != cached_secs || cached_len == 0) {
    const std::time_t t = static_cast<std::time_t>(secs);
    std::tm tm{};
    gmtime_r(&t, &tm);
    cached_len = std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_secs = secs;
  }
  out.append(cached, cached_len);
  char fbuf[11] = {'.'};
  for (int k = 9; k >= 1; --k) {
    fbuf[k] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  fbuf[10] = 'Z';
  out.append(fbuf, sizeof fbuf);
}

void encode_batch(const Batch& batch, OutputFormat format, std::string& out) {
  if (format == OutputFormat::body) {
    for (std::size_t i = 0; i < batch.size(); ++i) {
      out += batch[i].body();
      out += '\n';
    }
    return;
  }
  char idbuf[24];
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const EventView e = batch[i];
    out += "{\"timestamp\":\"";
    append_rfc3339(out, e.timestamp_ns());
    static constexpr char kHexDigits[] = "0123456789abcdef";
    std::uint64_t id = e.id();
    for (int k = 15; k >= 0; --k) {
      idbuf[k] = kHexDigits[id & 15];
      id >>= 4;
    }
    out += "\",\"id\":\"";
    out.append(idbuf, 16);
    out += "\",\"headers\":{";
    for (std::size_t h = 0; h < e.header_count(); ++h) {
      if (h > 0) out += ',';
      const Header hd = e.header(h);
      out += '"';
      append_json_string(out, hd.key);
      out += "\":\"";
      append_json_string(out, hd.value);
      out += '"';
    }
    out += "},\"fields\":{";
    for (std::size_t f = 0; f < e.field_count(); ++f) {
      if (f > 0) out += ',';
      const Field fd = e.field(f);
      out += '"';
      append_json_string(out, fd.key);
      out += "\":";
      if (fd.type == FieldType::string) {
        out += '"';
        append_json_string(out, fd.text);
        out += '"';
      } else if (fd.type == FieldType::null) {
        out += "null";
      } else {
        out += fd.text;
      }
    }
    out += "},\"body\":\"";
    append_json_string(out, e.body());
    out += "\"}\n";
  }
}

}  // namespace sluice::codec

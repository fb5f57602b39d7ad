#include "lib/codec/json.h"

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

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      // Copy the run of plain ASCII in one go.
      std::size_t j = i + 1;
      while (j < s.size()) {
        const auto d = static_cast<unsigned char>(s[j]);
        if (d < 0x20 || d >= 0x80 || d == '"' || d == '\\') break;
        ++j;
      }
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
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[48];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  out.append(buf, n);
  char fbuf[16];
  const int m = std::snprintf(fbuf, sizeof fbuf, ".%09lldZ", static_cast<long long>(frac));
  out.append(fbuf, static_cast<std::size_t>(m));
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
    const int n =
        std::snprintf(idbuf, sizeof idbuf, "%016llx", static_cast<unsigned long long>(e.id()));
    out += "\",\"id\":\"";
    out.append(idbuf, static_cast<std::size_t>(n));
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

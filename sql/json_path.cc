#include "sql/json_path.h"

namespace sluice::sql {
namespace {

struct Scanner {
  std::string_view s;
  std::size_t i = 0;
  int depth = 0;

  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  /// At a '"': the raw contents (escapes kept) and whether any escape occurs.
  bool string(std::string_view& raw, bool& escaped) {
    if (i >= s.size() || s[i] != '"') return false;
    const std::size_t start = ++i;
    escaped = false;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\') {
        escaped = true;
        ++i;
      }
      ++i;
    }
    if (i >= s.size()) return false;
    raw = s.substr(start, i - start);
    ++i;
    return true;
  }
  /// Skips one value of any kind; `begin` is where it started.
  bool skip(std::size_t& begin) {
    ws();
    begin = i;
    if (i >= s.size()) return false;
    const char c = s[i];
    if (c == '"') {
      std::string_view raw;
      bool esc;
      return string(raw, esc);
    }
    if (c == '{' || c == '[') {
      if (++depth > 64) return false;
      int level = 0;
      while (i < s.size()) {
        const char d = s[i];
        if (d == '"') {
          std::string_view raw;
          bool esc;
          if (!string(raw, esc)) return false;
          continue;
        }
        if (d == '{' || d == '[') ++level;
        if (d == '}' || d == ']') {
          if (--level == 0) {
            ++i;
            --depth;
            return true;
          }
        }
        ++i;
      }
      return false;
    }
    while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' &&
           s[i] != '\n' && s[i] != '\t' && s[i] != '\r') {
      ++i;
    }
    return i > begin;
  }
};

/// Unescapes JSON string contents (\uXXXX as UTF-8; surrogate pairs combined).
std::string_view unescape(std::string_view raw, Arena& arena) {
  char* out = arena.allocate(raw.size() + 1);
  std::size_t n = 0;
  auto hex4 = [&](std::size_t at, unsigned& v) {
    if (at + 4 > raw.size()) return false;
    v = 0;
    for (std::size_t k = at; k < at + 4; ++k) {
      const char c = raw[k];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    return true;
  };
  for (std::size_t k = 0; k < raw.size(); ++k) {
    if (raw[k] != '\\' || k + 1 >= raw.size()) {
      out[n++] = raw[k];
      continue;
    }
    const char e = raw[++k];
    switch (e) {
      case 'n':
        out[n++] = '\n';
        break;
      case 't':
        out[n++] = '\t';
        break;
      case 'r':
        out[n++] = '\r';
        break;
      case 'b':
        out[n++] = '\b';
        break;
      case 'f':
        out[n++] = '\f';
        break;
      case 'u': {
        unsigned cp = 0;
        if (!hex4(k + 1, cp)) {
          out[n++] = 'u';
          break;
        }
        k += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && k + 6 < raw.size() + 0 && raw[k + 1] == '\\' &&
            raw[k + 2] == 'u') {
          unsigned lo = 0;
          if (hex4(k + 3, lo) && lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            k += 6;
          }
        }
        // At most 4 bytes from at least 6 escaped ones: fits in place.
        if (cp < 0x80) {
          out[n++] = static_cast<char>(cp);
        } else if (cp < 0x800) {
          out[n++] = static_cast<char>(0xC0 | (cp >> 6));
          out[n++] = static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
          out[n++] = static_cast<char>(0xE0 | (cp >> 12));
          out[n++] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          out[n++] = static_cast<char>(0x80 | (cp & 0x3F));
        } else {
          out[n++] = static_cast<char>(0xF0 | (cp >> 18));
          out[n++] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
          out[n++] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          out[n++] = static_cast<char>(0x80 | (cp & 0x3F));
        }
        break;
      }
      default:
        out[n++] = e;
        break;  // \" \\ \/
    }
  }
  return {out, n};
}

}  // namespace

bool json_lookup(std::string_view json, std::string_view path, Arena& arena, std::string_view& text,
                 FieldType& type) {
  Scanner sc{json};
  for (;;) {
    const std::size_t dot = path.find('.');
    const std::string_view want = path.substr(0, dot);
    sc.ws();
    if (sc.i >= sc.s.size() || sc.s[sc.i] != '{') return false;
    ++sc.i;
    bool found = false;
    for (;;) {
      sc.ws();
      if (sc.i < sc.s.size() && sc.s[sc.i] == '}') return false;
      std::string_view raw;
      bool escaped = false;
      if (!sc.string(raw, escaped)) return false;
      const std::string_view key = escaped ? unescape(raw, arena) : raw;
      sc.ws();
      if (sc.i >= sc.s.size() || sc.s[sc.i] != ':') return false;
      ++sc.i;
      if (key == want) {
        found = true;
        break;
      }
      std::size_t begin = 0;
      if (!sc.skip(begin)) return false;
      sc.ws();
      if (sc.i < sc.s.size() && sc.s[sc.i] == ',') {
        ++sc.i;
        continue;
      }
      return false;
    }
    if (!found) return false;
    if (dot != std::string_view::npos) {  // descend into the member's object
      path.remove_prefix(dot + 1);
      continue;
    }
    sc.ws();
    std::size_t begin = 0;
    if (sc.i < sc.s.size() && sc.s[sc.i] == '"') {
      std::string_view raw;
      bool escaped = false;
      if (!sc.string(raw, escaped)) return false;
      text = escaped ? unescape(raw, arena) : raw;
      type = FieldType::string;
      return true;
    }
    if (!sc.skip(begin)) return false;
    text = json.substr(begin, sc.i - begin);
    const char c = text[0];
    if (c == '{' || c == '[') {
      type = FieldType::json;
    } else if (text == "true" || text == "false") {
      type = FieldType::boolean;
    } else if (text == "null") {
      type = FieldType::null;
    } else if (text.find_first_of(".eE") != std::string_view::npos) {
      type = FieldType::floating;
    } else {
      type = FieldType::integer;
    }
    return true;
  }
}

}  // namespace sluice::sql

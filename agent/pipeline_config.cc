#include "agent/pipeline_config.h"

namespace sluice {
namespace {

bool continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// How many UTF-8 bytes the escape \uXXXX or \UXXXXXXXX at `p` decodes to (0 if malformed).
std::size_t unicode_escape_bytes(std::string_view text, std::size_t p, std::size_t digits) {
  if (p + digits > text.size()) return 0;
  std::uint32_t cp = 0;
  for (std::size_t i = 0; i < digits; ++i) {
    const int v = hex_value(text[p + i]);
    if (v < 0) return 0;
    cp = (cp << 4) | static_cast<std::uint32_t>(v);
  }
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

}  // namespace

TomlStringMap::TomlStringMap(std::string_view file_text, std::uint32_t line, std::uint32_t column)
    : text_(file_text), line_(line), column_(column) {
  if (line == 0 || column == 0) return;
  std::size_t p = 0;
  for (std::uint32_t l = 1; l < line; ++l) {
    p = text_.find('\n', p);
    if (p == std::string_view::npos) return;
    ++p;
  }
  // toml++ counts columns in characters: step over column - 1 of them.
  for (std::uint32_t c = 1; c < column && p < text_.size(); ++c) {
    ++p;
    while (p < text_.size() && continuation(text_[p])) ++p;
  }
  if (p < text_.size() && (text_[p] == '"' || text_[p] == '\'')) open_ = p;
}

std::pair<std::uint32_t, std::uint32_t> TomlStringMap::position(std::size_t offset) const {
  if (open_ == std::string_view::npos) return {line_, column_};
  const char quote = text_[open_];
  const bool multi = text_.substr(open_, 3) == std::string_view(quote == '"' ? "\"\"\"" : "'''");
  const bool basic = quote == '"';
  std::size_t p = open_ + (multi ? 3 : 1);
  // A newline right after the opening delimiter of a multi-line string is not part of it.
  if (multi) {
    if (text_.substr(p, 1) == "\n") {
      p += 1;
    } else if (text_.substr(p, 2) == "\r\n") {
      p += 2;
    }
  }
  const std::string_view close = multi ? text_.substr(open_, 3) : text_.substr(open_, 1);
  std::size_t decoded = 0;
  while (p < text_.size()) {
    if (text_.substr(p, close.size()) == close) {
      // A multi-line string may end with one or two quotes before its closing delimiter.
      if (multi && text_.substr(p + 1, 3) == close) {
        // the quote at p is content
      } else {
        break;
      }
    }
    if (!multi && text_[p] == '\n') break;
    std::size_t raw = 1, out = 1;
    if (basic && text_[p] == '\\' && p + 1 < text_.size()) {
      const char e = text_[p + 1];
      if (e == 'u') {
        raw = 6;
        out = unicode_escape_bytes(text_, p + 2, 4);
      } else if (e == 'U') {
        raw = 10;
        out = unicode_escape_bytes(text_, p + 2, 8);
      } else if (multi && (e == ' ' || e == '\t' || e == '\n' || e == '\r')) {
        // A line-ending backslash: it and the whitespace and newlines after it decode to nothing.
        std::size_t q = p + 1;
        while (q < text_.size() &&
               (text_[q] == ' ' || text_[q] == '\t' || text_[q] == '\n' || text_[q] == '\r')) {
          ++q;
        }
        raw = q - p;
        out = 0;
      } else {
        raw = 2;
      }
    } else if (text_.substr(p, 2) == "\r\n") {
      raw = 2;  // toml++ keeps a multi-line string's line breaks as "\n"
    }
    if (out > 0 && offset < decoded + out) break;
    decoded += out;
    p += raw;
  }
  std::uint32_t line = 1, column = 1;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < p && i < text_.size(); ++i) {
    if (text_[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  for (std::size_t i = line_start; i < p && i < text_.size(); ++i) {
    if (!continuation(text_[i])) ++column;
  }
  return {line, column};
}

}  // namespace sluice

namespace sluice {

sql::RunnerOptions runner_options(const PipelineSpec& spec) {
  sql::RunnerOptions o;
  if (spec.processing_time) {
    o.time_source = sql::TimeSource::processing;
  } else if (!spec.event_time_field.empty()) {
    o.time_source = sql::TimeSource::field;
    o.time_field = spec.event_time_field;
    parse::TimeZone zone;
    if (!spec.event_time_timezone.empty()) {
      if (auto z = parse::TimeZone::load(spec.event_time_timezone)) zone = std::move(*z);
    }
    if (!spec.event_time_format.empty()) {
      auto tf = parse::TimeFormat::make(spec.event_time_format, zone);
      if (tf) o.time_format = std::move(*tf);
    }
  } else if (spec.query && spec.query->watermark_column()) {
    o.time_source = sql::TimeSource::field;
  }
  if (spec.watermark_delay_set) o.watermark_delay_ns = spec.watermark_delay.count();
  o.allowed_lateness_ns = spec.allowed_lateness.count();
  o.max_state_bytes = spec.max_state_bytes;
  o.distinct_exact_limit = spec.distinct_exact_limit;
  o.agent_name = spec.agent_name;
  return o;
}

std::size_t sql_name_offset(std::string_view sql, std::string_view keyword, std::string_view name) {
  auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
  auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  for (std::size_t i = 0; i + keyword.size() <= sql.size(); ++i) {
    bool match = (i == 0 || !word(sql[i - 1]));
    for (std::size_t k = 0; match && k < keyword.size(); ++k)
      match = lower(sql[i + k]) == lower(keyword[k]);
    if (!match) continue;
    std::size_t p = i + keyword.size();
    if (p < sql.size() && word(sql[p])) continue;
    while (p < sql.size() && (sql[p] == ' ' || sql[p] == '\t' || sql[p] == '\n' || sql[p] == '\r'))
      ++p;
    std::size_t q = p;
    if (q < sql.size() && (sql[q] == '"' || sql[q] == '`')) ++q;
    if (sql.substr(q, name.size()) == name) return q;
  }
  return std::string_view::npos;
}

}  // namespace sluice

#pragma once

#include <simdjson.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/result.h"
#include "lib/parse/draft.h"
#include "lib/parse/regex.h"

namespace sluice::parse {

/// Why a record did not parse; the `reason` label of sluice_source_parse_errors_total.
enum class ParseError : std::uint8_t {
  none,
  json_syntax,
  json_utf8,
  json_depth,
  json_not_object,
  json_unwrap,
  regex_no_match,
  regex_limit,
  logfmt_syntax,
  container_syntax,
};
inline constexpr std::size_t kParseErrorCount = 10;
std::string_view reason_name(ParseError e) noexcept;

/// Turns a record's text into fields of a Draft.
class Format {
 public:
  virtual ~Format() = default;
  virtual ParseError parse(std::string_view text, Draft& d) = 0;
};

/// Buffer with simdjson's required padding after the text.
class PaddedBuffer {
 public:
  simdjson::padded_string_view load(std::string_view text);
  /// Where the copy of the text last loaded begins.
  const char* data() const noexcept { return buf_.data(); }

 private:
  std::vector<char> buf_;
};

struct JsonOptions {
  /// Fields to extract, as dotted paths ("user.id"); empty: every top-level member.
  std::vector<std::string> fields;
  /// A string field holding JSON text whose members become fields (replacing it).
  std::string unwrap;
  std::uint32_t max_depth = 64;
};

/// JSON objects with simdjson's on-demand parser. With `fields`, only those values are read and
/// the rest of the object is skipped unparsed, stopping at the last one found; otherwise every
/// top-level member becomes a field (objects and arrays as their JSON text). Strings are
/// unescaped; numbers, booleans and null keep their text.
class JsonFormat final : public Format {
 public:
  explicit JsonFormat(JsonOptions options);
  ParseError parse(std::string_view text, Draft& d) override;

 private:
  ParseError parse_doc(simdjson::ondemand::parser& parser, PaddedBuffer& buf, std::string_view text,
                       Draft& d, bool selected);
  ParseError extract(simdjson::ondemand::object& obj, const std::vector<std::size_t>& wanted,
                     std::size_t level, Draft& d, std::size_t& remaining);

  JsonOptions options_;
  std::vector<std::vector<std::string>> paths_;  // fields split at '.'
  std::vector<std::size_t> all_paths_;           // 0..paths_.size()-1
  std::vector<std::pair<std::vector<std::size_t>, std::vector<std::size_t>>> scratch_;
  simdjson::ondemand::parser parser_, inner_parser_;
  PaddedBuffer buf_, inner_buf_;
};

/// PCRE2 named groups become string fields. Several patterns are tried in order (the ready
/// pattern "syslog" is RFC 5424, then RFC 3164); groups that did not participate are left out.
class RegexFormat final : public Format {
 public:
  static Result<std::unique_ptr<RegexFormat>> make(std::string_view pattern_or_name,
                                                   std::uint32_t match_limit);
  ParseError parse(std::string_view text, Draft& d) override;

 private:
  std::vector<Regex> regexes_;
};

/// The ready patterns by name: "common", "combined", "syslog", "syslog_rfc3164",
/// "syslog_rfc5424". Empty if `name` is not one.
std::vector<std::string_view> ready_patterns(std::string_view name);
std::vector<std::string_view> ready_pattern_names();

/// key=value pairs separated by spaces; values may be double-quoted with \" \\ \n \t escapes; a
/// bare key is the boolean true.
class LogfmtFormat final : public Format {
 public:
  ParseError parse(std::string_view text, Draft& d) override;
};

}  // namespace sluice::parse

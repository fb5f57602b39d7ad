#include "lib/parse/formats.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <array>
#include <cstring>

namespace sluice::parse {
namespace {

namespace od = simdjson::ondemand;

std::string_view trim(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

ParseError json_error(simdjson::error_code e) {
  switch (e) {
    case simdjson::UTF8_ERROR:
      return ParseError::json_utf8;
    case simdjson::DEPTH_ERROR:
      return ParseError::json_depth;
    case simdjson::INCORRECT_TYPE:
      return ParseError::json_not_object;
    default:
      return ParseError::json_syntax;
  }
}

// Nesting depth of a JSON object or array text (strings skipped).
std::uint32_t depth_of(std::string_view json) {
  std::uint32_t depth = 0, max = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max = std::max(max, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max;
}

// The first '"' or '\\' at or after `p`, inside a string of the document: stage 1 has checked that
// every string the document opens is closed, so there is a '"' ahead. With SSE2, 16 bytes at a
// time: such a block may reach past the closing quote, at most into the document's padding.
const char* quote_or_backslash(const char* p) noexcept {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
  for (;; p += 16) {
    const __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const int hits = _mm_movemask_epi8(
        _mm_or_si128(_mm_cmpeq_epi8(block, quote), _mm_cmpeq_epi8(block, backslash)));
    if (hits != 0) return p + __builtin_ctz(static_cast<unsigned>(hits));
  }
#else
  while (*p != '"' && *p != '\\') ++p;
  return p;
#endif
}

// A member's key. Without a backslash (the usual case) it is the bytes between its quotes in the
// document, used in place: no call into simdjson's unescaper and no copy.
simdjson::error_code key_of(od::field& f, std::string_view& key) {
  const char* const start = f.key().raw();
  const char* const end = quote_or_backslash(start);
  if (*end == '"') {
    key = std::string_view(start, static_cast<std::size_t>(end - start));
    return simdjson::SUCCESS;
  }
  return f.unescaped_key().get(key);
}

// A string value: without escapes, its bytes in the document (stage 1 has already validated their
// UTF-8 and refused control characters, all that unescaping would check); otherwise unescaped.
simdjson::error_code string_of(od::value& v, std::string_view& text) {
  const char* const begin = v.raw_json_token().data() + 1;  // after the opening quote
  const char* const end = quote_or_backslash(begin);
  if (*end == '"') {
    // Consumed (without unescaping) all the same: an unconsumed string followed by ':' would be
    // skipped as if it were a key, accepting {"a":"b":1}.
    od::raw_json_string raw;
    if (auto e = v.get_raw_json_string().get(raw)) return e;
    text = std::string_view(begin, static_cast<std::size_t>(end - begin));
    return simdjson::SUCCESS;
  }
  return v.get_string().get(text);
}

// Reads one value into the draft as a field named `key`.
ParseError add_value(od::value& v, std::string_view key, Draft& d, std::uint32_t max_depth,
                     std::uint32_t depth) {
  od::json_type type{};
  if (auto e = v.type().get(type)) return json_error(e);
  std::string_view text;
  FieldType ft = FieldType::string;
  switch (type) {
    case od::json_type::string:
      if (auto e = string_of(v, text)) return json_error(e);
      break;
    case od::json_type::object: {
      od::object o;
      if (auto e = v.get_object().get(o)) return json_error(e);
      if (auto e = o.raw_json().get(text)) return json_error(e);
      ft = FieldType::json;
      break;
    }
    case od::json_type::array: {
      od::array a;
      if (auto e = v.get_array().get(a)) return json_error(e);
      if (auto e = a.raw_json().get(text)) return json_error(e);
      ft = FieldType::json;
      break;
    }
    case od::json_type::number: {
      od::number_type nt{};
      if (auto e = v.get_number_type().get(nt)) return json_error(e);
      ft = nt == od::number_type::floating_point_number ? FieldType::floating : FieldType::integer;
      text = trim(v.raw_json_token());
      break;
    }
    case od::json_type::boolean: {
      bool b = false;
      if (auto e = v.get_bool().get(b)) return json_error(e);
      text = b ? "true" : "false";
      ft = FieldType::boolean;
      break;
    }
    case od::json_type::null: {
      bool null = false;
      if (v.is_null().get(null) || !null) return ParseError::json_syntax;
    }
      text = "null";
      ft = FieldType::null;
      break;
  }
  if (ft == FieldType::json && depth + depth_of(text) > max_depth) return ParseError::json_depth;
  // Written in place: a Field built aside and then copied stalls on the copy's wide loads.
  Field& f = d.fields.emplace_back();
  f.key = key;
  f.text = text;
  f.type = ft;
  return ParseError::none;
}

// The ready patterns. Quoted parts allow backslash escapes (Apache writes \" inside them).
constexpr std::string_view kCommon =
    R"re(^(?<host>\S+) (?<ident>\S+) (?<user>\S+) \[(?<time>[^\]]+)\] )re"
    R"re("(?<method>[A-Z]+) (?<path>[^ "]*)(?: (?<protocol>[^"]*))?" (?<status>\d{3}) (?<size>\d+|-))re";
// Quoted parts are unrolled loops ([^"\\]*(?:\\.[^"\\]*)*): escapes allowed, no backtracking.
constexpr std::string_view kCombinedTail =
    R"re( "(?<referer>[^"\\]*(?:\\.[^"\\]*)*)" "(?<agent>[^"\\]*(?:\\.[^"\\]*)*)")re";
constexpr std::string_view kRfc3164 =
    R"re(^(?:<(?<pri>\d{1,3})>)?(?<time>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?<host>\S+) )re"
    R"re((?<ident>[^:\[ ]+)(?:\[(?<pid>\d+)\])?: ?(?<message>.*)$)re";
constexpr std::string_view kRfc5424 =
    R"re(^<(?<pri>\d{1,3})>(?<version>\d{1,2}) (?<time>\S+) (?<host>\S+) (?<ident>\S+) )re"
    R"re((?<pid>\S+) (?<msgid>\S+) (?<extradata>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?<message>.*))?$)re";

std::string& combined_pattern() {
  static std::string p = std::string(kCommon) + std::string(kCombinedTail);
  return p;
}
std::string& common_pattern() {
  static std::string p = std::string(kCommon) + "$";
  return p;
}

}  // namespace

std::string_view reason_name(ParseError e) noexcept {
  static constexpr std::array<std::string_view, kParseErrorCount> names = {
      "none",        "json_syntax",    "json_utf8",   "json_depth",    "json_not_object",
      "json_unwrap", "regex_no_match", "regex_limit", "logfmt_syntax", "container_syntax"};
  return names[static_cast<std::size_t>(e)];
}

simdjson::padded_string_view PaddedBuffer::load(std::string_view text) {
  if (buf_.size() < text.size() + simdjson::SIMDJSON_PADDING)
    buf_.resize(text.size() + simdjson::SIMDJSON_PADDING);
  if (!text.empty()) std::memcpy(buf_.data(), text.data(), text.size());
  // simdjson 3.0 reads the first padding byte: a '}' there (left by a longer earlier line) makes
  // it check the brackets' balance, so a malformed line would parse or not depending on the line
  // before it. A zero, as in simdjson's own padded_string, makes the outcome the line's own.
  buf_[text.size()] = '\0';
  return simdjson::padded_string_view(buf_.data(), text.size(), buf_.size());
}

JsonFormat::JsonFormat(JsonOptions options) : options_(std::move(options)) {
  for (std::size_t i = 0; i < options_.fields.size(); ++i) all_paths_.push_back(i);
  for (const auto& f : options_.fields) {
    std::vector<std::string> segs;
    std::size_t from = 0;
    while (true) {
      const std::size_t dot = f.find('.', from);
      segs.push_back(f.substr(from, dot == std::string::npos ? std::string::npos : dot - from));
      if (dot == std::string::npos) break;
      from = dot + 1;
    }
    scratch_.resize(std::max(scratch_.size(), segs.size()));
    paths_.push_back(std::move(segs));
  }
}

ParseError JsonFormat::parse(std::string_view text, Draft& d) {
  const ParseError e = parse_doc(parser_, buf_, text, d, !paths_.empty());
  // The fields' views into the parser's copy of the line stand for the line's own bytes.
  if (text.data() == d.body.data() && text.size() == d.body.size()) d.body_copy = buf_.data();
  if (e != ParseError::none || options_.unwrap.empty()) return e;
  Field* wrapped = d.field(options_.unwrap);
  if (wrapped == nullptr) return ParseError::none;
  if (wrapped->type != FieldType::string) return ParseError::json_unwrap;
  const std::string_view inner = wrapped->text;
  // The wrapper is replaced by the members of the text it holds.
  d.fields.erase(d.fields.begin() + (wrapped - d.fields.data()));
  const ParseError ie = parse_doc(inner_parser_, inner_buf_, inner, d, false);
  return ie == ParseError::none ? ie : ParseError::json_unwrap;
}

ParseError JsonFormat::parse_doc(od::parser& parser, PaddedBuffer& buf, std::string_view text,
                                 Draft& d, bool selected) {
  od::document doc;
  if (auto e = parser.iterate(buf.load(text)).get(doc)) return json_error(e);
  od::object obj;
  if (auto e = doc.get_object().get(obj)) {
    // A scalar or array at the top is not an object; anything else is a syntax error.
    if (e != simdjson::INCORRECT_TYPE) return json_error(e);
    std::string_view t = trim(text);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    const bool value = !t.empty() && (t.front() == '[' || t.front() == '"' || t.front() == '-' ||
                                      (t.front() >= '0' && t.front() <= '9') || t == "true" ||
                                      t == "false" || t == "null");
    return value ? ParseError::json_not_object : ParseError::json_syntax;
  }
  if (!selected) {
    for (auto member : obj) {
      if (auto e = member.error()) return json_error(e);
      // Used in place: get() would copy the field, whose wide loads of the narrow stores that
      // just built it stall (store forwarding fails): that stall was a twentieth of a parse.
      od::field&& field = std::move(member).value_unsafe();
      std::string_view key;
      if (auto e = key_of(field, key)) return json_error(e);
      if (auto pe = add_value(field.value(), key, d, options_.max_depth, 1); pe != ParseError::none)
        return pe;
    }
    return ParseError::none;
  }
  // One pass in document order (never simdjson's unordered search, whose wrap-around assumes a
  // valid document), descending only into objects that lead to a wanted path, and stopping once
  // every path was found.
  std::size_t remaining = paths_.size();
  return extract(obj, all_paths_, 0, d, remaining);
}

ParseError JsonFormat::extract(od::object& obj, const std::vector<std::size_t>& wanted,
                               std::size_t level, Draft& d, std::size_t& remaining) {
  // One scratch pair per level, sized in the constructor: a deeper call never reallocates it.
  auto& [here, deeper] = scratch_[level];  // reused: no allocation once warm
  for (auto member : obj) {
    if (auto e = member.error()) return json_error(e);
    od::field&& field = std::move(member).value_unsafe();  // in place, as in parse_doc()
    std::string_view key;
    if (auto e = key_of(field, key)) return json_error(e);
    here.clear();
    deeper.clear();
    for (std::size_t i : wanted) {
      if (paths_[i][level] != key) continue;
      (paths_[i].size() == level + 1 ? here : deeper).push_back(i);
    }
    if (here.empty() && deeper.empty()) continue;  // skipped, not parsed
    od::value& v = field.value();
    if (!here.empty()) {
      // A wanted value (its nested paths, if also wanted, are inside its JSON text).
      if (auto pe = add_value(v, options_.fields[here.front()], d, options_.max_depth,
                              static_cast<std::uint32_t>(level + 1));
          pe != ParseError::none)
        return pe;
      for (std::size_t k = 1; k < here.size(); ++k) d.fields.push_back(d.fields.back());
      remaining -= here.size() + deeper.size();
    } else {
      od::object inner;
      if (v.get_object().get(inner)) {
        remaining -= deeper.size();  // not an object: those paths are absent
      } else if (auto pe = extract(inner, deeper, level + 1, d, remaining);
                 pe != ParseError::none) {
        return pe;
      }
    }
    if (remaining == 0) break;  // everything found: the rest is never parsed
  }
  return ParseError::none;
}

std::vector<std::string_view> ready_pattern_names() {
  return {"combined", "common", "syslog", "syslog_rfc3164", "syslog_rfc5424"};
}

std::vector<std::string_view> ready_patterns(std::string_view name) {
  if (name == "combined") return {combined_pattern()};
  if (name == "common") return {common_pattern()};
  if (name == "syslog") return {kRfc5424, kRfc3164};
  if (name == "syslog_rfc3164") return {kRfc3164};
  if (name == "syslog_rfc5424") return {kRfc5424};
  return {};
}

Result<std::unique_ptr<RegexFormat>> RegexFormat::make(std::string_view pattern_or_name,
                                                       std::uint32_t match_limit) {
  auto f = std::make_unique<RegexFormat>();
  auto patterns = ready_patterns(pattern_or_name);
  if (patterns.empty()) patterns.push_back(pattern_or_name);
  for (const auto p : patterns) {
    auto r = Regex::compile(p, match_limit);
    if (!r) return r.error();
    if (r->names().empty()) {
      return Status(Errc::config, "regex /" + std::string(p) +
                                      "/ has no named groups (write (?<name>...) for each field)");
    }
    f->regexes_.push_back(std::move(*r));
  }
  return f;
}

ParseError RegexFormat::parse(std::string_view text, Draft& d) {
  bool limited = false;
  for (auto& re : regexes_) {
    const Regex::Outcome o = re.match(text);
    if (o == Regex::Outcome::match) {
      for (const auto& [name, n] : re.names()) {
        if (re.group_set(n)) d.fields.push_back({name, re.group(n), FieldType::string});
      }
      return ParseError::none;
    }
    if (o == Regex::Outcome::limit || o == Regex::Outcome::error) limited = true;
  }
  return limited ? ParseError::regex_limit : ParseError::regex_no_match;
}

ParseError LogfmtFormat::parse(std::string_view s, Draft& d) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t')) ++i;
    if (i == n) break;
    const std::size_t k0 = i;
    while (i < n && s[i] != '=' && s[i] != ' ' && s[i] != '\t' && s[i] != '"') ++i;
    const std::string_view key = s.substr(k0, i - k0);
    if (key.empty()) return ParseError::logfmt_syntax;
    if (i == n || s[i] == ' ' || s[i] == '\t') {
      d.fields.push_back({key, "true", FieldType::boolean});
      continue;
    }
    if (s[i] == '"') return ParseError::logfmt_syntax;
    ++i;  // '='
    if (i < n && s[i] == '"') {
      ++i;
      const std::size_t v0 = i;
      bool escaped = false;
      while (i < n && s[i] != '"') {
        if (s[i] == '\\') {
          escaped = true;
          ++i;
        }
        ++i;
      }
      if (i >= n) return ParseError::logfmt_syntax;  // unterminated quote
      std::string_view value = s.substr(v0, i - v0);
      ++i;
      if (i < n && s[i] != ' ' && s[i] != '\t') return ParseError::logfmt_syntax;
      if (escaped) {
        char* out = d.arena.reserve(value.size());
        std::size_t o = 0;
        for (std::size_t j = 0; j < value.size(); ++j) {
          char c = value[j];
          if (c == '\\' && j + 1 < value.size()) {
            c = value[++j];
            if (c == 'n') c = '\n';
            if (c == 't') c = '\t';
            if (c == 'r') c = '\r';
          }
          out[o++] = c;
        }
        d.arena.commit(o);
        value = {out, o};
      }
      d.fields.push_back({key, value, FieldType::string});
    } else {
      const std::size_t v0 = i;
      while (i < n && s[i] != ' ' && s[i] != '\t') {
        if (s[i] == '"' || s[i] == '=') return ParseError::logfmt_syntax;
        ++i;
      }
      d.fields.push_back({key, s.substr(v0, i - v0), FieldType::string});
    }
  }
  return ParseError::none;
}

}  // namespace sluice::parse

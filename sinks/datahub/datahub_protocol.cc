#include "sinks/datahub/datahub_protocol.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <limits>

#include "lib/codec/json.h"

namespace sluice::sinks::datahub {

namespace od = simdjson::ondemand;

void append_base64(std::string& out, std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  const std::size_t at = out.size();
  out.resize(at + (n + 2) / 3 * 4);
  char* o = out.data() + at;
  std::size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const std::uint32_t v =
        (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    *o++ = kAlphabet[(v >> 18) & 63];
    *o++ = kAlphabet[(v >> 12) & 63];
    *o++ = kAlphabet[(v >> 6) & 63];
    *o++ = kAlphabet[v & 63];
  }
  if (i < n) {
    std::uint32_t v = std::uint32_t{in[i]} << 16;
    if (i + 1 < n) v |= std::uint32_t{in[i + 1]} << 8;
    *o++ = kAlphabet[(v >> 18) & 63];
    *o++ = kAlphabet[(v >> 12) & 63];
    *o++ = i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
}

std::string rfc1123_date(std::int64_t unix_seconds) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

std::string string_to_sign(std::string_view method, std::string_view content_type,
                           std::string_view date,
                           const std::vector<std::pair<std::string, std::string>>& headers,
                           std::string_view path_and_query) {
  std::vector<std::pair<std::string, std::string_view>> signed_headers;
  for (const auto& [name, value] : headers) {
    std::string l = lower(name);
    if (l.rfind("x-datahub-", 0) == 0) signed_headers.emplace_back(std::move(l), value);
  }
  std::sort(signed_headers.begin(), signed_headers.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string s;
  s.append(method).append("\n").append(content_type).append("\n").append(date).append("\n");
  for (const auto& [name, value] : signed_headers)
    s.append(name).append(":").append(value).append("\n");
  s.append(path_and_query);
  return s;
}

std::string signature(std::string_view access_key, std::string_view string_to_sign) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha1(), access_key.data(), static_cast<int>(access_key.size()),
       reinterpret_cast<const unsigned char*>(string_to_sign.data()), string_to_sign.size(), mac,
       &len);
  std::string out;
  append_base64(out, std::string_view(reinterpret_cast<const char*>(mac), len));
  return out;
}

std::string authorization(std::string_view access_id, std::string_view sig) {
  std::string out = "DATAHUB ";
  out.append(access_id).append(":").append(sig);
  return out;
}

namespace {

constexpr std::pair<std::string_view, FieldKind> kKinds[] = {
    {"bigint", FieldKind::bigint},     {"integer", FieldKind::integer},
    {"smallint", FieldKind::smallint}, {"tinyint", FieldKind::tinyint},
    {"double", FieldKind::double_},    {"float", FieldKind::float_},
    {"boolean", FieldKind::boolean},   {"timestamp", FieldKind::timestamp},
    {"string", FieldKind::string},     {"json", FieldKind::json},
    {"decimal", FieldKind::decimal}};

bool parse_int(std::string_view text, std::int64_t lo, std::int64_t hi) {
  std::int64_t v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  return r.ec == std::errc() && r.ptr == text.data() + text.size() && v >= lo && v <= hi;
}

bool parse_number(std::string_view text) {
  double v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  return !text.empty() && r.ec == std::errc() && r.ptr == text.data() + text.size();
}

void append_quoted(std::string& out, std::string_view text) {
  out += '"';
  codec::append_json_string(out, text);
  out += '"';
}

}  // namespace

std::optional<FieldKind> field_kind(std::string_view name) {
  const std::string l = lower(name);
  for (const auto& [n, k] : kKinds) {
    if (n == l) return k;
  }
  return std::nullopt;
}

std::string_view field_kind_name(FieldKind kind) noexcept {
  for (const auto& [n, k] : kKinds) {
    if (k == kind) return n;
  }
  return "?";
}

bool append_tuple_value(std::string& out, const TupleField& spec, const EventView& e,
                        std::string& error) {
  std::string_view text;
  FieldType type = FieldType::string;
  char digits[24];
  switch (spec.from) {
    case TupleField::From::body:
      text = e.body();
      break;
    case TupleField::From::event_time: {
      const auto r = std::to_chars(digits, digits + sizeof digits, e.timestamp_ns() / 1000);
      text = std::string_view(digits, static_cast<std::size_t>(r.ptr - digits));
      type = FieldType::integer;
      break;
    }
    case TupleField::From::field: {
      bool found = false;
      for (std::size_t i = 0; i < e.field_count(); ++i) {
        const Field f = e.field(i);
        if (f.key == spec.source) {
          text = f.text;
          type = f.type;
          found = true;
          break;
        }
      }
      if (!found || type == FieldType::null) {
        out += "null";
        return true;
      }
      break;
    }
  }
  auto bad = [&](std::string_view why) {
    error = "field '" + spec.name + "' (" + std::string(field_kind_name(spec.kind)) + "): ";
    error += why;
    return false;
  };
  constexpr auto i64 = std::numeric_limits<std::int64_t>::min();
  constexpr auto i64max = std::numeric_limits<std::int64_t>::max();
  switch (spec.kind) {
    case FieldKind::bigint:
    case FieldKind::timestamp:
      if (!parse_int(text, i64, i64max)) return bad("not a 64-bit integer");
      break;
    case FieldKind::integer:
      if (!parse_int(text, INT32_MIN, INT32_MAX)) return bad("not a 32-bit integer");
      break;
    case FieldKind::smallint:
      if (!parse_int(text, INT16_MIN, INT16_MAX)) return bad("not a 16-bit integer");
      break;
    case FieldKind::tinyint:
      if (!parse_int(text, INT8_MIN, INT8_MAX)) return bad("not an 8-bit integer");
      break;
    case FieldKind::double_:
    case FieldKind::float_:
    case FieldKind::decimal:
      if (type == FieldType::boolean || !parse_number(text)) return bad("not a number");
      break;
    case FieldKind::boolean:
      if (text == "true" || text == "false") break;
      return bad("not true or false");
    case FieldKind::string:
    case FieldKind::json:
      break;
  }
  append_quoted(out, text);
  return true;
}

void BodyWriter::begin() {
  out_.clear();
  out_ += R"({"Action":"pub","Records":[)";
  records_ = 0;
}

void BodyWriter::open_record(std::string_view shard_id) {
  if (records_ > 0) out_ += ',';
  out_ += R"({"ShardId":")";
  codec::append_json_string(out_, shard_id);
  out_ += R"(","Data":)";
}

void BodyWriter::add_blob(std::string_view shard_id, std::string_view body) {
  open_record(shard_id);
  out_ += '"';
  append_base64(out_, body);
  out_ += "\"}";
  ++records_;
}

bool BodyWriter::add_tuple(std::string_view shard_id, const std::vector<TupleField>& schema,
                           const EventView& e, std::string& error) {
  const std::size_t mark = out_.size();
  open_record(shard_id);
  out_ += '[';
  for (std::size_t i = 0; i < schema.size(); ++i) {
    if (i > 0) out_ += ',';
    if (!append_tuple_value(out_, schema[i], e, error)) {
      out_.resize(mark);
      return false;
    }
  }
  out_ += "]}";
  ++records_;
  return true;
}

const std::string& BodyWriter::finish() {
  out_ += "]}";
  return out_;
}

namespace {

template <class T>
bool get_string(T& value, std::string& out) {
  std::string_view s;
  if (value.get_string().get(s) != simdjson::SUCCESS) return false;
  out.assign(s);
  return true;
}

}  // namespace

std::optional<std::vector<FailedRecord>> parse_put_result(std::string_view body) {
  std::vector<FailedRecord> failed;
  if (body.empty()) return failed;  // some servers answer 200 with no body when all succeeded
  simdjson::padded_string json(body);
  od::parser parser;
  od::document doc;
  od::object obj;
  if (parser.iterate(json).get(doc) != simdjson::SUCCESS || doc.get_object().get(obj)) {
    return std::nullopt;
  }
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key)) return std::nullopt;
    if (key != "FailedRecords") continue;
    od::array arr;
    if (field.value().get_array().get(arr)) return std::nullopt;
    for (auto item : arr) {
      od::object rec;
      if (item.get_object().get(rec)) return std::nullopt;
      FailedRecord fr;
      bool has_index = false;
      for (auto f : rec) {
        std::string_view k;
        if (f.unescaped_key().get(k)) return std::nullopt;
        auto v = f.value();
        if (k == "Index") {
          std::uint64_t i = 0;
          if (v.get_uint64().get(i) || i > UINT32_MAX) return std::nullopt;
          fr.index = static_cast<std::uint32_t>(i);
          has_index = true;
        } else if (k == "ErrorCode") {
          if (!get_string(v, fr.code)) return std::nullopt;
        } else if (k == "ErrorMessage") {
          if (!get_string(v, fr.message)) return std::nullopt;
        }
      }
      if (!has_index) return std::nullopt;
      failed.push_back(std::move(fr));
    }
  }
  return failed;
}

std::optional<ErrorBody> parse_error(std::string_view body) {
  simdjson::padded_string json(body);
  od::parser parser;
  od::document doc;
  od::object obj;
  if (parser.iterate(json).get(doc) != simdjson::SUCCESS || doc.get_object().get(obj)) {
    return std::nullopt;
  }
  ErrorBody e;
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key)) return std::nullopt;
    auto v = field.value();
    if (key == "ErrorCode") {
      if (!get_string(v, e.code)) return std::nullopt;
    } else if (key == "ErrorMessage") {
      if (!get_string(v, e.message)) return std::nullopt;
    }
  }
  if (e.code.empty()) return std::nullopt;
  return e;
}

std::optional<std::vector<Shard>> parse_shards(std::string_view body) {
  simdjson::padded_string json(body);
  od::parser parser;
  od::document doc;
  od::object obj;
  if (parser.iterate(json).get(doc) != simdjson::SUCCESS || doc.get_object().get(obj)) {
    return std::nullopt;
  }
  std::optional<std::vector<Shard>> shards;
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key)) return std::nullopt;
    if (key != "Shards") continue;
    od::array arr;
    if (field.value().get_array().get(arr)) return std::nullopt;
    shards.emplace();
    for (auto item : arr) {
      od::object rec;
      if (item.get_object().get(rec)) return std::nullopt;
      Shard s;
      for (auto f : rec) {
        std::string_view k;
        if (f.unescaped_key().get(k)) return std::nullopt;
        auto v = f.value();
        std::string* dst = k == "ShardId"        ? &s.id
                           : k == "State"        ? &s.state
                           : k == "BeginHashKey" ? &s.begin_hash_key
                           : k == "EndHashKey"   ? &s.end_hash_key
                                                 : nullptr;
        if (dst != nullptr && !get_string(v, *dst)) return std::nullopt;
      }
      if (s.id.empty()) return std::nullopt;
      for (std::string* h : {&s.begin_hash_key, &s.end_hash_key}) {
        for (char& c : *h) {
          if (c >= 'a' && c <= 'f') c = static_cast<char>(c - 'a' + 'A');
        }
      }
      shards->push_back(std::move(s));
    }
  }
  return shards;
}

std::vector<Shard> active_shards(const std::vector<Shard>& all) {
  std::vector<Shard> out;
  for (const Shard& s : all) {
    if (s.state == "ACTIVE") out.push_back(s);
  }
  return out;
}

CodeClass classify_code(std::string_view code) noexcept {
  if (code == "InvalidShardOperation") return CodeClass::reroute;
  if (code == "MalformedRecord" || code == "InvalidParameter" || code == "InvalidSchema" ||
      code == "InvalidUriSpec" || code == "SeekOutOfRange" || code == "InvalidCursor" ||
      code == "InvalidSubscription") {
    return CodeClass::reject;
  }
  if (code == "Unauthorized" || code == "NoPermission" || code == "OperationDenied" ||
      code == "ResourceNotFound" || code.rfind("NoSuch", 0) == 0 || code == "SubscriptionOffline") {
    return CodeClass::halt;
  }
  return CodeClass::retry;  // LimitExceeded, InternalServerError, ConsumerGroupInProcess, unknown
}

std::string_view code_class_name(CodeClass c) noexcept {
  switch (c) {
    case CodeClass::retry:
      return "retry";
    case CodeClass::reroute:
      return "reroute";
    case CodeClass::reject:
      return "reject";
    case CodeClass::halt:
      return "halt";
  }
  return "?";
}

std::string hash_key(std::string_view key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), md, &len, EVP_md5(), nullptr);
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::size_t shard_for_hash(const std::vector<Shard>& shards, std::string_view hash) {
  for (std::size_t i = 0; i < shards.size(); ++i) {
    const Shard& s = shards[i];
    if (s.begin_hash_key.size() != hash.size() || s.end_hash_key.size() != hash.size()) continue;
    // Ranges are [begin, end); the last shard's end is all F and includes it.
    const bool last = s.end_hash_key.find_first_not_of('F') == std::string::npos;
    if (hash >= s.begin_hash_key && (hash < s.end_hash_key || last)) return i;
  }
  std::uint64_t v = 0;
  for (char c : hash.substr(0, 15))
    v = v * 16 + static_cast<std::uint64_t>(c <= '9' ? c - '0' : c - 'A' + 10);
  return shards.empty() ? 0 : static_cast<std::size_t>(v % shards.size());
}

}  // namespace sluice::sinks::datahub

#include <fmt/format.h>

#include "sinks/datahub/datahub_sink.h"

namespace sluice::sinks {

namespace {

bool valid_name(std::string_view s, std::size_t min_len, std::size_t max_len) {
  if (s.size() < min_len || s.size() > max_len) return false;
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!alpha(s[0])) return false;
  for (char c : s) {
    if (!alpha(c) && !(c >= '0' && c <= '9') && c != '_') return false;
  }
  return true;
}

// "field.NAME" / "header.NAME" / "body" / "timestamp" for a tuple field's source.
bool parse_from(std::string_view text, datahub::TupleField& f) {
  if (text == "body") {
    f.from = datahub::TupleField::From::body;
  } else if (text == "timestamp") {
    f.from = datahub::TupleField::From::event_time;
  } else if (text.rfind("field.", 0) == 0 && text.size() > 6) {
    f.from = datahub::TupleField::From::field;
    f.source = std::string(text.substr(6));
  } else {
    return false;
  }
  return true;
}

void parse_fields(const ConfigNode& node, ConfigErrors& errors, DataHubConfig& c) {
  node.mark_known("fields");
  const toml::node* n = node.table().get("fields");
  if (n == nullptr) {
    node.error(errors,
               "missing required key 'fields' (record_type = \"tuple\" needs the topic's "
               "schema, in order)");
    return;
  }
  const toml::array* arr = n->as_array();
  if (arr == nullptr) {
    node.error_at("fields", errors, "expected an array of field names or { name, type, from }");
    return;
  }
  if (arr->empty()) node.error_at("fields", errors, "must name at least one field");
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const toml::node& el = *arr->get(i);
    datahub::TupleField f;
    if (const auto* s = el.as_string()) {
      f.name = s->get();
      f.source = f.name;
      if (f.name.empty()) node.error_at_element("fields", i, errors, "empty field name");
      c.fields.push_back(std::move(f));
      continue;
    }
    const toml::table* t = el.as_table();
    if (t == nullptr) {
      node.error_at_element("fields", i, errors,
                            "expected a field name or a table { name, type, from }");
      continue;
    }
    ConfigNode fn(*t, fmt::format("{}.fields[{}]", node.path(), i), node.file());
    fn.required("name", f.name, errors);
    f.source = f.name;
    std::string type = "string";
    if (fn.optional("type", type, errors)) {
      if (auto k = datahub::field_kind(type)) {
        f.kind = *k;
      } else {
        fn.error_at("type", errors,
                    fmt::format("\"{}\" is not a DataHub type (bigint, integer, smallint, tinyint, "
                                "double, float, boolean, timestamp, string, json, decimal)",
                                type));
      }
    }
    std::string from;
    if (fn.optional("from", from, errors) && fn.has("from") && !parse_from(from, f)) {
      fn.error_at("from", errors,
                  fmt::format("\"{}\" is not \"field.NAME\", \"body\" or \"timestamp\"", from));
    }
    fn.reject_unknown_keys(errors);
    c.fields.push_back(std::move(f));
  }
}

}  // namespace

std::optional<DataHubConfig> DataHubConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  DataHubConfig c;
  if (node.required("endpoint", c.endpoint, errors)) {
    while (!c.endpoint.empty() && c.endpoint.back() == '/') c.endpoint.pop_back();
    const bool http = c.endpoint.rfind("http://", 0) == 0,
               https = c.endpoint.rfind("https://", 0) == 0;
    const std::size_t host_at = http ? 7 : 8;
    if (!http && !https) {
      node.error_at("endpoint", errors,
                    fmt::format("\"{}\" is not an http:// or https:// URL", c.endpoint));
    } else if (c.endpoint.size() <= host_at || c.endpoint[host_at] == '/' ||
               c.endpoint.find_first_of("?# ") != std::string::npos) {
      node.error_at("endpoint", errors,
                    fmt::format("\"{}\" needs a host and no query (e.g. \"https://dh.example\")",
                                c.endpoint));
    }
  }
  if (node.required("project", c.project, errors) && !valid_name(c.project, 3, 31)) {
    node.error_at(
        "project", errors,
        fmt::format("\"{}\" is not a DataHub project name (a letter, then letters, digits "
                    "or '_', 3 to 31 characters)",
                    c.project));
  }
  if (node.required("topic", c.topic, errors) && !valid_name(c.topic, 1, 127)) {
    node.error_at("topic", errors,
                  fmt::format("\"{}\" is not a DataHub topic name (a letter, then letters, digits "
                              "or '_', at most 127 characters)",
                              c.topic));
  }
  if (node.required("access_id", c.access_id, errors) && c.access_id.empty()) {
    node.error_at("access_id", errors, "must not be empty");
  }
  read_secret(node, "access_key", c.access_key, errors, true);
  read_secret(node, "security_token", c.security_token, errors, false);
  node.optional_enum("record_type", c.record_type, errors,
                     {{"blob", RecordType::blob}, {"tuple", RecordType::tuple}});
  if (c.record_type == RecordType::tuple) {
    parse_fields(node, errors, c);
  } else if (node.has("fields")) {
    node.mark_known("fields");
    node.error_at("fields", errors, "only for record_type = \"tuple\" (BLOB records are the body)",
                  true);
  }
  std::string key;
  if (node.optional("shard_key", key, errors) && node.has("shard_key")) {
    if (key.rfind("field.", 0) == 0 && key.size() > 6) {
      c.shard_key = ShardKey::field;
      c.shard_key_name = key.substr(6);
    } else if (key.rfind("header.", 0) == 0 && key.size() > 7) {
      c.shard_key = ShardKey::header;
      c.shard_key_name = key.substr(7);
    } else {
      node.error_at("shard_key", errors,
                    fmt::format("\"{}\" is not \"field.NAME\" or \"header.NAME\"", key));
    }
  }
  node.optional_enum("compression", c.compression, errors,
                     {{"none", http::Compression::none}, {"deflate", http::Compression::deflate}});
  std::uint32_t level = 0;
  if (node.optional("compression_level", level, errors, InRange<std::uint32_t>{0, 9})) {
    c.compression_level = static_cast<int>(level);
  }
  node.optional("max_records_per_request", c.max_records_per_request, errors,
                InRange<std::uint32_t>{1, 10'000});
  node.optional("max_request_bytes", c.max_request_bytes, errors,
                InRange<ByteSize>{ByteSize{1024}, ByteSize{64ULL << 20}});
  using std::chrono::milliseconds;
  node.optional("connect_timeout", c.connect_timeout, errors,
                InRange<milliseconds>{milliseconds(10), milliseconds(600'000)});
  node.optional("request_timeout", c.request_timeout, errors,
                InRange<milliseconds>{milliseconds(10), milliseconds(600'000)});
  node.optional("record_retry_timeout", c.record_retry_timeout, errors,
                InRange<milliseconds>{milliseconds(0), milliseconds(600'000)});
  node.optional("retry_backoff", c.retry_backoff, errors,
                InRange<milliseconds>{milliseconds(1), milliseconds(60'000)});
  node.optional("max_in_flight", c.max_in_flight, errors, InRange<std::uint32_t>{1, 64});
  node.optional("ledger_max_records", c.ledger_max_records, errors,
                InRange<std::uint32_t>{0, 10'000'000});
  node.optional("client_version", c.client_version, errors);
  node.optional("tls_verify", c.tls.verify, errors);
  node.optional("ca_file", c.tls.ca_file, errors);
  node.optional("ca_dir", c.tls.ca_dir, errors);
  node.optional("cert_file", c.tls.cert_file, errors);
  node.optional("key_file", c.tls.key_file, errors);
  node.optional("proxy", c.proxy, errors);
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{std::move(c)} : std::nullopt;
}

}  // namespace sluice::sinks

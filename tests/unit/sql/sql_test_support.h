#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "lib/core/batch.h"
#include "lib/parse/formats.h"
#include "sql/engine.h"

namespace sluice::sql::test {

/// One input field for a test event.
struct F {
  std::string key;
  std::string text;
  FieldType type;
};
inline F s(std::string k, std::string v) { return {std::move(k), std::move(v), FieldType::string}; }
inline F i(std::string k, long long v) {
  return {std::move(k), std::to_string(v), FieldType::integer};
}
inline F d(std::string k, std::string v) {
  return {std::move(k), std::move(v), FieldType::floating};
}

inline void add_event(Batch& b, std::int64_t ts_ns, const std::vector<F>& fields) {
  b.add("", ts_ns, 0);
  for (const F& f : fields) b.add_field(f.key, f.text, f.type);
}

/// A row of output as "name=value,..." in SELECT order, for exact comparisons.
inline std::string row_text(const EventView& ev) {
  std::string out;
  for (std::size_t k = 0; k < ev.field_count(); ++k) {
    const Field f = ev.field(k);
    if (k > 0) out += ",";
    out += std::string(f.key) + "=" + std::string(f.text);
  }
  return out;
}
inline std::vector<std::string> rows_of(const Batch& b) {
  std::vector<std::string> out;
  for (std::size_t k = 0; k < b.size(); ++k) out.push_back(row_text(b[k]));
  return out;
}

inline CompiledQuery must_compile(std::string_view sql, const CompileOptions& o = {}) {
  auto q = compile(sql, o);
  if (!q) FAIL(q.error().message());
  return std::move(*q);
}

inline std::unique_ptr<WindowRunner> must_run(const CompiledQuery& q, RunnerOptions o = {}) {
  auto r = WindowRunner::create(q, std::move(o));
  if (!r) FAIL(r.error().message());
  return std::move(*r);
}

/// Parses NDJSON lines with the json format (every top-level member a field), as a source would.
inline void parse_ndjson(std::string_view text, Batch& out, std::int64_t arrival_ns = 0) {
  parse::JsonFormat json(parse::JsonOptions{});
  parse::Draft d;
  std::uint64_t id = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty()) continue;
    d.reset(line, arrival_ns, ++id);
    REQUIRE(json.parse(line, d) == parse::ParseError::none);
    out.add(line, arrival_ns, id);
    for (const Field& f : d.fields) out.add_field(f.key, f.text, f.type);
  }
}

constexpr std::int64_t kSec = 1'000'000'000;

}  // namespace sluice::sql::test

#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "lib/core/batch.h"
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

constexpr std::int64_t kSec = 1'000'000'000;

}  // namespace sluice::sql::test

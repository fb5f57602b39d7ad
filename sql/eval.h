#pragma once

#include <cstdint>

#include "sql/ast.h"
#include "sql/value.h"

namespace sluice::sql {

/// What an expression reads: input slots (event phase) or keys, aggregate results and window
/// bounds (row phase). Computed strings go to `arena`; failed conversions count in `errors`.
struct EvalContext {
  const Value* slots = nullptr;
  const Value* keys = nullptr;
  const Value* aggs = nullptr;
  std::int64_t window_start = 0;
  std::int64_t window_end = 0;
  Arena* arena = nullptr;
  std::uint64_t* errors = nullptr;
};

Value eval(const Expr& e, const EvalContext& ctx);

/// eval() with its most common case, an input field, inline: for the per-event group keys and
/// aggregate arguments (each call was 37 instructions).
inline Value eval_inline(const Expr& e, const EvalContext& ctx) {
  return e.op == Op::field ? ctx.slots[e.index] : eval(e, ctx);
}

/// SQL truth: true only for a non-null true boolean.
inline bool truthy(const Value& v) { return v.type == SqlType::boolean && v.b; }

/// Three-way comparison; nullopt when either is null or the two cannot be compared.
std::optional<int> compare(const Value& a, const Value& b);

/// LIKE with % and _ (no escape character), byte-wise.
bool like_match(std::string_view text, std::string_view pattern);

/// CAST semantics; a failed conversion gives NULL and counts an error.
Value cast_value(const Value& v, SqlType to, const EvalContext& ctx);

/// Parses a number from text (integer if it has no fraction/exponent).
bool parse_number(std::string_view s, Value& out);

}  // namespace sluice::sql

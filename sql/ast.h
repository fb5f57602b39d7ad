#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sql/engine.h"
#include "sql/value.h"

namespace sluice::sql {

enum class Op : std::uint8_t {
  literal,
  field,         // an input field; `index` is its slot after planning
  window_start,  // row phase only
  window_end,
  key_ref,  // row phase: group key `index`
  agg_ref,  // row phase: aggregate `index`
  neg,
  not_,
  add,
  sub,
  mul,
  div,
  mod,
  concat,  // ||
  eq,
  ne,
  lt,
  le,
  gt,
  ge,
  and_,
  or_,
  in,       // args[0] IN (args[1..]); `negated` for NOT IN
  like,     // args[0] LIKE args[1]
  is_null,  // `negated` for IS NOT NULL
  between,  // args[0] BETWEEN args[1] AND args[2]
  case_,    // args: when0, then0, when1, then1, ..., [else] (has_else)
  cast,     // args[0] AS cast_to
  call,     // scalar function `func`
  agg,      // aggregate call before planning (COUNT, SUM, ...)
};

enum class Func : std::uint8_t { lower, upper, substr, concat, coalesce, length, abs };

enum class AggKind : std::uint8_t {
  count_star,
  count,
  count_distinct,
  sum,
  avg,
  min,
  max,
  first_value,
  last_value,
  approx_percentile,
  merge,  // MERGE(field): the final value of the PARTIAL states a field carries (issue 14)
};
std::string_view agg_name(AggKind k) noexcept;

struct Expr {
  Op op = Op::literal;
  std::size_t offset = 0;  // span in the SQL text
  std::size_t length = 0;
  SqlType type = SqlType::any;  // after planning
  std::vector<std::unique_ptr<Expr>> args;
  std::string name;  // field path, function name as written, or a string literal's bytes
  Value lit;         // literal (strings view `name`)
  bool negated = false;
  bool has_else = false;
  bool partial = false;  // Op::agg inside PARTIAL(...): the row carries the state, not the value
  Func func = Func::lower;
  AggKind agg = AggKind::count_star;
  SqlType cast_to = SqlType::string;
  int index = -1;
  int height = 0;  // levels of the tree below and including this node; 0: not computed yet
};

struct SelectItem {
  std::unique_ptr<Expr> expr;
  std::string alias;  // empty: none
  std::string text;   // the expression as written
};

struct WindowCall {
  WindowKind kind = WindowKind::tumble;
  std::int64_t size_ns = 0;
  std::int64_t slide_ns = 0;
  std::size_t offset = 0;
  std::optional<std::string> time_column;  // TUMBLE(create_time, INTERVAL ...)
  std::size_t time_column_offset = 0;
};

struct CreateTable {
  std::string name;
  std::size_t offset = 0;
  std::vector<Column> columns;
  std::vector<std::size_t> column_offsets;
  std::optional<std::string> watermark_column;
  std::size_t watermark_offset = 0;
  std::int64_t watermark_delay_ns = 0;
};

struct Statement {
  std::optional<CreateTable> table;
  std::optional<std::string> insert_into;
  std::vector<SelectItem> select;
  std::string from;
  std::size_t from_offset = 0;
  std::unique_ptr<Expr> where;
  std::optional<WindowCall> window;
  std::size_t group_by_offset = 0;
  std::vector<std::unique_ptr<Expr>> group;
  std::unique_ptr<Expr> having;
  std::size_t end_offset = 0;
};

/// Parses a whole script (optional CREATE TABLE, one SELECT). On failure fills `error` (offset).
std::optional<Statement> parse(std::string_view sql, CompileError& error);

/// A deep copy.
std::unique_ptr<Expr> clone(const Expr& e);

/// Canonical text of an expression (for matching SELECT items against GROUP BY keys).
std::string canonical(const Expr& e);

}  // namespace sluice::sql

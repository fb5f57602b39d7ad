#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sql/ast.h"
#include "sql/engine.h"

namespace sluice::sql {

struct AggSpec {
  AggKind kind = AggKind::count_star;
  std::unique_ptr<Expr> arg;  // event phase; null for COUNT(*)
  double q = 0.5;             // APPROX_PERCENTILE
  SqlType arg_type = SqlType::any;
  SqlType result_type = SqlType::integer;
  std::string text;  // as written
  std::string canon;
  std::size_t offset = 0;  // in the SQL text
  bool partial = false;    // PARTIAL(...): the row carries the encoded state (a VARCHAR)
};

/// A checked query, ready to run. Expressions of the event phase (where, keys, aggregate
/// arguments) read input slots (Op::field, index = slot); expressions of the row phase (select,
/// having) read group keys (Op::key_ref), aggregate results (Op::agg_ref) and the window bounds.
struct QueryPlan {
  std::string sql;
  std::optional<std::string> insert_into;
  std::string from;
  std::optional<std::string> table_name;
  std::vector<Column> schema;
  bool strict_names = false;
  std::optional<std::string> watermark_column;
  std::optional<std::int64_t> watermark_delay_ns;
  WindowSpec window;
  std::unique_ptr<Expr> where;
  std::vector<std::unique_ptr<Expr>> keys;
  std::vector<std::string> key_texts;
  std::vector<AggSpec> aggs;
  std::vector<std::unique_ptr<Expr>> select;
  std::unique_ptr<Expr> having;
  std::string having_text, where_text;
  std::vector<OutputColumn> output;
  std::vector<std::string> fields;   // slot -> field path
  std::vector<SqlType> field_types;  // declared type, or any
  std::uint64_t fingerprint = 0;
  std::size_t state_bytes_per_group = 0;
  bool has_partial = false;  // some aggregate is PARTIAL(...)
  bool has_merge = false;    // some aggregate is MERGE(field)
};

/// Resolves names, checks types and aggregate use, and builds the plan. nullptr on error.
std::shared_ptr<QueryPlan> plan(std::string_view sql, Statement st, const CompileOptions& options,
                                CompileError& error);

}  // namespace sluice::sql

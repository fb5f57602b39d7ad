#include "sql/plan.h"

#include <algorithm>

#include "lib/codec/hash.h"
#include "sql/lexer.h"

namespace sluice::sql {
namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      const char x = static_cast<char>(std::tolower(static_cast<unsigned char>(a[i - 1])));
      const char y = static_cast<char>(std::tolower(static_cast<unsigned char>(b[j - 1])));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (x == y ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

bool numeric(SqlType t) {
  return t == SqlType::integer || t == SqlType::floating || t == SqlType::any || t == SqlType::null;
}
bool stringish(SqlType t) {
  return t == SqlType::string || t == SqlType::any || t == SqlType::null;
}
bool boolish(SqlType t) { return t == SqlType::boolean || t == SqlType::any || t == SqlType::null; }
bool comparable(SqlType a, SqlType b) {
  if (a == SqlType::any || b == SqlType::any || a == SqlType::null || b == SqlType::null) {
    return true;
  }
  if (numeric(a) && numeric(b)) return true;
  return a == b;
}
std::string tn(SqlType t) { return std::string(type_name(t)); }

std::string_view op_text(Op op) {
  switch (op) {
    case Op::add:
      return "+";
    case Op::sub:
      return "-";
    case Op::mul:
      return "*";
    case Op::div:
      return "/";
    case Op::mod:
      return "%";
    case Op::eq:
      return "=";
    case Op::ne:
      return "<>";
    case Op::lt:
      return "<";
    case Op::le:
      return "<=";
    case Op::gt:
      return ">";
    case Op::ge:
      return ">=";
    case Op::and_:
      return "AND";
    case Op::or_:
      return "OR";
    default:
      return "?";
  }
}

// The published FNV-1a offset basis (not lib/codec's): stored query fingerprints use it.
std::uint64_t fnv(std::string_view s, std::uint64_t h = 0xcbf29ce484222325ull) {
  return codec::fnv1a64(s, h);
}

/// The row builder keeps one row's values on the stack.
constexpr std::size_t kMaxColumns = 64;

class Planner {
 public:
  Planner(std::string_view sql, const CompileOptions& options, CompileError& error)
      : sql_(sql), options_(options), error_(error) {}

  std::shared_ptr<QueryPlan> run(Statement st) {
    auto p = std::make_shared<QueryPlan>();
    p_ = p.get();
    p->sql = std::string(sql_);
    p->insert_into = st.insert_into;
    p->from = st.from;
    if (st.table) {
      p->table_name = st.table->name;
      p->schema = st.table->columns;
      p->strict_names = true;
      if (st.table->name != st.from) {
        fail(st.from_offset,
             "unknown table '" + st.from + "' (the query declares '" + st.table->name + "')");
        return nullptr;
      }
      if (st.table->watermark_column) {
        p->watermark_column = st.table->watermark_column;
        p->watermark_delay_ns = st.table->watermark_delay_ns;
      }
    } else if (options_.schema) {
      p->schema = *options_.schema;
      p->strict_names = true;
    }
    const WindowCall& w = *st.window;
    p->window = {w.kind, w.size_ns, w.slide_ns};
    if (w.time_column) {
      if (!check_name(*w.time_column, w.time_column_offset)) return nullptr;
      if (p->watermark_column && *p->watermark_column != *w.time_column) {
        fail(w.time_column_offset, "the window's time column '" + *w.time_column +
                                       "' is not the watermark column '" + *p->watermark_column +
                                       "'");
        return nullptr;
      }
      if (!p->watermark_column) p->watermark_column = w.time_column;
    }
    if (p->watermark_column) add_slot(*p->watermark_column);

    if (st.where) {
      p->where_text = text(*st.where);
      if (!event_phase(*st.where, "WHERE")) return nullptr;
      if (!check(*st.where)) return nullptr;
      if (!boolish(st.where->type)) {
        fail(st.where->offset, "WHERE needs a BOOLEAN condition, got " + tn(st.where->type));
        return nullptr;
      }
      p->where = std::move(st.where);
    }
    std::vector<std::string> key_canon;
    for (auto& k : st.group) {
      key_canon.push_back(canonical(*k));
      p->key_texts.push_back(text(*k));
      if (!event_phase(*k, "GROUP BY")) return nullptr;
      if (!check(*k)) return nullptr;
      if (k->type == SqlType::interval) {
        fail(k->offset, "cannot group by an INTERVAL");
        return nullptr;
      }
      for (std::size_t j = 0; j + 1 < key_canon.size(); ++j) {
        if (key_canon[j] == key_canon.back()) {
          fail(k->offset, "duplicate GROUP BY key '" + p->key_texts.back() + "'");
          return nullptr;
        }
      }
      p->keys.push_back(std::move(k));
    }
    key_canon_ = std::move(key_canon);

    std::vector<std::string> names;
    if (st.select.size() > kMaxColumns) {
      fail(st.select[kMaxColumns].expr->offset,
           "at most " + std::to_string(kMaxColumns) + " output columns");
      return nullptr;
    }
    for (auto& item : st.select) {
      OutputColumn col;
      col.name = !item.alias.empty()                 ? item.alias
                 : item.expr->op == Op::field        ? item.expr->name
                 : item.expr->op == Op::window_start ? "window_start"
                 : item.expr->op == Op::window_end   ? "window_end"
                                                     : item.text;
      const std::size_t at = item.expr->offset;
      for (const std::string& n : names) {
        if (n == col.name) {
          fail(at, "duplicate output column '" + col.name + "' (use AS to rename it)");
          return nullptr;
        }
      }
      names.push_back(col.name);
      bool has_agg = false;
      if (!row_phase(item.expr, has_agg, "SELECT", true)) return nullptr;
      if (!check(*item.expr)) return nullptr;
      col.type = item.expr->type;
      col.is_aggregate = has_agg;
      partial_columns_.push_back(item.expr->op == Op::agg_ref &&
                                 p->aggs[static_cast<std::size_t>(item.expr->index)].partial);
      p->output.push_back(col);
      select_texts_.push_back(item.alias);
      p->select.push_back(std::move(item.expr));
    }
    if (st.having) {
      p->having_text = text(*st.having);
      bool has_agg = false;
      if (!row_phase(st.having, has_agg, "HAVING")) return nullptr;
      if (!check(*st.having)) return nullptr;
      if (!boolish(st.having->type)) {
        fail(st.having->offset, "HAVING needs a BOOLEAN condition, got " + tn(st.having->type));
        return nullptr;
      }
      p->having = std::move(st.having);
    }
    for (const AggSpec& a : p->aggs) {
      p->has_partial = p->has_partial || a.partial;
      p->has_merge = p->has_merge || a.kind == AggKind::merge;
    }
    if (p->has_partial || p->has_merge) {
      const char* what = p->has_partial ? "PARTIAL" : "MERGE";
      if (p->has_partial && p->has_merge) {
        fail(st.select.empty() ? 0 : first_agg_offset(*p, AggKind::merge),
             "a query either emits PARTIAL states (at the edge) or MERGEs them (at the "
             "collector), not both");
        return nullptr;
      }
      if (p->window.kind != WindowKind::tumble) {
        fail(w.offset, std::string(what) +
                           " needs a TUMBLE window (hopping and session windows do not split "
                           "into mergeable parts)");
        return nullptr;
      }
      if (p->has_partial) {
        bool has_start = false;
        for (const auto& e : p->select) has_start = has_start || e->op == Op::window_start;
        std::size_t at = 0;
        for (auto it = p->aggs.rbegin(); it != p->aggs.rend(); ++it) {
          if (it->partial) at = it->offset;
        }
        if (!has_start) {
          fail(at,
               "a PARTIAL query must SELECT window_start: a collector's MERGE takes its event "
               "time from it");
          return nullptr;
        }
      }
      if (p->has_merge && !p->watermark_column) {
        fail(w.offset,
             "MERGE takes event time from the partial rows' window: GROUP BY "
             "TUMBLE(window_start, INTERVAL ...)");
        return nullptr;
      }
    }
    for (std::size_t i = 0; i < p->fields.size(); ++i)
      p->field_types.push_back(declared(p->fields[i]));
    // State of one group: key bytes, per-aggregate cells, and sketches at their starting size.
    std::size_t bytes = 48 + 16 * p->keys.size();
    for (const AggSpec& a : p->aggs) {
      bytes += 32;
      if (a.kind == AggKind::count_distinct) bytes += 64;
      if (a.kind == AggKind::approx_percentile) bytes += 256;
    }
    p->state_bytes_per_group = bytes;
    std::string fp = p->sql;
    fp += "|" + std::to_string(static_cast<int>(p->window.kind)) + ":" +
          std::to_string(p->window.size_ns) + ":" + std::to_string(p->window.slide_ns);
    p->fingerprint = fnv(fp);
    return p;
  }

 private:
  std::size_t first_agg_offset(const QueryPlan& p, AggKind kind) const {
    for (const AggSpec& a : p.aggs) {
      if (a.kind == kind) return a.offset;
    }
    return 0;
  }
  void fail(std::size_t offset, std::string msg) {
    if (!error_.message.empty()) return;
    error_.message = std::move(msg);
    error_.offset = offset;
  }
  std::string text(const Expr& e) const { return std::string(sql_.substr(e.offset, e.length)); }

  SqlType declared(const std::string& name) const {
    for (const Column& c : p_->schema) {
      if (c.name == name) return c.type;
    }
    return SqlType::any;
  }
  bool check_name(const std::string& name, std::size_t at) {
    if (!p_->strict_names) return true;
    for (const Column& c : p_->schema) {
      if (c.name == name) return true;
    }
    std::string msg = "unknown column '" + name + "'";
    std::size_t best = 3;
    std::string suggestion;
    for (const Column& c : p_->schema) {
      const std::size_t d = edit_distance(name, c.name);
      if (d < best) {
        best = d;
        suggestion = c.name;
      }
    }
    if (!suggestion.empty()) msg += " (did you mean '" + suggestion + "'?)";
    fail(at, std::move(msg));
    return false;
  }
  int add_slot(const std::string& name) {
    for (std::size_t i = 0; i < p_->fields.size(); ++i) {
      if (p_->fields[i] == name) return static_cast<int>(i);
    }
    p_->fields.push_back(name);
    return static_cast<int>(p_->fields.size() - 1);
  }

  /// Resolves fields to slots; refuses aggregates and window bounds.
  bool event_phase(Expr& e, std::string_view where) {
    switch (e.op) {
      case Op::field:
        if (!check_name(e.name, e.offset)) return false;
        e.index = add_slot(e.name);
        e.type = declared(e.name);
        return true;
      case Op::window_start:
      case Op::window_end:
        fail(e.offset, std::string(e.op == Op::window_start ? "window_start" : "window_end") +
                           " is not allowed in " + std::string(where) +
                           " (only in SELECT and HAVING)");
        return false;
      case Op::agg:
        if (where == "an aggregate") {
          fail(e.offset, "aggregate functions cannot be nested");
        } else {
          fail(e.offset, "aggregate " + std::string(agg_name(e.agg)) + " is not allowed in " +
                             std::string(where));
        }
        return false;
      default:
        break;
    }
    if (e.op == Op::literal && e.type == SqlType::string) e.lit.s = e.name;
    for (auto& a : e.args) {
      if (!event_phase(*a, where)) return false;
    }
    return true;
  }

  /// Rewrites a SELECT or HAVING expression over keys, aggregates and window bounds. `top`: `e`
  /// is a whole SELECT item.
  bool row_phase(std::unique_ptr<Expr>& e, bool& has_agg, std::string_view where,
                 bool top = false) {
    if (e->op == Op::agg) {
      if (e->partial && where != "SELECT") {
        fail(e->offset, "PARTIAL is not allowed in " + std::string(where) +
                            " (its value is an encoded state, not a number)");
        return false;
      }
      if (e->partial && !top) {
        fail(e->offset,
             "PARTIAL(...) must be a whole SELECT item: its value is an encoded state, not a "
             "number");
        return false;
      }
      has_agg = true;
      return register_agg(e);
    }
    if (e->op != Op::literal) {
      const std::string c = canonical(*e);
      for (std::size_t k = 0; k < key_canon_.size(); ++k) {
        if (key_canon_[k] == c) {
          e->op = Op::key_ref;
          e->index = static_cast<int>(k);
          e->type = p_->keys[k]->type;
          e->args.clear();
          return true;
        }
      }
    }
    if (e->op == Op::field) {
      if (where == "HAVING") {  // an output column by its alias
        for (std::size_t i = 0; i < select_texts_.size(); ++i) {
          if (select_texts_[i] == e->name) {
            if (i < partial_columns_.size() && partial_columns_[i]) {
              fail(e->offset, "'" + e->name +
                                  "' is a PARTIAL state: HAVING cannot compare it (filter at "
                                  "the collector, on MERGE)");
              return false;
            }
            const std::size_t off = e->offset, len = e->length;
            e = clone(*p_->select[i]);
            e->offset = off;
            e->length = len;
            if (p_->output[i].is_aggregate) has_agg = true;
            return true;
          }
        }
      }
      if (!check_name(e->name, e->offset)) return false;
      fail(e->offset, "column '" + e->name + "' must appear in GROUP BY or in an aggregate");
      return false;
    }
    if (e->op == Op::literal && e->type == SqlType::string) e->lit.s = e->name;
    for (auto& a : e->args) {
      if (!row_phase(a, has_agg, where)) return false;
    }
    return true;
  }

  bool register_agg(std::unique_ptr<Expr>& e) {
    AggSpec spec;
    spec.kind = e->agg;
    spec.offset = e->offset;
    spec.text = text(*e);
    spec.canon = canonical(*e);
    spec.partial = e->partial;
    const std::string name(agg_name(e->agg));
    if (e->agg == AggKind::merge) {
      if (e->args.size() != 1) {
        fail(e->args.size() > 1 ? e->args[1]->offset : e->offset,
             "MERGE takes 1 argument (the field that carries a PARTIAL state), got " +
                 std::to_string(e->args.size()));
        return false;
      }
      const Expr& a = *e->args[0];
      if (a.op == Op::agg) {
        fail(a.offset,
             "MERGE takes the field that carries a PARTIAL state, not an aggregate (write "
             "PARTIAL(...) at the edge and MERGE(column) at the collector)");
        return false;
      }
      if (a.op != Op::field) {
        fail(a.offset, "MERGE takes the name of a field that carries a PARTIAL state");
        return false;
      }
      if (!event_phase(*e->args[0], "an aggregate") || !check(*e->args[0])) return false;
      const SqlType t = e->args[0]->type;
      if (!(t == SqlType::any || t == SqlType::string)) {
        fail(a.offset, "MERGE needs a field that carries a PARTIAL state (VARCHAR), '" + a.name +
                           "' is " + tn(t));
        return false;
      }
      spec.arg_type = t;
      spec.result_type = SqlType::any;  // the states' aggregate decides (COUNT: BIGINT, ...)
    }
    const std::size_t want = e->agg == AggKind::count_star          ? 0
                             : e->agg == AggKind::approx_percentile ? 2
                                                                    : 1;
    if (e->agg != AggKind::merge && e->args.size() != want) {
      const std::size_t at = e->args.size() > want ? e->args[want]->offset : e->offset;
      fail(at, name + " takes " +
                   (want == 2 ? std::string("2 arguments (value, quantile)")
                              : std::string("1 argument")) +
                   ", got " + std::to_string(e->args.size()));
      return false;
    }
    for (auto& a : e->args) {
      if (e->agg == AggKind::merge) break;  // checked above
      if (!event_phase(*a, "an aggregate")) return false;
      if (!check(*a)) return false;
    }
    if (want >= 1 && e->agg != AggKind::merge) spec.arg_type = e->args[0]->type;
    const Expr* arg = want >= 1 ? e->args[0].get() : nullptr;
    switch (spec.kind) {
      case AggKind::count_star:
      case AggKind::count:
      case AggKind::count_distinct:
        spec.result_type = SqlType::integer;
        break;
      case AggKind::sum:
      case AggKind::avg:
        if (!numeric(spec.arg_type)) {
          fail(arg->offset, name + " needs a number, got " + tn(spec.arg_type));
          return false;
        }
        spec.result_type = spec.kind == AggKind::avg        ? SqlType::floating
                           : spec.arg_type == SqlType::null ? SqlType::integer
                                                            : spec.arg_type;
        break;
      case AggKind::min:
      case AggKind::max:
      case AggKind::first_value:
      case AggKind::last_value:
        if (spec.arg_type == SqlType::interval) {
          fail(arg->offset, name + " cannot take an INTERVAL");
          return false;
        }
        spec.result_type = spec.arg_type;
        break;
      case AggKind::approx_percentile: {
        if (!numeric(spec.arg_type)) {
          fail(arg->offset, name + " needs a number, got " + tn(spec.arg_type));
          return false;
        }
        const Expr& q = *e->args[1];
        if (q.op != Op::literal || !(q.type == SqlType::floating || q.type == SqlType::integer)) {
          fail(q.offset, name + "'s quantile must be a number literal in [0, 1]");
          return false;
        }
        spec.q = q.type == SqlType::floating ? q.lit.d : static_cast<double>(q.lit.i);
        if (!(spec.q >= 0 && spec.q <= 1)) {
          fail(q.offset, name + "'s quantile must be in [0, 1], got " + text(q));
          return false;
        }
        spec.result_type = SqlType::floating;
        break;
      }
      case AggKind::merge:
        break;
    }
    if (spec.partial) spec.result_type = SqlType::string;  // base64 of the encoded state
    int index = -1;
    for (std::size_t i = 0; i < p_->aggs.size(); ++i) {
      if (p_->aggs[i].canon == spec.canon) index = static_cast<int>(i);
    }
    const SqlType result = spec.result_type;
    if (index < 0) {
      if (want >= 1) spec.arg = std::move(e->args[0]);
      p_->aggs.push_back(std::move(spec));
      index = static_cast<int>(p_->aggs.size() - 1);
    }
    e->op = Op::agg_ref;
    e->index = index;
    e->type = result;
    e->args.clear();
    return true;
  }

  SqlType unify(SqlType a, SqlType b, std::size_t at, std::string_view what) {
    if (a == b) return a;
    if (a == SqlType::null) return b;
    if (b == SqlType::null) return a;
    if (a == SqlType::any || b == SqlType::any) return SqlType::any;
    if (numeric(a) && numeric(b)) return SqlType::floating;
    fail(at, std::string(what) + " have incompatible types " + tn(a) + " and " + tn(b));
    return SqlType::null;
  }

  /// Types `e` (bottom-up); false with an error on a mismatch.
  bool check(Expr& e) {
    for (auto& a : e.args) {
      if (!check(*a)) return false;
    }
    auto arg = [&](std::size_t i) -> Expr& { return *e.args[i]; };
    switch (e.op) {
      case Op::literal:
      case Op::field:
      case Op::key_ref:
      case Op::agg_ref:
        return true;
      case Op::window_start:
      case Op::window_end:
        e.type = SqlType::timestamp;
        return true;
      case Op::neg:
        if (!numeric(arg(0).type) && arg(0).type != SqlType::interval) {
          fail(e.offset, "unary '-' needs a number, got " + tn(arg(0).type));
          return false;
        }
        e.type = arg(0).type;
        return true;
      case Op::not_:
        if (!boolish(arg(0).type)) {
          fail(arg(0).offset, "NOT needs a BOOLEAN, got " + tn(arg(0).type));
          return false;
        }
        e.type = SqlType::boolean;
        return true;
      case Op::add:
      case Op::sub:
      case Op::mul:
      case Op::div:
      case Op::mod: {
        const SqlType a = arg(0).type, b = arg(1).type;
        if (numeric(a) && numeric(b)) {
          e.type = (a == SqlType::any || b == SqlType::any)             ? SqlType::any
                   : (a == SqlType::floating || b == SqlType::floating) ? SqlType::floating
                                                                        : SqlType::integer;
          if (a == SqlType::null && b == SqlType::null) e.type = SqlType::null;
          return true;
        }
        if ((e.op == Op::add || e.op == Op::sub) &&
            (a == SqlType::timestamp || a == SqlType::interval) &&
            (b == SqlType::interval || b == SqlType::any)) {
          e.type = a;
          return true;
        }
        if (e.op == Op::add && a == SqlType::interval && b == SqlType::timestamp) {
          e.type = SqlType::timestamp;
          return true;
        }
        if (e.op == Op::sub && a == SqlType::timestamp && b == SqlType::timestamp) {
          e.type = SqlType::interval;
          return true;
        }
        fail(e.offset, "operator '" + std::string(op_text(e.op)) + "' cannot apply to " + tn(a) +
                           " and " + tn(b));
        return false;
      }
      case Op::concat:
        e.type = SqlType::string;
        return true;
      case Op::eq:
      case Op::ne:
      case Op::lt:
      case Op::le:
      case Op::gt:
      case Op::ge:
        if (!comparable(arg(0).type, arg(1).type)) {
          fail(e.offset, "cannot compare " + tn(arg(0).type) + " with " + tn(arg(1).type));
          return false;
        }
        e.type = SqlType::boolean;
        return true;
      case Op::and_:
      case Op::or_:
        for (std::size_t i = 0; i < 2; ++i) {
          if (!boolish(arg(i).type)) {
            fail(arg(i).offset,
                 std::string(op_text(e.op)) + " needs BOOLEAN operands, got " + tn(arg(i).type));
            return false;
          }
        }
        e.type = SqlType::boolean;
        return true;
      case Op::in:
        for (std::size_t i = 1; i < e.args.size(); ++i) {
          if (!comparable(arg(0).type, arg(i).type)) {
            fail(arg(i).offset, "IN list item of type " + tn(arg(i).type) +
                                    " cannot be compared with " + tn(arg(0).type));
            return false;
          }
        }
        e.type = SqlType::boolean;
        return true;
      case Op::between:
        for (std::size_t i = 1; i < 3; ++i) {
          if (!comparable(arg(0).type, arg(i).type)) {
            fail(e.offset, "cannot compare " + tn(arg(0).type) + " with " + tn(arg(i).type));
            return false;
          }
        }
        e.type = SqlType::boolean;
        return true;
      case Op::like:
        for (std::size_t i = 0; i < 2; ++i) {
          if (!stringish(arg(i).type)) {
            fail(arg(i).offset, "LIKE needs VARCHAR operands, got " + tn(arg(i).type));
            return false;
          }
        }
        e.type = SqlType::boolean;
        return true;
      case Op::is_null:
        e.type = SqlType::boolean;
        return true;
      case Op::case_: {
        const std::size_t pairs = (e.args.size() - (e.has_else ? 1 : 0)) / 2;
        SqlType t = SqlType::null;
        for (std::size_t i = 0; i < pairs; ++i) {
          if (!boolish(arg(2 * i).type)) {
            fail(arg(2 * i).offset, "WHEN needs a BOOLEAN condition, got " + tn(arg(2 * i).type));
            return false;
          }
          t = unify(t, arg(2 * i + 1).type, arg(2 * i + 1).offset, "CASE branches");
          if (!error_.message.empty()) return false;
        }
        if (e.has_else) {
          t = unify(t, e.args.back()->type, e.args.back()->offset, "CASE branches");
          if (!error_.message.empty()) return false;
        }
        e.type = t;
        return true;
      }
      case Op::cast:
        if (e.cast_to == SqlType::interval) {
          fail(e.offset, "cannot CAST to INTERVAL");
          return false;
        }
        e.type = e.cast_to;
        return true;
      case Op::call: {
        const std::string name = e.name;
        auto nargs = [&](std::size_t lo, std::size_t hi) {
          if (e.args.size() >= lo && e.args.size() <= hi) return true;
          const std::string want = lo == hi   ? std::to_string(lo)
                                   : hi > 100 ? "at least " + std::to_string(lo)
                                              : std::to_string(lo) + " or " + std::to_string(hi);
          fail(e.offset, name + " takes " + want + " argument" + (hi == 1 ? "" : "s") + ", got " +
                             std::to_string(e.args.size()));
          return false;
        };
        switch (e.func) {
          case Func::lower:
          case Func::upper:
            if (!nargs(1, 1)) return false;
            if (!stringish(arg(0).type)) {
              fail(arg(0).offset, name + " needs a VARCHAR, got " + tn(arg(0).type));
              return false;
            }
            e.type = SqlType::string;
            return true;
          case Func::length:
            if (!nargs(1, 1)) return false;
            if (!stringish(arg(0).type)) {
              fail(arg(0).offset, name + " needs a VARCHAR, got " + tn(arg(0).type));
              return false;
            }
            e.type = SqlType::integer;
            return true;
          case Func::abs:
            if (!nargs(1, 1)) return false;
            if (!numeric(arg(0).type)) {
              fail(arg(0).offset, name + " needs a number, got " + tn(arg(0).type));
              return false;
            }
            e.type = arg(0).type;
            return true;
          case Func::substr:
            if (!nargs(2, 3)) return false;
            if (!stringish(arg(0).type)) {
              fail(arg(0).offset, name + " needs a VARCHAR, got " + tn(arg(0).type));
              return false;
            }
            for (std::size_t i = 1; i < e.args.size(); ++i) {
              if (!(arg(i).type == SqlType::integer || arg(i).type == SqlType::any ||
                    arg(i).type == SqlType::null)) {
                fail(arg(i).offset, name + " positions must be BIGINT, got " + tn(arg(i).type));
                return false;
              }
            }
            e.type = SqlType::string;
            return true;
          case Func::concat:
            if (e.args.size() > 32) {
              fail(e.args[32]->offset, name + " takes at most 32 arguments");
              return false;
            }
            if (!nargs(1, 1000)) return false;
            e.type = SqlType::string;
            return true;
          case Func::coalesce: {
            if (!nargs(1, 1000)) return false;
            SqlType t = SqlType::null;
            for (auto& a : e.args) {
              t = unify(t, a->type, a->offset, "COALESCE arguments");
              if (!error_.message.empty()) return false;
            }
            e.type = t;
            return true;
          }
        }
        return true;
      }
      case Op::agg:
        return true;  // replaced before checking
    }
    return true;
  }

  std::string_view sql_;
  const CompileOptions& options_;
  CompileError& error_;
  QueryPlan* p_ = nullptr;
  std::vector<std::string> key_canon_;
  std::vector<std::string> select_texts_;  // aliases ("" for none), by output column
  std::vector<bool> partial_columns_;      // by output column: a PARTIAL state
};

}  // namespace

std::shared_ptr<QueryPlan> plan(std::string_view sql, Statement st, const CompileOptions& options,
                                CompileError& error) {
  Planner p(sql, options, error);
  auto result = p.run(std::move(st));
  if (!error.message.empty()) return nullptr;
  return result;
}

}  // namespace sluice::sql

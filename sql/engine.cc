#include "sql/engine.h"

#include "sql/ast.h"
#include "sql/lexer.h"
#include "sql/plan.h"
#include "sql/window_operator.h"

namespace sluice::sql {

std::string_view type_name(SqlType t) noexcept {
  switch (t) {
    case SqlType::null:
      return "NULL";
    case SqlType::boolean:
      return "BOOLEAN";
    case SqlType::integer:
      return "BIGINT";
    case SqlType::floating:
      return "DOUBLE";
    case SqlType::string:
      return "VARCHAR";
    case SqlType::timestamp:
      return "TIMESTAMP";
    case SqlType::interval:
      return "INTERVAL";
    case SqlType::any:
      return "ANY";
  }
  return "?";
}

std::string CompileError::str() const {
  return std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

Result<CompiledQuery> compile(std::string_view sql, const CompileOptions& options,
                              CompileError* error) {
  CompileError err;
  std::shared_ptr<QueryPlan> p;
  if (auto st = parse(sql, err)) p = plan(sql, std::move(*st), options, err);
  if (!p) {
    locate(sql, err);
    Status st(Errc::config, err.str());
    if (error != nullptr) *error = std::move(err);
    return st;
  }
  return CompiledQuery(std::move(p));
}

std::optional<std::string_view> CompiledQuery::insert_into() const noexcept {
  if (!plan_->insert_into) return std::nullopt;
  return std::string_view(*plan_->insert_into);
}
std::string_view CompiledQuery::from() const noexcept { return plan_->from; }
std::optional<std::string_view> CompiledQuery::table_name() const noexcept {
  if (!plan_->table_name) return std::nullopt;
  return std::string_view(*plan_->table_name);
}
const std::vector<Column>& CompiledQuery::schema() const noexcept { return plan_->schema; }
std::optional<std::string_view> CompiledQuery::watermark_column() const noexcept {
  if (!plan_->watermark_column) return std::nullopt;
  return std::string_view(*plan_->watermark_column);
}
std::optional<std::int64_t> CompiledQuery::watermark_delay_ns() const noexcept {
  return plan_->watermark_delay_ns;
}
const WindowSpec& CompiledQuery::window() const noexcept { return plan_->window; }
const std::vector<OutputColumn>& CompiledQuery::output() const noexcept { return plan_->output; }
const std::vector<std::string>& CompiledQuery::referenced_fields() const noexcept {
  return plan_->fields;
}
std::size_t CompiledQuery::state_bytes_per_group() const noexcept {
  return plan_->state_bytes_per_group;
}
std::uint64_t CompiledQuery::fingerprint() const noexcept { return plan_->fingerprint; }

namespace {

std::string duration_text(std::int64_t ns) {
  struct Unit {
    std::int64_t ns;
    const char* name;
  };
  static constexpr Unit kUnits[] = {{86'400'000'000'000, "d"}, {3'600'000'000'000, "h"},
                                    {60'000'000'000, "min"},   {1'000'000'000, "s"},
                                    {1'000'000, "ms"},         {1'000, "us"}};
  for (const Unit& u : kUnits) {
    if (ns != 0 && ns % u.ns == 0) return std::to_string(ns / u.ns) + u.name;
  }
  return std::to_string(ns) + "ns";
}

}  // namespace

std::string CompiledQuery::explain() const {
  const QueryPlan& p = *plan_;
  std::string out;
  out += "source:     " + p.from;
  if (p.table_name) out += " (CREATE TABLE, " + std::to_string(p.schema.size()) + " columns)";
  out += "\n";
  out +=
      "target:     " + (p.insert_into ? *p.insert_into : std::string("(pipeline config)")) + "\n";
  out += "event time: ";
  if (p.watermark_column) {
    out += p.watermark_column->c_str();
    if (p.watermark_delay_ns) out += ", watermark delay " + duration_text(*p.watermark_delay_ns);
  } else {
    out += "(runner options)";
  }
  out += "\n";
  out += "filter:     " + (p.where ? p.where_text : std::string("(none)")) + "\n";
  out += "key:        ";
  if (p.key_texts.empty()) out += "(none)";
  for (std::size_t i = 0; i < p.key_texts.size(); ++i) {
    if (i > 0) out += ", ";
    out += p.key_texts[i] + " " + std::string(type_name(p.keys[i]->type));
  }
  out += "\n";
  out += "window:     ";
  switch (p.window.kind) {
    case WindowKind::tumble:
      out += "TUMBLE " + duration_text(p.window.size_ns);
      break;
    case WindowKind::hop:
      out += "HOP size " + duration_text(p.window.size_ns) + " slide " +
             duration_text(p.window.slide_ns) + " (each event in " +
             std::to_string(p.window.size_ns / p.window.slide_ns) + " windows)";
      break;
    case WindowKind::session:
      out += "SESSION gap " + duration_text(p.window.size_ns);
      break;
  }
  out += "\n";
  out += "aggregates:";
  if (p.aggs.empty()) out += " (none)";
  out += "\n";
  for (const AggSpec& a : p.aggs) {
    out += "  " + a.text + " -> " + std::string(type_name(a.result_type));
    if (a.kind == AggKind::count_distinct) {
      out += " (exact up to distinct_exact_limit, then HyperLogLog, 0.81% standard error)";
    }
    if (a.kind == AggKind::approx_percentile) out += " (DDSketch, 1% relative error)";
    out += "\n";
  }
  out += "having:     " + (p.having ? p.having_text : std::string("(none)")) + "\n";
  out += "output:     ";
  for (std::size_t i = 0; i < p.output.size(); ++i) {
    if (i > 0) out += ", ";
    out += p.output[i].name + " " + std::string(type_name(p.output[i].type));
  }
  out += "\n";
  out += "reads:      ";
  for (std::size_t i = 0; i < p.fields.size(); ++i) {
    if (i > 0) out += ", ";
    out += p.fields[i];
  }
  out += "\n";
  out += "state:      about " + std::to_string(p.state_bytes_per_group) +
         " bytes per group and open window";
  bool distinct = false;
  for (const AggSpec& a : p.aggs) distinct |= a.kind == AggKind::count_distinct;
  if (distinct) out += ", plus up to 32 bytes per distinct value (16 KiB once HyperLogLog)";
  out += "\n";
  return out;
}

WindowRunner::WindowRunner(std::unique_ptr<WindowOperator> op) : op_(std::move(op)) {}
WindowRunner::~WindowRunner() = default;

Result<std::unique_ptr<WindowRunner>> WindowRunner::create(const CompiledQuery& query,
                                                           RunnerOptions options) {
  if (options.allowed_lateness_ns < 0) {
    return Status(Errc::config, "allowed_lateness must not be negative");
  }
  if (options.watermark_delay_ns && *options.watermark_delay_ns < 0) {
    return Status(Errc::config, "watermark_delay must not be negative");
  }
  if (options.distinct_exact_limit > sketch::DistinctCounter::kMaxExactLimit) {
    return Status(Errc::config, "distinct_exact_limit must be at most " +
                                    std::to_string(sketch::DistinctCounter::kMaxExactLimit));
  }
  if (options.time_source == TimeSource::field && options.time_field.empty() &&
      !query.watermark_column()) {
    return Status(Errc::config,
                  "event time from a field needs time_field (or a WATERMARK in the query)");
  }
  if (options.now_ns == nullptr) options.now_ns = &wall_clock_ns;
  return std::unique_ptr<WindowRunner>(
      new WindowRunner(std::make_unique<WindowOperator>(query, std::move(options))));
}

EventOutcome WindowRunner::on_event(const EventView& event) { return op_->on_event(event); }
std::size_t WindowRunner::on_batch(const Batch& batch) {
  std::size_t late = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    late += op_->on_event(batch[i]) == EventOutcome::late ? 1 : 0;
  }
  return late;
}
std::int64_t WindowRunner::watermark() const noexcept { return op_->watermark(); }
const std::string& WindowRunner::last_bad_state() const noexcept { return op_->last_bad_state(); }
void WindowRunner::advance_watermark(std::int64_t watermark_ns) noexcept {
  op_->advance_watermark(watermark_ns);
}
std::size_t WindowRunner::emit_closed(Batch& out, std::size_t max_rows) {
  return op_->emit_closed(out, max_rows);
}
bool WindowRunner::has_pending_rows() const noexcept { return op_->has_pending_rows(); }
std::size_t WindowRunner::advance(std::int64_t watermark_ns, Batch& out) {
  op_->advance_watermark(watermark_ns);
  return op_->emit_closed(out, SIZE_MAX);
}
std::size_t WindowRunner::flush(Batch& out, std::size_t max_rows) {
  return op_->flush(out, max_rows);
}
std::size_t WindowRunner::state_bytes() const noexcept { return op_->state_bytes(); }
std::size_t WindowRunner::open_windows() const noexcept { return op_->open_windows(); }
const RunnerStats& WindowRunner::stats() const noexcept { return op_->stats(); }
void WindowRunner::serialize_state(std::string& out) const { op_->serialize_state(out); }
Status WindowRunner::restore_state(std::string_view data) { return op_->restore_state(data); }

}  // namespace sluice::sql

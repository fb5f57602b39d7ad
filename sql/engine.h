#pragma once

// The public face of sluice's SQL window engine: compile a query once, then run it over events.
// Pure computation: no libuv, no I/O, no clock except the one handed in through RunnerOptions.
// One WindowRunner is driven by one thread (the agent's loop thread); a CompiledQuery is immutable
// and may be shared by any number of runners.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/batch.h"
#include "lib/core/clock.h"
#include "lib/core/result.h"
#include "lib/core/status.h"
#include "lib/parse/time_format.h"

namespace sluice::sql {

/// The type of a value in a query. `timestamp` is nanoseconds since the Unix epoch (UTC);
/// `interval` is a duration in nanoseconds.
/// `any`: not known before run time (a field read without a declared schema); such a value takes
/// the type of the parsed field (integer, floating, string, boolean, null; JSON objects as
/// strings).
enum class SqlType : std::uint8_t {
  null,
  boolean,
  integer,
  floating,
  string,
  timestamp,
  interval,
  any,
};
std::string_view type_name(SqlType t) noexcept;  // "BOOLEAN", "BIGINT", "DOUBLE", "VARCHAR", ...

/// Where in the SQL text a compile error lies. `offset` is a byte offset into the text handed to
/// compile(); `line` and `column` are 1-based (column counts bytes), so the agent can add them to
/// the position of the SQL string inside its configuration file.
struct CompileError {
  std::string message;  // "unknown column 'usr' (did you mean 'uid'?)"
  std::size_t offset = 0;
  std::uint32_t line = 1;
  std::uint32_t column = 1;
  /// "1:23: unknown column 'usr'".
  std::string str() const;
};

/// A column of `CREATE TABLE name (...)` or of a schema the agent declares for a source.
struct Column {
  std::string name;  // as written; nested paths keep their dots ("user.id")
  SqlType type = SqlType::string;
  bool not_null = false;
};

struct CompileOptions {
  /// Known input fields of the FROM source, when the agent knows them (e.g. the json format's
  /// `fields` list). When set, or when the query declares CREATE TABLE, an unknown name is an
  /// error; otherwise any name is accepted and read from the event's parsed fields at run time.
  std::optional<std::vector<Column>> schema;
};

enum class WindowKind : std::uint8_t { tumble, hop, session };

/// The window of GROUP BY. Durations in nanoseconds; `slide_ns` equals `size_ns` for TUMBLE;
/// for SESSION, `size_ns` is the inactivity gap and `slide_ns` is 0.
struct WindowSpec {
  WindowKind kind = WindowKind::tumble;
  std::int64_t size_ns = 0;
  std::int64_t slide_ns = 0;
};

/// One column of the query's output rows, in SELECT order.
struct OutputColumn {
  std::string name;  // the alias, or the expression's text as written
  SqlType type = SqlType::null;
  bool is_aggregate = false;
};

struct QueryPlan;  // sql/plan.h; opaque here

/// A query that compiled: immutable, cheap to copy (shares its plan).
class CompiledQuery {
 public:
  /// The channel of `INSERT INTO <channel>`; nullopt for a bare SELECT (the agent then takes the
  /// target from the pipeline configuration).
  std::optional<std::string_view> insert_into() const noexcept;
  /// The name after FROM (a configured source, or the CREATE TABLE name that stands for it).
  std::string_view from() const noexcept;
  /// The CREATE TABLE name, if the query declared one.
  std::optional<std::string_view> table_name() const noexcept;
  /// The declared columns (CREATE TABLE, or CompileOptions::schema); empty when none.
  const std::vector<Column>& schema() const noexcept;
  /// `WATERMARK FOR col AS col - INTERVAL ...`: the event-time column and its delay.
  std::optional<std::string_view> watermark_column() const noexcept;
  std::optional<std::int64_t> watermark_delay_ns() const noexcept;
  const WindowSpec& window() const noexcept;
  const std::vector<OutputColumn>& output() const noexcept;
  /// Every input field the query reads (WHERE, keys, aggregate arguments, the watermark column),
  /// so the agent can ask the source's format to extract just these.
  const std::vector<std::string>& referenced_fields() const noexcept;
  /// Estimated state bytes of one group in one open window (keys, aggregate states; a
  /// COUNT(DISTINCT) counted at its exact limit is not included: see explain()).
  std::size_t state_bytes_per_group() const noexcept;
  /// A multi-line description: source, filter, key, window, aggregates, having, output columns
  /// and the state size estimate.
  std::string explain() const;
  /// A hash of the plan; checkpointed state is only restored into a runner of the same plan.
  std::uint64_t fingerprint() const noexcept;

  const QueryPlan& plan() const noexcept { return *plan_; }
  explicit CompiledQuery(std::shared_ptr<const QueryPlan> plan) : plan_(std::move(plan)) {}

 private:
  std::shared_ptr<const QueryPlan> plan_;
};

/// Compiles `sql`: `[CREATE TABLE ...;] [INSERT INTO ch] SELECT ... FROM src [WHERE ...]
/// GROUP BY <window>[, expr ...] [HAVING ...]`. On failure the Status (Errc::config) carries
/// CompileError::str(), and `error`, when given, receives the structured error.
Result<CompiledQuery> compile(std::string_view sql, const CompileOptions& options = {},
                              CompileError* error = nullptr);

/// Where a runner takes an event's time from.
enum class TimeSource : std::uint8_t {
  /// The event's timestamp_ns() (the source's `timestamp` setting, or arrival time).
  event_timestamp,
  /// A parsed field (`time_field`), read with `time_format`, or as epoch milliseconds if it is an
  /// integer and no format is given.
  field,
  /// RunnerOptions::now_ns() at on_event.
  processing,
};

struct RunnerOptions {
  /// event_timestamp with a query that declares a WATERMARK column (CREATE TABLE, or
  /// TUMBLE(col, ...)) and no time_field means TimeSource::field on that column.
  TimeSource time_source = TimeSource::event_timestamp;
  /// For TimeSource::field. Empty: the query's WATERMARK column.
  std::string time_field;
  /// For TimeSource::field; nullopt: "iso8601" in UTC for strings, epoch ms for integers.
  std::optional<parse::TimeFormat> time_format;
  /// watermark = max event time seen - delay. nullopt: the query's WATERMARK delay, else 0.
  std::optional<std::int64_t> watermark_delay_ns;
  /// A window closes once the watermark reaches its end + allowed_lateness.
  std::int64_t allowed_lateness_ns = 0;
  /// Beyond this many bytes of open windows' state, the oldest windows close early (counted in
  /// RunnerStats::windows_closed_early; later events for them are late). Closed windows count
  /// in state_bytes() until their rows have been emitted.
  std::size_t max_state_bytes = std::size_t{64} << 20;
  /// COUNT(DISTINCT): exact up to this many values per group and window, then HyperLogLog.
  std::size_t distinct_exact_limit = 1024;
  /// The producing agent's name that PARTIAL states carry (the `[agent] name`), so that a
  /// collector's MERGE keeps one state per (agent, window, key) and a re-sent one replaces it.
  std::string agent_name;
  /// Processing time (TimeSource::processing) and the year of year-less time formats.
  std::int64_t (*now_ns)() = &wall_clock_ns;
};

/// What on_event did with an event.
enum class EventOutcome : std::uint8_t {
  accepted,   // folded into at least one open window
  filtered,   // WHERE was false or NULL
  late,       // every window it belongs to had closed (end + allowed_lateness <= watermark)
  no_time,    // the event time was missing, did not parse or lay outside 1824..2116 (dropped)
  bad_state,  // MERGE: a field did not hold a decodable PARTIAL state that fits the window
              // (WindowRunner::last_bad_state() says why); not counted in any window
};

/// Counters of one runner (monotonic; restored from checkpoints along with the state).
struct RunnerStats {
  std::uint64_t events_accepted = 0;
  std::uint64_t events_filtered = 0;
  std::uint64_t events_late = 0;
  std::uint64_t events_without_time = 0;
  std::uint64_t rows_emitted = 0;
  std::uint64_t rows_filtered_by_having = 0;
  std::uint64_t windows_closed = 0;
  std::uint64_t windows_closed_early = 0;  // by max_state_bytes
  std::uint64_t eval_errors = 0;           // e.g. a CAST that failed (the value became NULL)
  // MERGE (not part of checkpoints: they restart from 0).
  std::uint64_t bad_states = 0;         // rows refused with EventOutcome::bad_state
  std::uint64_t partials_replaced = 0;  // states that replaced one of the same agent and window
};

class WindowOperator;  // sql/window_operator.h; opaque here

/// Runs one compiled query. Semantics (identical however events are batched):
/// - An event whose every window has end + allowed_lateness <= watermark() is late: it is
///   reported (EventOutcome::late) and not counted in any window.
/// - After each event that has a time (filtered and late ones too, as a source's watermark
///   would) the watermark becomes max(watermark, event time - delay); advance_watermark() may
///   raise it further (idle sources). It never goes back.
/// - Windows with end + allowed_lateness <= watermark() are closed: they take no more events and
///   their rows are appended by the next emit_closed() (or flush()).
/// - SESSION windows are per group key and run from their first event to their last + gap; an
///   event within `gap` of an open session extends it, one that bridges two open sessions of a
///   key merges them, and one that would start a session already closed (t + gap +
///   allowed_lateness <= watermark) is late.
/// - Output: one event per closed window and group that passes HAVING, appended to `out` with
///   timestamp = window end, id = a hash of (window, key) (the same after a restart), fields named
///   and typed by the SELECT list, body = the row as a JSON object. Rows come in window-end
///   order; within a TUMBLE/HOP window in the order groups were first seen, sessions of the same
///   end by start and key.
class WindowRunner {
 public:
  static Result<std::unique_ptr<WindowRunner>> create(const CompiledQuery& query,
                                                      RunnerOptions options);
  ~WindowRunner();
  WindowRunner(const WindowRunner&) = delete;
  WindowRunner& operator=(const WindowRunner&) = delete;

  /// Folds one parsed event into its windows. Does not allocate for COUNT/SUM/AVG/MIN/MAX once
  /// the group key and window have been seen; closed windows are recycled, so steady traffic
  /// does not allocate either.
  EventOutcome on_event(const EventView& event);
  /// Convenience: on_event for every event of `batch`; returns how many were late (the agent that
  /// routes late events to a side channel calls on_event itself).
  std::size_t on_batch(const Batch& batch);

  /// Why the last EventOutcome::bad_state happened ("field 'uv': not base64 text").
  const std::string& last_bad_state() const noexcept;
  /// The current watermark in ns (INT64_MIN before the first event).
  std::int64_t watermark() const noexcept;
  /// Raises the watermark to `watermark_ns` if higher (e.g. after idle_timeout).
  void advance_watermark(std::int64_t watermark_ns) noexcept;
  /// Appends the rows of closed windows to `out`, at most `max_rows` of them (the rest stay for
  /// the next call, in order: a window with 100k groups need not land in one batch); returns how
  /// many rows were appended.
  std::size_t emit_closed(Batch& out, std::size_t max_rows = SIZE_MAX);
  /// True while closed windows still have rows to emit.
  bool has_pending_rows() const noexcept;
  /// advance_watermark(watermark_ns) then emit_closed(out).
  std::size_t advance(std::int64_t watermark_ns, Batch& out);
  /// Closes every open window now and appends rows as emit_closed(out, max_rows) does
  /// (on_stop = "emit"). The watermark moves to the end (+ allowed_lateness) of the last of them,
  /// so that their rows are final: a later event for one of them is late.
  std::size_t flush(Batch& out, std::size_t max_rows = SIZE_MAX);

  /// Bytes of state held (windows, groups, aggregate states, key bytes).
  std::size_t state_bytes() const noexcept;
  std::size_t open_windows() const noexcept;
  const RunnerStats& stats() const noexcept;

  /// Appends a versioned encoding of the whole state (open and closed windows, watermark,
  /// counters) to `out`. Rows emit_closed() already returned are not part of it.
  void serialize_state(std::string& out) const;
  /// Replaces the state with one serialize_state() wrote for the same query (its fingerprint and
  /// window). Errc::invalid_data ("sql state: ...") if it does not decode or belongs to another
  /// query; the runner is then left empty.
  Status restore_state(std::string_view data);

 private:
  explicit WindowRunner(std::unique_ptr<WindowOperator> op);
  std::unique_ptr<WindowOperator> op_;
};

}  // namespace sluice::sql

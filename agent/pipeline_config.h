#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "lib/config/config_node.h"
#include "sql/engine.h"

namespace sluice {

/// Where the text of a TOML string value lies in its file, so that an offset into the decoded
/// string (an SQL error's position) can be reported as the file's line and column.
class TomlStringMap {
 public:
  /// `file_text` is the whole file; (`line`, `column`) is the value's source position as toml++
  /// reports it (1-based, at the opening quote). An unknown position maps every offset to it.
  TomlStringMap(std::string_view file_text, std::uint32_t line, std::uint32_t column);
  /// The file position (1-based line and column, columns in characters as toml++ counts them) of
  /// byte `offset` of the decoded string; an offset at or past its end maps to the closing quote.
  std::pair<std::uint32_t, std::uint32_t> position(std::size_t offset) const;

 private:
  std::string_view text_;
  std::uint32_t line_, column_;
  std::size_t open_ = std::string_view::npos;  // byte offset of the opening quote in text_
};

enum class OnStop : std::uint8_t { emit, keep };

/// One [pipelines.NAME] table, checked: the SQL compiled, its FROM and INSERT INTO resolved.
struct PipelineSpec {
  std::string name;
  std::string agent_name;  // [agent] name: PARTIAL states carry it
  bool agent_name_is_host = false;
  std::string sql;
  std::string source;               // FROM: a configured source
  std::string channel;              // INSERT INTO (or the `channel` key): where rows go
  std::string input_channel;        // the source's channel the pipeline reads with its own cursor
  bool input_durable = false;       // an lmdb input (else memory: no checkpoints, see pipeline.h)
  std::string event_time_field;     // empty: the event's timestamp (the source's `timestamp`)
  std::string event_time_format;    // empty: ISO 8601 text, or epoch milliseconds for a number
  std::string event_time_timezone;  // for text without an offset; empty: UTC
  std::chrono::nanoseconds watermark_delay{0};
  bool watermark_delay_set = false;
  bool processing_time = false;  // neither event_time nor the source's timestamp: arrival time
  std::chrono::nanoseconds allowed_lateness{0};
  std::chrono::nanoseconds idle_timeout{0};  // 0: never
  std::string late_channel;                  // empty: late events are dropped (and counted)
  OnStop on_stop = OnStop::emit;
  std::uint64_t max_state_bytes = 64ULL << 20;
  std::uint64_t distinct_exact_limit = 1024;  // as sql::RunnerOptions
  std::chrono::nanoseconds checkpoint_interval = std::chrono::seconds(1);
  std::shared_ptr<const sql::CompiledQuery> query;
};

/// The runner options a pipeline's settings mean (time source, watermark delay, bounds).
sql::RunnerOptions runner_options(const PipelineSpec& spec);

/// Finds the name after keyword `keyword` ("FROM", "INTO") in `sql`, as a byte offset, for error
/// positions; npos if not found.
std::size_t sql_name_offset(std::string_view sql, std::string_view keyword, std::string_view name);

}  // namespace sluice

#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/batch.h"
#include "lib/core/context.h"
#include "lib/core/log.h"
#include "lib/core/metrics.h"
#include "lib/parse/draft.h"
#include "lib/parse/formats.h"
#include "lib/parse/interceptors.h"
#include "lib/parse/multiline.h"
#include "lib/parse/time_format.h"

namespace sluice::parse {

enum class OnParseError : std::uint8_t { pass, drop, dead_letter };

/// What a source does to each record between reading it and putting it: `format`, event time,
/// interceptors, `on_parse_error`, and (for line sources) `multiline`.
struct PipelineConfig {
  enum class Format { raw, json, regex, logfmt };
  Format format = Format::raw;
  static std::string_view format_name(Format f) noexcept;
  std::string pattern;  // regex: a PCRE2 pattern or a ready name
  std::uint32_t match_limit = Regex::kDefaultMatchLimit;
  JsonOptions json;
  OnParseError on_parse_error = OnParseError::pass;
  std::string error_header = "parse_error";
  bool has_timestamp = false;
  std::string time_field;
  std::string time_format = "iso8601";
  std::string time_zone = "UTC";
  std::vector<InterceptorSpec> interceptors;
  MultilineConfig multiline;

  /// Reads every key above from a source's table; `lines` allows `multiline`.
  static bool parse(const ConfigNode& node, ConfigErrors& errors, PipelineConfig& out,
                    bool lines = true);
  /// Raw lines, no event time, no interceptors: sources may skip the pipeline.
  bool trivial() const noexcept {
    return format == Format::raw && !has_timestamp && interceptors.empty() && !multiline.enabled();
  }
};

/// Applies a PipelineConfig to records, one at a time, on the source's thread. Counts
/// sluice_source_parse_errors_total{reason}, sluice_source_timestamp_errors_total and
/// sluice_source_dropped_total{reason}; logs unparsable records (rate-limited) with where they
/// came from.
class EventPipeline {
 public:
  static Result<std::unique_ptr<EventPipeline>> make(const PipelineConfig& config,
                                                     const ComponentContext& ctx);

  enum class Outcome : std::uint8_t { kept, dropped, dead_letter };
  /// Turns `record` into an event appended to `out` (flagged for the dead-letter channel when
  /// it did not parse and on_parse_error = "dead_letter"), or drops it. `origin` and `offset` are
  /// for the log line of an unparsable record (e.g. the file path and the record's offset).
  Outcome process(const Record& record, std::int64_t arrival_ns, std::uint64_t id, Batch& out,
                  std::string_view origin = {}, std::uint64_t offset = 0);

  /// Every event of `in` (a network source's decoded request, headers included) through
  /// process(), into `out`; `origin` names the request in logs, offsets are event indices.
  void process_batch(const Batch& in, Batch& out, std::string_view origin);

  bool trivial() const noexcept { return trivial_; }
  const PipelineConfig& config() const noexcept { return config_; }
  /// Multiline rules for this source's assemblers; null without `multiline`.
  MultilineRules* multiline() noexcept { return rules_ ? &*rules_ : nullptr; }
  /// Reports the assemblers' counters as metrics (call after using them).
  void sync_multiline_metrics();

 private:
  EventPipeline(const PipelineConfig& config, const ComponentContext& ctx);

  PipelineConfig config_;
  bool trivial_ = false;
  std::unique_ptr<Format> format_;
  std::optional<TimeFormat> time_;
  TimeFormat::SecondCache time_cache_;  // for time_
  std::vector<std::unique_ptr<Interceptor>> interceptors_;
  std::optional<MultilineRules> rules_;
  Draft draft_;
  std::vector<Header> headers_;  // process_batch() scratch
  std::string source_name_;

  std::array<Counter*, kParseErrorCount> parse_errors_{};
  Counter* time_errors_ = nullptr;
  Counter* dropped_parse_ = nullptr;
  Counter* dropped_filter_ = nullptr;
  Counter* multiline_overflows_ = nullptr;
  std::uint64_t container_errors_seen_ = 0, overflows_seen_ = 0;
  RateLimiter parse_log_, time_log_;
};

/// Spare instances of a source's pipeline for requests processed on the uv threadpool (a large
/// HTTP body or Avro call): an instance is used by one thread at a time, taken and given back on
/// the loop thread. Instances share the source's counters (the registry hands out the same series)
/// and keep their own scratch (parser buffers, log rate limits).
class PipelinePool {
 public:
  PipelinePool(const PipelineConfig& config, const ComponentContext& ctx, std::size_t keep)
      : config_(config), ctx_(ctx), keep_(keep) {}
  /// A spare instance, or a new one; null if one cannot be made (the caller then runs the
  /// records through its own instance, on the loop).
  std::unique_ptr<EventPipeline> take();
  /// Keeps at most `keep` spares; the others are freed.
  void give(std::unique_ptr<EventPipeline> p);

 private:
  PipelineConfig config_;
  const ComponentContext& ctx_;
  std::size_t keep_;
  std::vector<std::unique_ptr<EventPipeline>> spare_;
};

}  // namespace sluice::parse

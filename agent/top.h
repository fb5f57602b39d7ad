#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/result.h"

namespace sluice::top {

/// One series of a Prometheus text exposition.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

/// Parses the Prometheus text format that /metrics serves (comments skipped).
std::vector<Sample> parse_metrics(std::string_view text);

/// One component as /api/v1/status lists it, with the figures top derives for it.
struct Row {
  std::string kind;  // source, channel, sink_group, sink
  std::string name;
  std::string type;
  std::string state;
  std::map<std::string, double> totals;  // counters and gauges summed per metric name
  std::string active_sink;               // groups
  std::vector<std::string> members;      // groups: the sinks of sluice_group_active_sink
  double pending = 0;                    // sources: batches put but not yet safe
  double in_flight = 0;                  // groups
};

/// A scrape of one agent: its status and metrics, taken at `at_ms` (steady clock).
struct Snapshot {
  std::string agent, version, state;
  std::uint64_t uptime_s = 0;
  std::vector<Row> rows;
  double at_ms = 0;
};

/// Builds a snapshot from the two documents the admin endpoint serves.
Result<Snapshot> make_snapshot(std::string_view status_json, std::string_view metrics_text,
                               double at_ms);

enum class SortBy { name, rate };

/// Renders `now` as lines of at most `width` columns; rates come from `before` (when it is of
/// the same agent and older), else they are shown as "-".
std::vector<std::string> render(const Snapshot* before, const Snapshot& now, std::string_view admin,
                                std::size_t width, SortBy sort);

/// A blocking HTTP GET of `path` from `address` (HOST:PORT) with a timeout; the body on 200.
Result<std::string> http_get(const std::string& address, const std::string& path, int timeout_ms);

struct Options {
  std::string admin;        // HOST:PORT, or empty to find it from config_path
  std::string config_path;  // the agent's configuration: data_dir/admin.addr, else [agent].admin
  bool once = false;
  double interval_s = 1.0;
};

/// `sluice top`: returns the exit code.
int run(const Options& options);

}  // namespace sluice::top

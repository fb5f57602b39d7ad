#pragma once

#include <cstdio>
#include <string>

#include "agent/agent_config.h"

namespace sluice {

/// `sluice sql explain`: prints the plan of every pipeline of `cfg` (or of `pipeline` only).
/// Returns the exit code (1 if `pipeline` names none).
int sql_explain(const AgentConfig& cfg, const std::string& pipeline, std::FILE* out,
                std::FILE* err);

struct SqlRunOptions {
  std::string query;
  std::string input;             // a file of events, one per line; "-" for stdin
  std::string format = "json";   // json | raw
  std::string event_time;        // FIELD or FIELD:FORMAT; empty: the query's WATERMARK or
                                 // the time each line is read
  std::string watermark_delay;   // "5s"; empty: the query's, else 0
  std::string allowed_lateness;  // "0s"
  std::string output = "table";  // table | ndjson
};

/// `sluice sql run`: evaluates the query over the events of a file and prints its rows (every
/// window still open at the end of the input is closed then). Returns the exit code: 0, 1 when
/// the input cannot be read, 2 for a bad query or option.
int sql_run(const SqlRunOptions& options, std::FILE* out, std::FILE* err);

}  // namespace sluice

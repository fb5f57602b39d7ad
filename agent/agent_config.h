#pragma once

#include <any>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/pipeline_config.h"
#include "agent/registry.h"
#include "lib/config/config_node.h"
#include "sinks/group/sink_group.h"

namespace sluice {

struct AgentSettings {
  std::string name;          // default: the host name
  bool name_is_host = true;  // no [agent] name was given
  std::string data_dir = "/var/lib/sluice";
  std::string admin = "127.0.0.1:24280";
  std::chrono::nanoseconds shutdown_timeout = std::chrono::seconds(10);
  std::uint32_t max_pending_puts = 4;
};

struct SourceSpec {
  std::string name, type;
  std::vector<std::string> channels;
  std::string dead_letter_channel;  // parse failures with on_parse_error = "dead_letter"
  std::any config;
};

struct ChannelSpec {
  std::string name, type;
  std::any config;
};

struct SinkSpec {
  std::string name, type;
  std::chrono::nanoseconds delivery_timeout = std::chrono::seconds(5);
  std::any config;
};

struct GroupSpec {
  std::string name;
  std::string channel;
  std::string processor = "default";  // a registered processor: "default", "failover", ...
  std::any processor_config;          // what the processor's parse() read from this table
  std::vector<std::string> sinks;     // failover: in priority order, preferred first
  std::optional<std::string> dead_letter;
  sinks::GroupConfig config;
  bool implicit = false;  // a sink with its own `channel`: a group of one named after it
};

/// The whole, checked configuration of one agent; nothing in it refers to the TOML text.
struct AgentConfig {
  std::string file;
  std::string text;  // the file's text as parsed: a reload compares each component's table
  AgentSettings agent;
  std::vector<SourceSpec> sources;
  std::vector<ChannelSpec> channels;
  std::vector<SinkSpec> sinks;
  std::vector<GroupSpec> groups;
  std::vector<PipelineSpec> pipelines;
};

/// Parses and checks everything: syntax, every component's keys, and the references between
/// components. Appends every error found (sorted by position) and returns nullopt if any.
std::optional<AgentConfig> parse_config(std::string_view text, const std::string& file,
                                        const Registry& registry, ConfigErrors& errors);
/// The largest configuration file load_config() reads (so `-c /dev/zero` is an error, not a hang).
inline constexpr std::size_t kMaxConfigBytes = 1 << 20;

/// Reads `path` and calls parse_config(); an unreadable file, a directory or a file larger than
/// kMaxConfigBytes is one error.
std::optional<AgentConfig> load_config(const std::string& path, const Registry& registry,
                                       ConfigErrors& errors);

}  // namespace sluice

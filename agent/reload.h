#pragma once

#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/agent_config.h"

namespace sluice::reload {

/// One text per component of a checked configuration: its TOML table as toml++ prints it (keys
/// sorted, comments and layout gone), plus what the checks resolved from other tables (a
/// pipeline's input channel). Two configurations with equal prints for a component build the same
/// component.
struct Prints {
  std::string agent;
  std::map<std::string, std::string, std::less<>> sources, channels, sinks, groups, pipelines;
};

/// The prints of `config` (parsed from config.text).
Prints fingerprints(const AgentConfig& config);

using NameSet = std::set<std::string, std::less<>>;

/// What a reload does. `retire_*` name components of the running configuration that stop and are
/// destroyed (changed, removed, or depending on one that is); `build_*` name components of the
/// new configuration that are created (new, or replacing a retired one). Everything else keeps
/// running untouched.
struct Plan {
  NameSet retire_sources, retire_channels, retire_sinks, retire_groups, retire_pipelines;
  NameSet build_sources, build_channels, build_sinks, build_groups, build_pipelines;
  bool empty() const;
  /// One line for the log and the API: "channels ~buf; sinks +b -a; sink_groups ~g" (+ new,
  /// - removed, ~ replaced), or "no component changed".
  std::string summary() const;
};

/// Whether a channel type has one cursor that a new sink group can take over from a retired one
/// (memory: true). A channel with named cursors (lmdb) is itself replaced when one of its readers
/// goes away, so that a cursor nobody reads cannot hold its records.
using SingleCursor = std::function<bool(std::string_view channel_type)>;

/// Computes what changes from `old_config` to `next`, closing over the dependencies: a replaced
/// channel replaces its sink groups, the sources and pipelines that write to or read it; a
/// replaced sink replaces its group and the group's other members; a replaced group replaces
/// its sinks.
Plan plan(const AgentConfig& old_config, const Prints& old_prints, const AgentConfig& next,
          const Prints& next_prints, const SingleCursor& single_cursor);

/// What a reload cannot change ([agent] data_dir and admin), one message each; empty if none.
std::vector<std::string> unchangeable(const AgentConfig& old_config, const AgentConfig& next);

}  // namespace sluice::reload

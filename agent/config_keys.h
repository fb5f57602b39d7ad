#pragma once

#include <string>
#include <vector>

#include "agent/agent_config.h"
#include "agent/registry.h"
#include "lib/config/config_node.h"

namespace sluice {

/// The keys the configuration code accepts in one table of a file, as `sluice check` reads it:
/// every key any required()/optional()/mark_known() asked for, whether the file sets it or not.
struct TableKeys {
  std::string path;               // "sources.app", "sources.app.tls", "sinks.hub.fields[0]"
  std::vector<std::string> keys;  // sorted
};

/// Loads and checks `path` as `sluice check` does and lists, per table in the order first seen,
/// the keys the code asked for. Keys read only for other settings (regex's `pattern` only with
/// format = "regex", a sub-table's keys only when it is present) appear only when the file
/// takes that branch. `errors` gets the configuration's errors; the list is filled either way.
std::vector<TableKeys> list_config_keys(const std::string& path, const Registry& registry,
                                        ConfigErrors& errors);

/// `sluice check -c FILE --list-keys`: prints "PATH: key key ..." per table on stdout (errors
/// on stderr) and returns the exit code (0, or 2 for configuration errors).
int print_config_keys(const std::string& path, const Registry& registry);

}  // namespace sluice

#pragma once

#include <optional>

#include "lib/config/config_node.h"
#include "sinks/group/processors.h"

namespace sluice {

// The keys each processor reads from its [sink_groups.NAME] table. They live beside the
// registration (agent/builtin_components.cc) because the processors themselves take plain
// constructor arguments.

/// processor = "default": the group's one sink. No keys of its own.
struct DefaultProcessorConfig {
  static std::optional<DefaultProcessorConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// processor = "failover": the sinks in priority order. No keys of its own.
struct FailoverProcessorConfig {
  static std::optional<FailoverProcessorConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// processor = "load_balance".
struct LoadBalanceProcessorConfig {
  sinks::Selector selector = sinks::Selector::round_robin;  // selector = "round_robin" | "random"
  static std::optional<LoadBalanceProcessorConfig> parse(const ConfigNode& node,
                                                         ConfigErrors& errors);
};

}  // namespace sluice

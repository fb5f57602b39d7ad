#pragma once

#include <functional>
#include <string>

#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/core/shared_resources.h"

namespace sluice {

class SourceOutput;

/// What the agent hands every component's create(): the loop, the metrics, its identity, and the
/// resources its components share.
struct ComponentContext {
  Loop& loop;
  MetricsRegistry& metrics;
  std::string name;      // the table key: [sinks.NAME]
  std::string type;      // the `type` value
  std::string data_dir;  // the agent's data_dir, created before any component
  /// The agent's store of shared resources, outliving every component. Null for components that
  /// share nothing; a component that needs it (lmdb) refuses to start without one.
  SharedResources* shared = nullptr;

  /// The labels every series of this component carries.
  Labels labels() const { return {{"component", name}, {"type", type}}; }
};

struct SourceContext : ComponentContext {
  SourceOutput& output;
  /// Asks the agent to shut down gracefully (stdin at EOF with exit_on_eof).
  std::function<void()> request_shutdown;
};

using ChannelContext = ComponentContext;
using SinkContext = ComponentContext;

}  // namespace sluice

#pragma once

#include <cstdint>
#include <string>

#include "lib/core/sink.h"  // StopCallback
#include "lib/core/status.h"

namespace sluice {

/// A source reads input on the loop thread and hands batches to its SourceOutput.
class Source {
 public:
  virtual ~Source() = default;
  virtual Status start() = 0;
  /// Stops reading and accepting; `on_stopped` runs once no put of this source is pending.
  virtual void stop(StopCallback on_stopped) = 0;
  /// Shutdown step 4: persist the last safe checkpoint. Never persists anything unsafe.
  virtual void persist_checkpoint() {}
  /// True once the input is exhausted for good (stdin closed, exec child exited without restart).
  virtual bool finished() const noexcept { return false; }
  /// A network source's bound "HOST:PORT" after start(); the agent writes it to
  /// data_dir/NAME.addr. Empty for other sources.
  virtual std::string bound_address() const { return {}; }
};

}  // namespace sluice

#pragma once

#include <cstddef>
#include <optional>

#include "agent/core/clock.h"
#include "agent/core/sink.h"

namespace sluice {

/// Picks the sink for the next batch of a sink group and keeps the members' penalties. It never
/// takes, commits or delivers: the group does (sinks/group/sink_group.h).
class Processor {
 public:
  virtual ~Processor() = default;
  /// The sink for the next batch, or nullptr when every member is penalised.
  virtual Sink* pick(TimePoint now) = 0;
  /// The sink answered Retry or timed out: back it off.
  virtual void penalize(Sink& sink, TimePoint now) = 0;
  virtual void succeeded(Sink& sink) = 0;
  /// When pick() returned nullptr: the earliest moment a member may be picked again.
  virtual TimePoint next_ready(TimePoint now) const = 0;
};

}  // namespace sluice

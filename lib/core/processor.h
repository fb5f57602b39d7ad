#pragma once

#include <cstddef>
#include <optional>

#include "lib/core/clock.h"
#include "lib/core/sink.h"

namespace sluice {

/// Picks the sink for the next batch of a sink group and keeps the members' penalties. It never
/// takes, commits or delivers: the group does (sinks/group/sink_group.h).
class Processor {
 public:
  virtual ~Processor() = default;
  /// The sink for the next batch, or nullptr when every member is penalised or being probed.
  virtual Sink* pick(TimePoint now) = 0;
  /// The sink answered Retry, timed out or failed its probe: back it off.
  virtual void penalize(Sink& sink, TimePoint now) = 0;
  /// The sink delivered or passed its probe: it is healthy again.
  virtual void succeeded(Sink& sink) = 0;
  /// When pick() returned nullptr: the earliest moment a member may be picked again.
  virtual TimePoint next_ready(TimePoint now) const = 0;
  /// A member whose penalty has ended and that has not succeeded since, not being probed yet:
  /// the group probes it before sending it real batches. nullptr if none.
  virtual Sink* due_for_probe(TimePoint now) = 0;
  /// While probing, pick() skips the sink.
  virtual void set_probing(Sink& sink, bool probing) = 0;
  /// The sink has no health probe: once its penalty ends it takes the next batch as its trial.
  virtual void set_no_probe(Sink& sink) { (void)sink; }
  /// True when some member is not penalised (for /readyz: the group can deliver).
  virtual bool has_live(TimePoint now) const { return next_ready(now) <= now; }
};

}  // namespace sluice

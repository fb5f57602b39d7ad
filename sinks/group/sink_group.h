#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/config/config_node.h"
#include "agent/core/channel.h"
#include "agent/core/clock.h"
#include "agent/core/context.h"
#include "agent/core/log.h"
#include "agent/core/metrics.h"
#include "agent/core/processor.h"
#include "agent/core/sink.h"

namespace sluice::sinks {

/// Keys of [sink_groups.NAME] (and of a sink that is a group of one) that the group itself reads.
struct GroupConfig {
  std::uint32_t max_in_flight = 4;
  std::uint32_t batch_events = 1000;  // capped by the channel's transaction_events
  ByteSize batch_bytes{4ULL << 20};
  std::chrono::nanoseconds max_penalty = std::chrono::seconds(30);
  std::chrono::nanoseconds penalty_base = std::chrono::seconds(1);
  /// Reads the keys above; the caller rejects unknown keys.
  static bool parse(const ConfigNode& node, ConfigErrors& errors, GroupConfig& out);
};

/// One sink in a group, with what the group keeps about it.
struct GroupMember {
  std::string name;
  std::string type;
  Sink* sink = nullptr;
  std::chrono::nanoseconds delivery_timeout = std::chrono::seconds(5);
};

/// A group of one sink: picks it unless it is penalised (doubling from penalty_base up to
/// max_penalty after consecutive failures). Failover and load balancing are separate processors.
class SingleProcessor final : public Processor {
 public:
  SingleProcessor(Sink& sink, std::chrono::nanoseconds base, std::chrono::nanoseconds max);
  Sink* pick(TimePoint now) override;
  void penalize(Sink& sink, TimePoint now) override;
  void succeeded(Sink& sink) override;
  TimePoint next_ready(TimePoint now) const override;
  std::uint32_t consecutive_failures() const noexcept { return failures_; }

 private:
  Sink& sink_;
  std::chrono::nanoseconds base_, max_;
  std::uint32_t failures_ = 0;
  TimePoint until_{};
};

/// Doubling backoff: base * 2^(failures-1), capped.
std::chrono::nanoseconds penalty_for(std::uint32_t failures, std::chrono::nanoseconds base,
                                     std::chrono::nanoseconds max);

/// Owns the take/commit loop of one channel cursor: takes leases (up to max_in_flight), hands each
/// to the sink the processor picks, commits delivered leases in take order, and on Retry or a
/// delivery timeout rolls back that lease and every later one, so nothing is lost or reordered.
class SinkGroup final : private DeliveryListener, private DataListener, private CommitListener {
 public:
  SinkGroup(ComponentContext ctx, Channel& channel, CursorId cursor,
            std::unique_ptr<Processor> processor, std::vector<GroupMember> members,
            const GroupConfig& config, const Clock& clock);
  ~SinkGroup();

  void start();
  /// Shutdown: keeps delivering until the channel is empty and nothing is in flight, then stops
  /// the sinks and calls `on_drained`.
  void drain(std::function<void()> on_drained);
  /// Shutdown timed out: stop taking; in-flight leases roll back when their sinks answer.
  void abandon();
  bool drained() const noexcept;
  std::uint64_t in_flight() const noexcept { return in_flight_count_; }

 private:
  struct Slot {
    Batch batch;
    Lease lease;
    GroupMember* member = nullptr;
    DeliveryId id;
    TimePoint started{};
    bool busy = false;       // taken, in flight or delivered and not yet committed
    bool delivered = false;  // answered ok/reject, waits for earlier leases to commit
    bool abandoned = false;  // rolled back while its sink still holds the batch
    std::unique_ptr<Timer> timer;
  };
  struct MemberMetrics {
    Counter* ok_events;
    Counter* retry_events;
    Counter* reject_events;
    Counter* bytes;
    Counter* timeouts;
    Histogram* latency;
    Gauge* active;
  };

  void pump();
  void on_delivered(DeliveryId id, const DeliveryResult& result) noexcept override;
  void on_data() noexcept override;
  void on_committed(std::uint64_t token, Status status) noexcept override;
  void on_timeout(Slot& slot);
  void retry_from(Slot& slot, bool answered);
  void commit_ready();
  void arm_retry_timer(TimePoint when);
  void check_drained();
  Slot* find(DeliveryId id) noexcept;
  std::size_t member_index(const GroupMember* m) const noexcept;
  void set_active(GroupMember* m);

  ComponentContext ctx_;
  Channel& channel_;
  CursorId cursor_;
  std::unique_ptr<Processor> processor_;
  std::vector<GroupMember> members_;
  std::vector<MemberMetrics> member_metrics_;
  GroupConfig config_;
  const Clock& clock_;
  std::vector<Slot> slots_;
  std::vector<Slot*> order_;  // busy, non-abandoned slots in take order
  std::uint64_t in_flight_count_ = 0;
  std::uint64_t next_id_ = 0;
  bool started_ = false, stopping_ = false, abandoned_ = false, waiting_data_ = false;
  bool in_pump_ = false;
  GroupMember* active_ = nullptr;
  Timer retry_timer_;
  std::function<void()> on_drained_;
  std::size_t sinks_stopping_ = 0;
  RateLimiter reject_log_, retry_log_;

  Counter& switches_;
  Counter& penalties_;
  Counter& dropped_rejected_;
};

}  // namespace sluice::sinks

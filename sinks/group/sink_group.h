#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/channel.h"
#include "lib/core/clock.h"
#include "lib/core/context.h"
#include "lib/core/log.h"
#include "lib/core/metrics.h"
#include "lib/core/processor.h"
#include "lib/core/sink.h"
#include "sinks/group/processors.h"

namespace sluice::sinks {

/// Keys of [sink_groups.NAME] (and of a sink that is a group of one) that the group itself reads.
struct GroupConfig {
  std::uint32_t max_in_flight = 4;
  std::uint32_t batch_events = 1000;  // capped by the channel's transaction_events
  ByteSize batch_bytes{4ULL << 20};
  std::chrono::nanoseconds max_penalty = std::chrono::seconds(30);
  std::chrono::nanoseconds penalty_base = std::chrono::seconds(1);
  bool detach_when_lagging = false;  // lagging = "detach"
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

/// Header names the group adds to events it hands to a dead-letter sink.
inline constexpr std::string_view kRejectReasonHeader = "sluice_reject_reason";
inline constexpr std::string_view kRejectedByHeader = "sluice_rejected_by";

/// Owns the take/commit loop of one channel cursor: takes leases (up to max_in_flight), hands each
/// to the sink the processor picks, commits delivered leases in take order, and on Retry or a
/// delivery timeout rolls back that lease and every later one, so nothing is lost or reordered.
/// Rejected events go to the dead-letter sink when there is one (the lease commits only once
/// the dead-letter sink took them), else they are counted and logged.
class SinkGroup final : private DeliveryListener,
                        private DataListener,
                        private CommitListener,
                        private ProbeListener {
 public:
  SinkGroup(ComponentContext ctx, Channel& channel, CursorId cursor,
            std::unique_ptr<Processor> processor, std::vector<GroupMember> members,
            const GroupConfig& config, const Clock& clock,
            std::optional<GroupMember> dead_letter = std::nullopt);
  ~SinkGroup();

  void start();
  /// Shutdown: keeps delivering until the channel is empty (a durable channel: until the leases
  /// in flight are answered) and nothing is in flight, then stops the sinks and calls `on_drained`.
  /// With `keep_contents` (a reload replacing the group but not its channel): stops taking at
  /// once, as for a durable channel, and leaves what the channel holds to the next group.
  void drain(std::function<void()> on_drained, bool keep_contents = false);
  bool drained() const noexcept;
  /// True when some member is not penalised (/readyz).
  bool has_live_sink() const { return processor_->has_live(clock_.now()); }
  std::uint64_t in_flight() const noexcept { return in_flight_count_; }
  /// The member that received the last batch, or empty.
  std::string_view active() const noexcept {
    return active_ != nullptr ? active_->name : std::string_view();
  }

 private:
  enum class State : std::uint8_t { free, delivering, dead_lettering, delivered, abandoned };
  struct Slot {
    Batch batch;
    Batch dead;  // the rejected events, with reason headers, for the dead-letter sink
    Lease lease;
    GroupMember* member = nullptr;
    DeliveryId id, dead_id;
    TimePoint started{};
    State state = State::free;
    // What the sink's answer counted, added to the metrics when the lease commits: a delivered
    // batch rolled back behind a failed earlier one goes out again and must count once.
    std::uint32_t ok_events = 0, reject_events = 0, dropped_events = 0, dead_lettered_events = 0;
    bool dead_out = false;  // the dead-letter sink holds slot.dead (not waiting to resend)
    std::string reject_reason;
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
    Gauge* probing;
  };
  // Answers of the dead-letter sink come through this listener.
  struct DeadLetterListener final : DeliveryListener {
    SinkGroup* group = nullptr;
    void on_delivered(DeliveryId id, const DeliveryResult& result) noexcept override {
      group->on_dead_lettered(id, result);
    }
  };

  void pump();
  Slot* free_slot();
  void on_delivered(DeliveryId id, const DeliveryResult& result) noexcept override;
  void on_dead_lettered(DeliveryId id, const DeliveryResult& result) noexcept;
  void on_data() noexcept override;
  void on_committed(std::uint64_t token, Status status) noexcept override;
  void on_probed(Sink& sink, bool healthy) noexcept override;
  void on_timeout(Slot& slot);
  void retry_from(Slot& slot, bool answered);
  void reject(Slot& slot, const DeliveryResult& result);
  void send_dead_letter(Slot& slot);
  void commit_ready();
  void arm_retry_timer(TimePoint when);
  void start_probes(TimePoint now);
  void check_drained();
  Slot* find(DeliveryId id) noexcept;
  GroupMember* member_of(const Sink* sink) noexcept;
  std::size_t member_index(const GroupMember* m) const noexcept;
  void set_active(GroupMember* m);

  ComponentContext ctx_;
  Channel& channel_;
  CursorId cursor_;
  std::unique_ptr<Processor> processor_;
  std::vector<GroupMember> members_;
  std::vector<MemberMetrics> member_metrics_;
  std::optional<GroupMember> dead_letter_;
  DeadLetterListener dead_listener_;
  GroupConfig config_;
  const Clock& clock_;
  std::deque<Slot> slots_;    // grows past max_in_flight only while abandoned slots await answers
  std::vector<Slot*> order_;  // slots holding a lease, in take order
  std::uint64_t in_flight_count_ = 0;  // slots not free (including abandoned ones)
  std::uint64_t next_id_ = 0;
  bool started_ = false, stopping_ = false, waiting_data_ = false, in_pump_ = false;
  bool keep_contents_ = false;
  GroupMember* active_ = nullptr;
  Timer retry_timer_;
  std::function<void()> on_drained_;
  std::size_t sinks_stopping_ = 0;
  RateLimiter reject_log_, retry_log_;

  Counter& switches_;
  Counter& penalties_;
  Counter& dropped_rejected_;
  Counter& dead_lettered_;
  Counter& probes_ok_;
  Counter& probes_failed_;
};

}  // namespace sluice::sinks

#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include "lib/core/batch.h"
#include "sinks/datahub/datahub_protocol.h"

namespace sluice::sinks::datahub {

/// Event ids that DataHub accepted in a delivery that still answered Retry (a later request
/// failed, or the group gave up on it). The group hands the same events back (same ids); those
/// found here count as delivered at once and are not sent again, so a partially accepted batch
/// never duplicates its accepted records. Bounded: the oldest entries are forgotten first (the
/// batch went to another sink of the group, or was rejected), counted in evicted().
class AcceptedLedger {
 public:
  explicit AcceptedLedger(std::size_t max_entries) : max_(max_entries) {}
  void add(std::uint64_t id);
  /// True (and forgets one occurrence) if `id` was recorded.
  bool take(std::uint64_t id);
  std::size_t size() const noexcept { return live_; }
  bool empty() const noexcept { return live_ == 0; }
  std::uint64_t evicted() const noexcept { return evicted_; }

 private:
  std::size_t max_;
  std::unordered_map<std::uint64_t, std::uint32_t> counts_;
  std::deque<std::uint64_t> order_;  // insertion order, for eviction (may hold taken ids)
  std::size_t live_ = 0;
  std::uint64_t evicted_ = 0;
};

/// What became of the records of one answer.
struct ApplyCounts {
  std::uint32_t accepted = 0, retry = 0, reroute = 0, rejected = 0, halt = 0;
};

/// The state of every record of one delivery: pending (to send), in flight, accepted or rejected.
/// A record is sent again only while it is pending, and it becomes pending again only when an
/// answer names it in FailedRecords with a retryable code (or its whole request failed), so a
/// record accepted once is never in a later request: exactly once for FailedRecords.
class DeliveryTracker {
 public:
  enum class State : std::uint8_t { pending, in_flight, accepted, rejected };

  /// Starts tracking `batch`: every record pending, except those whose id is in `ledger` (taken
  /// from it: they were accepted before and count as delivered).
  void start(const Batch& batch, AcceptedLedger* ledger);
  /// Marks up to `max` pending records in flight and appends their indices to `out`.
  void take_pending(std::size_t max, std::vector<std::uint32_t>& out);
  /// A record that could not be encoded (or a reject code): permanent, with its reason.
  void reject(std::uint32_t index, std::string reason);
  /// The answer to a request that carried `sent` (in body order): every index not in `failed` is
  /// accepted; each failed one is pending again or rejected, by its code's class.
  ApplyCounts apply(const std::vector<std::uint32_t>& sent,
                    const std::vector<FailedRecord>& failed);
  /// The whole request failed (no answer, 5xx, throttled): its records are pending again.
  void fail_all(const std::vector<std::uint32_t>& sent);
  /// The whole request was refused for good: its records are rejected.
  void reject_all(const std::vector<std::uint32_t>& sent, const std::string& reason);
  /// Records the accepted ids of this delivery in `ledger` (it is about to answer Retry).
  void spill(const Batch& batch, AcceptedLedger& ledger) const;

  std::size_t pending() const noexcept { return pending_; }
  std::size_t in_flight() const noexcept { return in_flight_; }
  std::size_t accepted() const noexcept { return accepted_; }
  bool finished() const noexcept { return pending_ == 0 && in_flight_ == 0; }
  State state(std::uint32_t i) const { return states_[i]; }
  const std::vector<std::uint32_t>& rejected() const noexcept { return rejected_; }
  const std::string& reject_reason() const noexcept { return reject_reason_; }
  const std::string& last_failure() const noexcept { return last_failure_; }

 private:
  void set(std::uint32_t i, State s);
  std::vector<State> states_;
  std::vector<std::uint32_t> rejected_;
  std::string reject_reason_, last_failure_;
  std::size_t pending_ = 0, in_flight_ = 0, accepted_ = 0;
  std::size_t cursor_ = 0;  // no pending record before this index
};

}  // namespace sluice::sinks::datahub

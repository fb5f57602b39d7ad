#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/channel.h"
#include "lib/core/channel_metrics.h"
#include "lib/core/context.h"

namespace sluice::channels {

struct MemoryConfig {
  std::uint64_t max_events = 10'000;
  ByteSize max_bytes{64ULL << 20};
  std::uint32_t transaction_events = 1'000;
  /// Pure: reads and checks keys, appends to `errors`.
  static std::optional<MemoryConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// A bounded in-memory queue with one cursor. Batches are kept as they were put (their Batch
/// buffers recycled through a ring), takes copy events out, and commits must come in take order.
/// Safe for a source once its batch was committed by the sink group.
class MemoryChannel final : public Channel {
 public:
  MemoryChannel(const MemoryConfig& config, ChannelContext& ctx);
  ~MemoryChannel() override { loop_.cancel_deferred(this); }
  static Result<std::unique_ptr<MemoryChannel>> create(const MemoryConfig& config,
                                                       ChannelContext& ctx);

  Result<CursorId> open_cursor(std::string_view group) override;
  std::uint32_t max_transaction_events() const noexcept override {
    return config_.transaction_events;
  }
  void put(Batch& batch, const SourceCheckpoint& checkpoint, PutListener& done) override;
  void wait_for_space(SpaceListener& listener) override;
  Result<Lease> take(CursorId cursor, Batch& out, TakeLimits limits) override;
  void wait_for_data(CursorId cursor, DataListener& listener) override;
  void commit(Lease&& lease, CommitListener& done) override;
  std::uint64_t events() const noexcept override { return put_total_ - committed_total_; }
  std::uint64_t bytes() const noexcept override { return bytes_; }

 protected:
  void rollback(const Lease& lease) noexcept override;

 private:
  struct Chunk {
    Batch batch;
    std::uint64_t first = 0;  // global number of its first event
    SafeListener* listener = nullptr;
    std::uint64_t seq = 0;
    std::size_t spare = 0;  // capacity of a free slot's recycled buffers, counted in spare_bytes_
  };
  Chunk& chunk_at(std::size_t i) noexcept { return ring_[(head_ + i) % ring_.size()]; }
  void grow_ring();
  void update_gauges() noexcept;
  static void notify_space(void* self, std::uint64_t);
  static void notify_data(void* self, std::uint64_t);

  MemoryConfig config_;
  Loop& loop_;
  std::vector<Chunk> ring_;
  std::size_t head_ = 0, count_ = 0;
  // Global event numbers: [committed_total_, taken_total_) is leased, [taken_total_, put_total_)
  // waits.
  std::uint64_t committed_total_ = 0, taken_total_ = 0, put_total_ = 0;
  std::uint64_t bytes_ = 0;
  // Free slots keep their buffers for the next put (no allocation once warm), but only up to this
  // much in all: else a ring grown by a burst of puts keeps ring size x largest batch resident.
  static constexpr std::size_t kMaxSpareBytes = 4 << 20;
  std::size_t spare_bytes_ = 0;
  std::size_t take_chunk_ = 0;  // ring offset of the chunk holding event taken_total_
  bool cursor_open_ = false;
  std::vector<SpaceListener*> space_waiters_, space_notifying_;
  bool space_task_pending_ = false;
  DataListener* data_waiter_ = nullptr;
  bool data_task_pending_ = false;

  ChannelMetrics metrics_;
};

}  // namespace sluice::channels

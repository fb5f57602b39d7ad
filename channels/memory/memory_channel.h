#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
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

/// A bounded in-memory queue read by any number of cursors (sink groups and pipelines): each cursor
/// sees every event in put order, and an event is freed once every open cursor committed it. So a
/// stuck cursor holds events, the channel fills and the sources are back-pressured (unless that
/// cursor detaches when lagging). A cursor opened under a name used before reads on where the last
/// one of that name committed. Batches are kept as they were put, take() copies events out
/// (take_in_place() reads them where they lie), and a cursor's commits come in its take order. A
/// batch is safe for its source once every cursor committed it.
///
/// max_bytes bounds memory: a held batch is charged what it costs on the heap (its buffers'
/// capacities with the allocator's per-block overhead, its common headers, its ring slot), not
/// only its events' bytes. Once the channel is a quarter full, a batch whose buffers have more than
/// an eighth of slack is copied into exactly sized buffers (one copy, and the caller keeps its warm
/// buffers), so that a backlog is stored compactly.
class MemoryChannel final : public Channel {
 public:
  MemoryChannel(const MemoryConfig& config, ChannelContext& ctx);
  ~MemoryChannel() override { loop_.cancel_deferred(this); }
  static Result<std::unique_ptr<MemoryChannel>> create(const MemoryConfig& config,
                                                       ChannelContext& ctx);

  Result<CursorId> open_cursor(std::string_view group) override;
  void close_cursor(CursorId cursor) noexcept override;
  std::uint32_t max_transaction_events() const noexcept override {
    return config_.transaction_events;
  }
  void put(Batch& batch, const SourceCheckpoint& checkpoint, PutListener& done) override;
  void wait_for_space(SpaceListener& listener) override;
  Result<Lease> take(CursorId cursor, Batch& out, TakeLimits limits) override;
  /// Passes the stored batches themselves: no copy.
  Result<Lease> take_in_place(CursorId cursor, Batch& scratch, TakeLimits limits,
                              EventReader& reader) override;
  void wait_for_data(CursorId cursor, DataListener& listener) override;
  void commit(Lease&& lease, CommitListener& done) override;
  void set_detach_when_lagging(CursorId cursor, bool detach) override;
  /// Events some open cursor has not committed yet (leased or not).
  std::uint64_t events() const noexcept override { return put_total_ - min_committed(); }
  /// Heap bytes the held batches cost (what max_bytes bounds).
  std::uint64_t bytes() const noexcept override { return bytes_; }
  /// Bytes of the held events themselves (bodies, header and field keys and values).
  std::uint64_t event_bytes() const noexcept { return event_bytes_; }

  /// What holding `batch` as it is costs on the heap (an upper bound; see memory_channel.cc).
  static std::uint64_t held_cost(const Batch& batch) noexcept;

 protected:
  void rollback(const Lease& lease) noexcept override;

 private:
  template <class Run>
  Result<Lease> take_runs(CursorId cursor, TakeLimits limits, bool one_header_set, Run&& run);
  struct Chunk {
    Batch batch;
    std::uint64_t first = 0;  // global number of its first event
    SafeListener* listener = nullptr;
    std::uint64_t seq = 0;
    std::uint64_t cost = 0;  // counted in bytes_ while held
    std::size_t spare = 0;   // capacity of a free slot's recycled buffers, counted in spare_bytes_
  };
  struct Cursor {
    std::string group;
    bool open = false;
    bool detach = false;
    // Global event numbers: [committed, taken) is leased, [taken, put_total_) waits.
    std::uint64_t committed = 0, taken = 0;
    std::size_t take_chunk = 0;  // ring offset of the chunk holding event `taken`
    DataListener* data_waiter = nullptr;
    bool data_task_pending = false;
  };
  // A lease's token: the cursor in the top bits, its first event below.
  static constexpr int kCursorShift = 48;
  static constexpr std::uint64_t kEventMask = (std::uint64_t{1} << kCursorShift) - 1;

  Chunk& chunk_at(std::size_t i) noexcept { return ring_[(head_ + i) % ring_.size()]; }
  const Chunk& chunk_at(std::size_t i) const noexcept { return ring_[(head_ + i) % ring_.size()]; }
  Cursor* cursor_of(std::uint64_t token) noexcept;
  void grow_ring();
  std::size_t chunk_holding(std::uint64_t event) const noexcept;
  std::uint64_t min_committed() const noexcept;
  /// Frees the chunks every open cursor committed, oldest first, and tells their sources.
  void release_committed();
  /// Full, with a lagging cursor that may be detached: moves the detachable cursors at the oldest
  /// chunk past it. True if that freed room.
  bool drop_oldest();
  void release_spares() noexcept;
  /// `freed` (a slot just freed, past the held ones) keeps its buffers for a later put, or gives
  /// them to the next put's slot, or frees them.
  void keep_spare(Chunk& freed) noexcept;
  void notify_data_later(CursorId id);
  void notify_space_later();
  void update_gauges() noexcept;
  static void notify_space(void* self, std::uint64_t);
  static void notify_data(void* self, std::uint64_t cursor);

  MemoryConfig config_;
  Loop& loop_;
  std::string name_;
  std::vector<Chunk> ring_;
  std::size_t head_ = 0, count_ = 0;
  // Global event numbers: events below freed_total_ are gone, [freed_total_, put_total_) held.
  std::uint64_t freed_total_ = 0, put_total_ = 0;
  std::uint64_t bytes_ = 0, event_bytes_ = 0;
  // Free slots keep their buffers for the next put (no allocation once warm), but only up to this
  // much in all: else a ring grown by a burst of puts keeps ring size x largest batch resident.
  // They are freed when a put would not fit beside them, so the channel's memory stays in bounds.
  // One spare in the next put's slot keeps a steady stream warm (see keep_spare()); 4 MiB kept
  // ~3 MB per channel after every burst of a pipeline's rows or a backlog (issue 13).
  static constexpr std::size_t kMaxSpareBytes = 1 << 20;
  std::size_t spare_bytes_ = 0;
  std::vector<Cursor> cursors_;
  Batch compact_;  // a put's copy in exactly sized buffers, before it moves into its slot
  std::vector<SpaceListener*> space_waiters_, space_notifying_;
  bool space_task_pending_ = false;

  ChannelMetrics metrics_;
  Counter& dropped_events_;
  Counter& compacted_;
};

}  // namespace sluice::channels

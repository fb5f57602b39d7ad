#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "channels/lmdb/lmdb_env.h"
#include "lib/config/config_node.h"
#include "lib/core/channel.h"
#include "lib/core/channel_metrics.h"
#include "lib/core/context.h"
#include "lib/core/shared_resources.h"

namespace sluice::channels {

struct LmdbConfig {
  ByteSize max_bytes{1ULL << 30};
  std::uint64_t max_events = 10'000'000;
  std::uint32_t transaction_events = 1'000;
  SyncMode sync = SyncMode::full;      // periodic: the environment fsyncs every second
  int compression_level = 1;           // zstd; 0 stores records uncompressed
  bool drop_oldest_when_full = false;  // when_full = "drop_oldest"
  /// on_corrupt = "quarantine": a damaged environment is moved aside and an empty one started.
  /// The default, "refuse", stops the start with an error naming the damage.
  bool quarantine_corrupt = false;
  static std::optional<LmdbConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// The LMDB environment of one agent (data_dir/lmdb), shared by its lmdb channels through the
/// agent's store (`shared`, key LmdbChannel::env_key()). It is opened (and checked) by the first
/// lmdb channel created, with its `on_corrupt`; the others get the same one.
Result<std::shared_ptr<LmdbEnv>> shared_env(SharedResources& shared, const std::string& data_dir,
                                            Loop& loop, bool quarantine_corrupt = false);

/// A durable channel: each put is one record (the batch, zstd-compressed, checksummed) written by
/// the environment's writer thread in a group-committed transaction; a put completes, and its
/// batch is safe for the source, once that transaction is durable. Any number of sink groups read
/// it through their own cursors, whose positions are stored with their commits; a record is
/// deleted once every cursor committed it. Leases open at a crash are delivered again.
class LmdbChannel final : public Channel {
 public:
  LmdbChannel(const LmdbConfig& config, ChannelContext& ctx, std::shared_ptr<LmdbEnv> env,
              MDB_dbi records, MDB_dbi meta, MDB_dbi quarantine);
  ~LmdbChannel() override;
  static Result<std::unique_ptr<LmdbChannel>> create(const LmdbConfig& config, ChannelContext& ctx);

  Result<CursorId> open_cursor(std::string_view group) override;
  std::uint32_t max_transaction_events() const noexcept override {
    return config_.transaction_events;
  }
  void put(Batch& batch, const SourceCheckpoint& checkpoint, PutListener& done) override;
  void wait_for_space(SpaceListener& listener) override;
  Result<Lease> take(CursorId cursor, Batch& out, TakeLimits limits) override;
  void wait_for_data(CursorId cursor, DataListener& listener) override;
  void commit(Lease&& lease, CommitListener& done) override;
  bool commit_with_checkpoint(CursorId cursor, std::vector<Lease>& leases, std::string_view key,
                              std::string value, CommitListener& done) override;
  bool durable() const noexcept override { return true; }
  std::vector<std::pair<std::string, std::string>> load_checkpoints(
      std::string_view prefix) override;
  std::uint64_t events() const noexcept override { return events_; }
  std::uint64_t bytes() const noexcept override { return bytes_; }
  std::uint64_t quarantined() const noexcept { return quarantined_; }
  /// The environment this channel writes through: the one of every lmdb channel of its agent.
  const std::shared_ptr<LmdbEnv>& env() const noexcept { return env_; }
  /// The key of the environment of `data_dir` in the agent's SharedResources.
  static std::string env_key(const std::string& data_dir) { return "lmdb:" + data_dir + "/lmdb"; }
  /// The cursor stops holding records (what only it had not committed is deleted) and its stored
  /// position is removed: a reader configured again under the same name later starts at the
  /// oldest record still stored, as a new one does, and `sluice channel stats` no longer lists it.
  /// Its id is not reused. Leases of it still out roll back as no-ops; none may be committed.
  void close_cursor(CursorId cursor) noexcept override;
  /// Cursors ever opened on this channel object (ids are 0..n-1, closed ones included).
  std::size_t cursor_count() const noexcept { return cursors_.size(); }
  void set_detach_when_lagging(CursorId cursor, bool detach) override {
    cursors_[cursor].detach_when_lagging = detach;
  }
  std::string health_problem() const override;

 protected:
  void rollback(const Lease& lease) noexcept override;

 private:
  struct Cursor {
    std::string group;
    std::uint64_t committed = 1;  // every record below is done for this cursor
    std::uint64_t taken = 1;      // next record to lease
    DataListener* waiter = nullptr;
    bool detach_when_lagging = false;
    bool closed = false;  // close_cursor(): holds nothing back, never read again
  };
  struct Leased {
    CursorId cursor;
    std::uint64_t first, last;  // records [first, last]
  };
  // What the writer thread reports back from a round (shared with the loop thread by the op).
  struct Delta {
    std::int64_t events = 0;
    std::int64_t bytes = 0;
    std::uint64_t deleted_below = 0;
  };

  void load_state();
  void schedule_notify_data();
  void notify_data();
  void notify_space();
  void quarantine(std::uint64_t seq);
  void put_failed(const Status& st);
  void store_and_delete(const std::vector<CursorId>& changed, std::function<void(Status)> then,
                        std::pair<std::string, std::string> checkpoint = {});
  bool drop_oldest();
  std::uint64_t min_committed() const;
  std::string meta_key(std::string_view what) const;

  LmdbConfig config_;
  ChannelContext& ctx_;
  std::shared_ptr<LmdbEnv> env_;
  MDB_dbi records_, meta_, quarantine_db_;
  std::uint64_t next_seq_ = 1;            // next record number to write
  std::uint64_t durable_seq_ = 0;         // highest record known durable
  std::uint64_t deleted_below_ = 1;       // records below this are deleted (or being deleted)
  std::uint64_t events_ = 0, bytes_ = 0;  // durable records not yet deleted
  std::uint64_t pending_events_ = 0, pending_bytes_ = 0;  // puts in flight
  std::vector<Cursor> cursors_;
  std::map<std::uint64_t, Leased> leases_;
  std::uint64_t next_lease_ = 0;
  std::vector<SpaceListener*> space_waiters_;
  // Decoded records, shared by the cursors: each reader (a sink group, a pipeline) takes the same
  // records soon after the others, and a take that stops at its limits meets its last record again
  // on the next take. A hit needs the stored bytes to be identical, so it answers exactly what
  // decoding them again would. Bounded by kDecodedBytes (stored + decoded sizes) and
  // kDecodedRecords (1 with one cursor); a record larger than a quarter of the bound is decoded
  // into decoded_ only. The entries are a ring of fixed slots, and the buffers of the entry
  // evicted last are kept in spare_ for the next one, so that a warm cache decodes into buffers
  // it already has: no allocation per record, and no more than one evicted entry's buffers kept.
  struct Decoded {
    std::uint64_t seq = 0;
    std::string stored;
    Batch batch;
  };
  const Batch* decode(std::uint64_t seq, std::string_view stored, Status& st);
  static constexpr std::size_t kDecodedBytes = 2u << 20;
  static constexpr std::size_t kDecodedRecords = 32;
  std::vector<Decoded> decoded_cache_;  // kDecodedRecords slots once used
  std::size_t cache_head_ = 0, cache_count_ = 0;
  std::size_t decoded_cache_bytes_ = 0;
  Decoded spare_;
  Batch decoded_;
  std::string scratch_;
  std::uint64_t quarantined_ = 0;
  std::set<std::uint64_t> quarantined_seqs_;
  bool dropping_ = false;
  bool data_task_pending_ = false;
  // take(): decoding time spent in this loop turn.
  static constexpr Duration kTakeBudget = std::chrono::milliseconds(4);
  Duration take_spent_ = Duration::zero();
  bool budget_reset_pending_ = false;
  // The last put failure, until a put is stored again (health_problem()).
  static constexpr Duration kFirstProbe = std::chrono::milliseconds(100);
  static constexpr Duration kMaxProbe = std::chrono::seconds(2);
  std::string put_failure_;
  bool no_space_ = false;
  Timer space_probe_;
  Duration probe_delay_ = kFirstProbe;
  Counter* put_errors_no_space_ = nullptr;
  Counter* put_errors_io_ = nullptr;

  ChannelMetrics metrics_;
  Counter& quarantined_total_;
  Counter& dropped_events_;
};

}  // namespace sluice::channels

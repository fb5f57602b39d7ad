#pragma once

#include <lmdb.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lib/core/loop.h"
#include "lib/core/result.h"

namespace sluice::channels {

enum class SyncMode : std::uint8_t { full, periodic, none };

/// One LMDB environment under a directory, shared by every lmdb channel of the agent, with one
/// writer thread that gathers the operations submitted since its last round into a single write
/// transaction (group commit). Completions run on the loop thread after the transaction committed
/// (and, with SyncMode::full, after it is on disk). The map grows when it is full.
///
/// When a round fails (the disk is full: ENOSPC, or a short write that LMDB reports as EIO on a
/// filesystem with almost no room left; or any other write error), its puts fail with the error
/// (Errc::backpressure when out of space), and so does every put submitted before the loop thread
/// heard of that failure, so that the callers, putting them again in order, keep their order. The
/// other operations (cursor positions, deletes: their effect is already visible on the loop
/// thread) are retried by the writer thread, alone, until they commit: deleting is what frees
/// room on a full disk.
class LmdbEnv {
 public:
  struct Op {
    /// Runs on the writer thread inside the round's transaction; returns an MDB error code.
    std::function<int(MDB_txn*)> apply;
    /// Runs on the loop thread once the round committed (ok) or failed.
    std::function<void(Status)> done;
    /// The round is made durable (fsync) before `done` runs.
    bool sync = true;
    /// Adds data (a channel's put): fails when the round fails, see above.
    bool put = false;
    std::uint64_t epoch = 0;  // set by submit()
  };

  /// `sync_interval`: how often rounds without a synced operation are made durable anyway.
  /// The environment is checked first (check_file(), check_open()); a damaged one is refused
  /// with a clear error, or with `quarantine` moved aside to DIR.corrupt-<UTC time> and replaced
  /// by a new one holding what could be salvaged from it (salvage.h, quarantine_note()).
  static Result<std::unique_ptr<LmdbEnv>> open(const std::string& dir, Loop& loop,
                                               std::chrono::milliseconds sync_interval,
                                               bool quarantine = false);
  /// Before opening: a data.mdb shorter than its two meta pages (LMDB would take an empty one for
  /// a new environment and start over silently). Returns the damage, or "" if none.
  static std::string check_file(const std::string& dir);
  /// After opening: the file must reach the environment's last page (else reading a record past
  /// its end is a SIGBUS), and every database must be readable to its last record, with each
  /// value inside the file. Returns the damage, or "" if none.
  static std::string check_open(MDB_env* env, const std::string& dir);
  /// check_open() on a read-only view of `dir`, in a child process: a tree damaged so that LMDB
  /// crashes walking it is reported as damage. "" for a new (or sound) environment.
  static std::string check_isolated(const std::string& dir);
  /// Non-empty if the environment was found damaged and moved aside at open.
  const std::string& quarantine_note() const noexcept { return quarantine_note_; }
  /// Events of `channel` salvaged from the damaged environment moved aside at open (salvage.h).
  std::uint64_t salvaged_events(const std::string& channel) const {
    const auto it = salvaged_events_.find(channel);
    return it == salvaged_events_.end() ? 0 : it->second;
  }
  ~LmdbEnv();
  LmdbEnv(const LmdbEnv&) = delete;
  LmdbEnv& operator=(const LmdbEnv&) = delete;

  MDB_env* env() noexcept { return env_; }
  /// Opens (creating) a named database; call before submitting operations that use it.
  Result<MDB_dbi> dbi(const std::string& name);
  void submit(Op op);
  /// Serialises read transactions on the loop thread with map growth on the writer thread.
  std::mutex& read_mutex() noexcept { return map_mutex_; }
  /// Operations still queued or running.
  std::size_t pending() const;
  std::uint64_t rounds() const noexcept { return rounds_; }
  /// Non-empty while cursor positions and deletes fail to store (they are retried): the error.
  std::string failure() const;

  /// Classifies a failed write: out of space (MDB_MAP_FULL, ENOSPC, EDQUOT, or EIO — LMDB's
  /// answer to a short write — on a filesystem with less than 8 MiB or 1% free) is
  /// Errc::backpressure, the rest Errc::io.
  static Status write_status(int rc, const std::string& dir, std::string_view what);

 private:
  LmdbEnv(MDB_env* env, std::string dir, Loop& loop, std::chrono::milliseconds interval);
  void run();
  Status commit_round(std::vector<Op>& ops, bool& dirty,
                      std::chrono::steady_clock::time_point& last_sync);
  int tick();
  static void on_async(uv_async_t* a);

  MDB_env* env_;
  std::string dir_;
  Loop& loop_;
  std::chrono::milliseconds sync_interval_;
  std::thread writer_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Op> queue_;
  std::vector<std::pair<std::function<void(Status)>, Status>> done_;  // for the loop thread
  std::mutex map_mutex_;
  uv_async_t* async_ = nullptr;
  bool stop_ = false;
  std::size_t running_ = 0;
  std::uint64_t rounds_ = 0;
  std::uint64_t ticks_ = 0;  // writer thread
  // Puts carry the epoch they were submitted in; the writer fails every put of an epoch up to
  // fenced_upto_ (the epoch of the last failed put), and the loop thread moves epoch_ past it
  // when it hands that failure to the channels.
  std::atomic<std::uint64_t> epoch_{1};
  std::uint64_t fenced_upto_ = 0;  // under mu_
  Status fence_status_;            // under mu_
  std::string failure_;            // under mu_
  std::string quarantine_note_;
  std::map<std::string, std::uint64_t> salvaged_events_;
};

}  // namespace sluice::channels

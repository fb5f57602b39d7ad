#pragma once

#include <lmdb.h>
#include <uv.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
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
/// (and, with SyncMode::full, after it is on disk). The map grows when it is full; an operation is
/// never lost to MDB_MAP_FULL.
class LmdbEnv {
 public:
  struct Op {
    /// Runs on the writer thread inside the round's transaction; returns an MDB error code.
    std::function<int(MDB_txn*)> apply;
    /// Runs on the loop thread once the round committed (ok) or failed.
    std::function<void(Status)> done;
    /// The round is made durable (fsync) before `done` runs.
    bool sync = true;
  };

  /// `sync_interval`: how often rounds without a synced operation are made durable anyway.
  static Result<std::unique_ptr<LmdbEnv>> open(const std::string& dir, Loop& loop,
                                               std::chrono::milliseconds sync_interval);
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

 private:
  LmdbEnv(MDB_env* env, Loop& loop, std::chrono::milliseconds interval);
  void run();
  static void on_async(uv_async_t* a);

  MDB_env* env_;
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
};

}  // namespace sluice::channels

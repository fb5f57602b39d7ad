#include "channels/lmdb/lmdb_env.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

namespace sluice::channels {
namespace {
Status mdb_status(int rc, std::string_view what) {
  if (rc == 0) return {};
  return Status(rc == MDB_MAP_FULL ? Errc::backpressure : Errc::io,
                fmt::format("{}: {}", what, mdb_strerror(rc)));
}
}  // namespace

Result<std::unique_ptr<LmdbEnv>> LmdbEnv::open(const std::string& dir, Loop& loop,
                                               std::chrono::milliseconds sync_interval) {
  ::mkdir(dir.c_str(), 0750);
  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_maxdbs(env, 256);
  if (rc == 0) rc = mdb_env_set_mapsize(env, 256ULL << 20);
  // The writer thread syncs itself (full: after every round; periodic: on a timer).
  if (rc == 0) rc = mdb_env_open(env, dir.c_str(), MDB_NOSYNC | MDB_NOTLS, 0640);
  if (rc != 0) {
    if (env != nullptr) mdb_env_close(env);
    return Status(Errc::io,
                  fmt::format("cannot open the LMDB environment in {}: {}", dir, mdb_strerror(rc)));
  }
  return std::unique_ptr<LmdbEnv>(new LmdbEnv(env, loop, sync_interval));
}

LmdbEnv::LmdbEnv(MDB_env* env, Loop& loop, std::chrono::milliseconds interval)
    : env_(env), loop_(loop), sync_interval_(interval) {
  async_ = new uv_async_t{};
  uv_async_init(loop_.uv(), async_, &LmdbEnv::on_async);
  async_->data = this;
  writer_ = std::thread([this] { run(); });
}

LmdbEnv::~LmdbEnv() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
  async_->data = nullptr;
  close_and_delete(async_);
  mdb_env_sync(env_, 1);
  mdb_env_close(env_);
}

Result<MDB_dbi> LmdbEnv::dbi(const std::string& name) {
  std::lock_guard map_lock(map_mutex_);
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  MDB_dbi dbi = 0;
  if (rc == 0) rc = mdb_dbi_open(txn, name.c_str(), MDB_CREATE, &dbi);
  if (rc == 0) {
    rc = mdb_txn_commit(txn);
  } else if (txn != nullptr) {
    mdb_txn_abort(txn);
  }
  if (rc != 0) return mdb_status(rc, "open database " + name);
  return dbi;
}

void LmdbEnv::submit(Op op) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
}

std::size_t LmdbEnv::pending() const {
  std::lock_guard lock(mu_);
  return queue_.size() + running_;
}

void LmdbEnv::run() {
  auto last_sync = std::chrono::steady_clock::now();
  bool dirty = false;  // committed rounds not yet fsynced
  std::vector<Op> round;
  while (true) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, sync_interval_, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) {
        if (stop_) return;
        if (dirty && std::chrono::steady_clock::now() - last_sync >= sync_interval_) {
          lock.unlock();
          mdb_env_sync(env_, 1);
          last_sync = std::chrono::steady_clock::now();
          dirty = false;
        }
        continue;
      }
      round.swap(queue_);
      running_ = round.size();
    }
    Status result;
    while (true) {
      MDB_txn* txn = nullptr;
      int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
      for (std::size_t i = 0; rc == 0 && i < round.size(); ++i) rc = round[i].apply(txn);
      if (rc == 0) {
        rc = mdb_txn_commit(txn);
      } else if (txn != nullptr) {
        mdb_txn_abort(txn);
      }
      if (rc == MDB_MAP_FULL) {
        // Grow the map and run the whole round again: nothing of it was committed.
        std::lock_guard map_lock(map_mutex_);
        MDB_envinfo info{};
        mdb_env_info(env_, &info);
        const std::size_t bigger = info.me_mapsize * 2;
        spdlog::info("lmdb: growing the map to {} MiB", bigger >> 20);
        if (mdb_env_set_mapsize(env_, bigger) == 0) continue;
      }
      bool want_sync = false;
      for (const auto& op : round) want_sync = want_sync || op.sync;
      if (rc == 0 && want_sync) {
        rc = mdb_env_sync(env_, 1);
        last_sync = std::chrono::steady_clock::now();
        dirty = false;
      } else if (rc == 0) {
        dirty = true;
      }
      result = mdb_status(rc, "lmdb write transaction");
      break;
    }
    {
      std::lock_guard lock(mu_);
      for (auto& op : round) done_.emplace_back(std::move(op.done), result);
      running_ = 0;
      ++rounds_;
    }
    round.clear();
    uv_async_send(async_);
  }
}

void LmdbEnv::on_async(uv_async_t* a) {
  auto* self = static_cast<LmdbEnv*>(a->data);
  if (self == nullptr) return;
  std::vector<std::pair<std::function<void(Status)>, Status>> done;
  {
    std::lock_guard lock(self->mu_);
    done.swap(self->done_);
  }
  for (auto& [fn, st] : done) {
    if (fn) fn(st);
  }
}

}  // namespace sluice::channels

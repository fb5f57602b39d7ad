#include "channels/lmdb/lmdb_env.h"

#include <fcntl.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>

#include "channels/lmdb/salvage.h"
#include "lib/core/sd_notify.h"

namespace sluice::channels {
namespace {
Status mdb_status(int rc, std::string_view what) {
  if (rc == 0) return {};
  return Status(rc == MDB_MAP_FULL ? Errc::backpressure : Errc::io,
                fmt::format("{}: {}", what, mdb_strerror(rc)));
}
}  // namespace

namespace {
// Reads what can be trusted out of the damaged file moved aside (salvage.h) into the new, empty
// environment. Returns what was done, for the log and /healthz.
std::string salvage_into(const std::string& file, MDB_env* env,
                         std::map<std::string, std::uint64_t>& events) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fmt::format("nothing salvaged (cannot open {}: {})", file, std::strerror(errno));
  struct stat st {};
  void* map = MAP_FAILED;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    map = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  }
  ::close(fd);
  if (map == MAP_FAILED) return fmt::format("nothing salvaged ({} cannot be read)", file);
  // Reading the image and writing what it holds takes about 3 s per GiB here: under systemd the
  // start would outlast TimeoutStartSec (90 s by default) from about 30 GiB on and be killed, to
  // salvage again at the next start. The manager is asked for a minute plus 10 s per GiB more.
  const std::uint64_t extend_usec =
      (60 + 10 * (static_cast<std::uint64_t>(st.st_size) >> 30)) * 1'000'000;
  sd_notify(0, fmt::format("EXTEND_TIMEOUT_USEC={}\nSTATUS=salvaging the damaged LMDB "
                           "environment {} ({} MiB)",
                           extend_usec, file, st.st_size >> 20)
                   .c_str());
  const auto started = std::chrono::steady_clock::now();
  const Salvage found =
      salvage_image({static_cast<const char*>(map), static_cast<std::size_t>(st.st_size)});
  const int rc = restore_salvage(env, found);
  ::munmap(map, static_cast<std::size_t>(st.st_size));
  if (rc != 0) return fmt::format("salvaging failed: {}", mdb_strerror(rc));
  for (const auto& [name, ch] : found.channels) events[name] = ch.events;
  return fmt::format("{} in {} ms", found.summary(),
                     std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - started)
                         .count());
}
}  // namespace

std::string LmdbEnv::check_file(const std::string& dir) {
  struct stat st {};
  const std::string file = dir + "/data.mdb";
  if (::stat(file.c_str(), &st) != 0) return {};  // a new environment
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < 2 * page) {
    return fmt::format("data.mdb is {} bytes, shorter than its two {}-byte meta pages (truncated)",
                       size, page);
  }
  return {};
}

std::string LmdbEnv::check_open(MDB_env* env, const std::string& dir) {
  MDB_envinfo info{};
  MDB_stat est{};
  if (mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &est) != 0) return "cannot read its state";
  struct stat st {};
  const std::string file = dir + "/data.mdb";
  if (::stat(file.c_str(), &st) != 0) return fmt::format("cannot stat {}", file);
  const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  const std::uint64_t need = (static_cast<std::uint64_t>(info.me_last_pgno) + 1) * est.ms_psize;
  if (size < need) {
    return fmt::format("data.mdb is {} bytes, but its last page ({}) ends at byte {} (truncated)",
                       size, info.me_last_pgno, need);
  }
  // Walk every database; a value outside the file would be read past its end later. LMDB does
  // not say where it mapped the file (me_mapaddr is only set for MDB_FIXEDMAP): find the mapping
  // of data.mdb's inode in /proc/self/maps.
  std::uintptr_t map = 0;
  if (std::FILE* maps = std::fopen("/proc/self/maps", "r")) {
    char line[4096];
    while (map == 0 && std::fgets(line, sizeof line, maps) != nullptr) {
      unsigned long start = 0, end = 0, offset = 0, inode = 0;
      char perms[8], dev[16];
      if (std::sscanf(line, "%lx-%lx %7s %lx %15s %lu", &start, &end, perms, &offset, dev,
                      &inode) == 6 &&
          inode == st.st_ino && offset == 0) {
        map = start;
      }
    }
    std::fclose(maps);
  }
  auto outside = [&](const MDB_val& v) {
    if (map == 0) return false;  // no /proc: the size check above has to do
    const auto p = reinterpret_cast<std::uintptr_t>(v.mv_data);
    return p < map || p > map + need || v.mv_size > map + need - p;
  };
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
  if (rc != 0) return fmt::format("cannot begin a read transaction: {}", mdb_strerror(rc));
  std::string damage;
  std::vector<std::string> names;
  MDB_cursor* cur = nullptr;
  MDB_dbi main = 0;
  rc = mdb_dbi_open(txn, nullptr, 0, &main);
  if (rc == 0) rc = mdb_cursor_open(txn, main, &cur);
  MDB_val k{}, v{};
  int get = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : rc;
  while (get == 0) {
    if (outside(k) || outside(v)) {
      damage = "the main database points outside the file";
      break;
    }
    names.emplace_back(static_cast<const char*>(k.mv_data), k.mv_size);
    get = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  if (cur != nullptr) mdb_cursor_close(cur);
  if (damage.empty() && get != MDB_NOTFOUND)
    damage = fmt::format("the main database: {}", mdb_strerror(get));
  for (const std::string& name : names) {
    if (!damage.empty()) break;
    MDB_dbi dbi = 0;
    rc = mdb_dbi_open(txn, name.c_str(), 0, &dbi);
    if (rc == MDB_INCOMPATIBLE) continue;  // a plain key of the main database
    if (rc != 0) {
      damage = fmt::format("database {}: {}", name, mdb_strerror(rc));
      break;
    }
    cur = nullptr;
    rc = mdb_cursor_open(txn, dbi, &cur);
    get = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : rc;
    std::uint64_t entries = 0;
    while (get == 0) {
      if (outside(k) || outside(v)) {
        damage = fmt::format("database {}: a record points outside the file", name);
        break;
      }
      ++entries;
      get = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur != nullptr) mdb_cursor_close(cur);
    if (damage.empty() && get != MDB_NOTFOUND)
      damage = fmt::format("database {}: {} after {} records", name, mdb_strerror(get), entries);
    MDB_stat dst{};
    if (damage.empty() && mdb_stat(txn, dbi, &dst) == 0 && dst.ms_entries != entries) {
      damage =
          fmt::format("database {}: {} records found, {} recorded", name, entries, dst.ms_entries);
    }
  }
  mdb_txn_abort(txn);
  return damage;
}

namespace {

// Codes of mdb_env_open that mean a damaged file rather than a permission or path problem.
bool damaged_code(int rc) {
  return rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_VERSION_MISMATCH ||
         rc == MDB_PAGE_NOTFOUND;
}

int open_env(const std::string& dir, MDB_env** out) {
  MDB_env* env = nullptr;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_maxdbs(env, 256);
  if (rc == 0) rc = mdb_env_set_mapsize(env, 256ULL << 20);
  // The writer thread syncs itself (full: after every round; periodic: on a timer).
  if (rc == 0) rc = mdb_env_open(env, dir.c_str(), MDB_NOSYNC | MDB_NOTLS, 0640);
  if (rc != 0) {
    if (env != nullptr) mdb_env_close(env);
    return rc;
  }
  *out = env;
  return 0;
}

}  // namespace

std::string LmdbEnv::check_isolated(const std::string& dir) {
  struct stat st {};
  if (::stat((dir + "/data.mdb").c_str(), &st) != 0) return {};  // a new environment
  // LMDB trusts its tree pages: a damaged one can make it read anywhere (SIGSEGV). Walk the
  // environment in a child process, so that such a crash is a finding, not our death.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {};
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return {};
  }
  if (pid == 0) {
    ::close(fds[0]);
    std::string damage;
    MDB_env* env = nullptr;
    int rc = mdb_env_create(&env);
    if (rc == 0) rc = mdb_env_set_maxdbs(env, 256);
    if (rc == 0) rc = mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0640);
    if (rc == 0) {
      damage = check_open(env, dir);
    } else if (damaged_code(rc)) {
      damage = mdb_strerror(rc);
    }
    // Whatever else went wrong, the parent's own open reports it.
    std::size_t off = 0;
    while (off < damage.size()) {
      const ssize_t n = ::write(fds[1], damage.data() + off, damage.size() - off);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string damage;
  char buf[512];
  while (true) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    damage.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    return fmt::format("reading its tree crashed ({}): its pages are damaged",
                       ::strsignal(WTERMSIG(status)));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && damage.empty()) {
    return fmt::format("checking it failed (exit {})", WEXITSTATUS(status));
  }
  return damage;
}

Result<std::unique_ptr<LmdbEnv>> LmdbEnv::open(const std::string& dir, Loop& loop,
                                               std::chrono::milliseconds sync_interval,
                                               bool quarantine) {
  // What a damaged environment's salvage is written into, and renamed to `dir` only once it is
  // complete and synced (after the damaged one was moved aside).
  const std::string fresh = dir + ".salvaging";
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 && errno == ENOENT &&
      ::stat((fresh + "/data.mdb").c_str(), &st) == 0) {
    // A crash between those two renames: the salvage is complete, put it in place.
    if (::rename(fresh.c_str(), dir.c_str()) != 0) {
      return Status::from_errno(
          errno, fmt::format("moving the salvaged environment {} to {}", fresh, dir));
    }
    spdlog::warn("lmdb: {} held a complete salvage (a start was interrupted): moved to {}", fresh,
                 dir);
  }
  ::mkdir(dir.c_str(), 0750);
  std::string damage = check_file(dir);
  if (damage.empty()) {
    const auto started = std::chrono::steady_clock::now();
    damage = check_isolated(dir);
    spdlog::info("lmdb: checked the environment in {} in {} ms", dir,
                 std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - started)
                     .count());
  }
  MDB_env* env = nullptr;
  if (damage.empty()) {
    const int rc = open_env(dir, &env);
    if (rc != 0 && !damaged_code(rc)) {
      return Status(Errc::io, fmt::format("cannot open the LMDB environment in {}: {}", dir,
                                          mdb_strerror(rc)));
    }
    if (rc != 0) damage = mdb_strerror(rc);
  }
  std::string note;
  std::map<std::string, std::uint64_t> salvaged_events;
  if (!damage.empty()) {
    if (!quarantine) {
      return Status(Errc::io,
                    fmt::format("the LMDB environment in {} is damaged: {}; move it aside to start "
                                "empty, or set on_corrupt = \"quarantine\" on the lmdb channel to "
                                "do so at start",
                                dir, damage));
    }
    const std::string moved =
        fmt::format("{}.corrupt-{:%Y%m%dT%H%M%SZ}", dir, fmt::gmtime(std::time(nullptr)));
    spdlog::error("lmdb: the LMDB environment in {} is damaged ({}); salvaging it into {}", dir,
                  damage, fresh);
    // A salvage a crash interrupted is started again.
    for (const char* f : {"/data.mdb", "/lock.mdb"}) ::unlink((fresh + f).c_str());
    ::rmdir(fresh.c_str());
    ::mkdir(fresh.c_str(), 0750);
    MDB_env* into = nullptr;
    int rc = open_env(fresh, &into);
    if (rc != 0) {
      return Status(Errc::io, fmt::format("cannot create the LMDB environment in {}: {}", fresh,
                                          mdb_strerror(rc)));
    }
    const std::string salvaged = salvage_into(dir + "/data.mdb", into, salvaged_events);
    mdb_env_close(into);
    if (::rename(dir.c_str(), moved.c_str()) != 0) {
      return Status::from_errno(
          errno, fmt::format("the LMDB environment in {} is damaged ({}); moving it to {}", dir,
                             damage, moved));
    }
    if (::rename(fresh.c_str(), dir.c_str()) != 0) {
      return Status::from_errno(
          errno, fmt::format("moving the salvaged environment {} to {}", fresh, dir));
    }
    rc = open_env(dir, &env);
    if (rc != 0) {
      return Status(Errc::io, fmt::format("cannot open the LMDB environment in {}: {}", dir,
                                          mdb_strerror(rc)));
    }
    note = fmt::format("the LMDB environment in {} was damaged ({}); moved to {}; {}", dir, damage,
                       moved, salvaged);
    spdlog::error("lmdb: {}", note);
  }
  auto opened = std::unique_ptr<LmdbEnv>(new LmdbEnv(env, dir, loop, sync_interval));
  opened->quarantine_note_ = std::move(note);
  opened->salvaged_events_ = std::move(salvaged_events);
  return opened;
}

LmdbEnv::LmdbEnv(MDB_env* env, std::string dir, Loop& loop, std::chrono::milliseconds interval)
    : env_(env), dir_(std::move(dir)), loop_(loop), sync_interval_(interval) {
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
  if (op.put) op.epoch = epoch_.load();
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

std::string LmdbEnv::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

Status LmdbEnv::write_status(int rc, const std::string& dir, std::string_view what) {
  if (rc == 0) return {};
  bool no_space = rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT;
  std::string detail;
  if (rc == EIO || no_space) {
    // LMDB turns a short write (the filesystem filled up mid-write) into EIO.
    struct statvfs vfs {};
    if (::statvfs(dir.c_str(), &vfs) == 0) {
      const std::uint64_t free = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
      const std::uint64_t total = static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize;
      if (free < (8ULL << 20) || free * 100 < total) no_space = true;
      detail = fmt::format(" ({} KiB free of {} KiB in {})", free >> 10, total >> 10, dir);
    }
  }
  return Status(no_space ? Errc::backpressure : Errc::io,
                fmt::format("{}: {}{}", what, mdb_strerror(rc), detail));
}

// Runs `ops` in one write transaction (growing the map and running them again on MDB_MAP_FULL:
// nothing of it was committed), then syncs if one of them asks for it.
Status LmdbEnv::commit_round(std::vector<Op>& ops, bool& dirty,
                             std::chrono::steady_clock::time_point& last_sync) {
  bool ticked = false;
  while (true) {
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    for (std::size_t i = 0; rc == 0 && i < ops.size(); ++i) rc = ops[i].apply(txn);
    if (rc == 0) {
      rc = mdb_txn_commit(txn);
    } else if (txn != nullptr) {
      mdb_txn_abort(txn);
    }
    if (rc == MDB_MAP_FULL) {
      std::lock_guard map_lock(map_mutex_);
      MDB_envinfo info{};
      mdb_env_info(env_, &info);
      const std::size_t bigger = info.me_mapsize * 2;
      spdlog::info("lmdb: growing the map to {} MiB", bigger >> 20);
      if (mdb_env_set_mapsize(env_, bigger) == 0) continue;
    }
    if (rc != 0 && !ticked && write_status(rc, dir_, "").code() == Errc::backpressure) {
      // LMDB reuses the pages a transaction freed only after a later transaction committed. When
      // the last commit was the one that freed the space (a drained channel on a full disk), no
      // round can commit to release it: every one needs new pages. A tiny transaction moves past
      // it; then the round is tried again, once.
      ticked = true;
      if (tick() == 0) continue;
    }
    bool want_sync = false;
    for (const auto& op : ops) want_sync = want_sync || op.sync;
    if (rc == 0 && want_sync) {
      rc = mdb_env_sync(env_, 1);
      last_sync = std::chrono::steady_clock::now();
      dirty = false;
    } else if (rc == 0) {
      dirty = true;
    }
    return write_status(rc, dir_, "lmdb write transaction");
  }
}

// Writes one small key of the main database ("sluice:tick", a counter): a transaction that needs
// at most a few pages, so that it commits where a round of records cannot.
int LmdbEnv::tick() {
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  MDB_dbi main = 0;
  if (rc == 0) rc = mdb_dbi_open(txn, nullptr, 0, &main);
  if (rc == 0) {
    const std::uint64_t count = ++ticks_;
    std::string_view key = "sluice:tick";
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{sizeof count, const_cast<std::uint64_t*>(&count)};
    rc = mdb_put(txn, main, &k, &v, 0);
  }
  if (rc == 0) return mdb_txn_commit(txn);
  if (txn != nullptr) mdb_txn_abort(txn);
  return rc;
}

void LmdbEnv::run() {
  auto last_sync = std::chrono::steady_clock::now();
  bool dirty = false;  // committed rounds not yet fsynced
  std::vector<Op> round, ops, kept;
  std::vector<std::pair<std::function<void(Status)>, Status>> finished;
  while (true) {
    std::uint64_t fenced = 0;
    Status fence;
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
      fenced = fenced_upto_;
      fence = fence_status_;
    }
    // Puts made before the loop thread heard of an earlier failed put fail with it: storing
    // them now would put them ahead of the failed one's retry.
    bool has_put = false;
    for (auto& op : round) {
      if (op.put && op.epoch <= fenced) {
        finished.emplace_back(std::move(op.done), fence);
      } else {
        has_put = has_put || op.put;
        ops.push_back(std::move(op));
      }
    }
    round.clear();
    Status st = ops.empty() ? Status() : commit_round(ops, dirty, last_sync);
    if (!st.ok() && has_put) {
      std::uint64_t upto = 0;
      for (auto& op : ops) {
        if (op.put) {
          upto = std::max(upto, op.epoch);
          finished.emplace_back(std::move(op.done), st);
        } else {
          kept.push_back(std::move(op));
        }
      }
      ops.swap(kept);
      kept.clear();
      {
        // The fence and the failures reach the loop thread together (see on_async()).
        std::lock_guard lock(mu_);
        fenced_upto_ = std::max(fenced_upto_, upto);
        fence_status_ = st;
        for (auto& f : finished) done_.push_back(std::move(f));
      }
      finished.clear();
      uv_async_send(async_);
      st = ops.empty() ? Status() : commit_round(ops, dirty, last_sync);
    }
    // Positions and deletes are already in effect on the loop thread: retry them until they
    // commit (or the environment closes).
    auto backoff = std::chrono::milliseconds(50);
    while (!st.ok() && !ops.empty()) {
      {
        std::lock_guard lock(mu_);
        failure_ = st.message();
      }
      spdlog::warn("lmdb: storing cursor positions failed, retrying in {}ms: {}", backoff.count(),
                   st.str());
      {
        std::unique_lock lock(mu_);
        if (cv_.wait_for(lock, backoff, [this] { return stop_; })) break;
      }
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      st = commit_round(ops, dirty, last_sync);
    }
    for (auto& op : ops) finished.emplace_back(std::move(op.done), st);
    const bool stored_others = st.ok() && !ops.empty();
    ops.clear();
    {
      std::lock_guard lock(mu_);
      if (stored_others) failure_.clear();
      for (auto& f : finished) done_.push_back(std::move(f));
      running_ = 0;
      ++rounds_;
    }
    finished.clear();
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
    // Whatever is put from now on was put knowing of every failure handed over here.
    if (self->fenced_upto_ >= self->epoch_.load()) self->epoch_.store(self->fenced_upto_ + 1);
  }
  for (auto& [fn, st] : done) {
    if (fn) fn(st);
  }
}

}  // namespace sluice::channels

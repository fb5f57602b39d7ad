#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/core/batch.h"
#include "lib/core/result.h"
#include "lib/core/status.h"

namespace sluice {

using CursorId = std::uint32_t;

struct TakeLimits {
  std::uint32_t max_events = 1000;
  std::uint64_t max_bytes = 4u << 20;
};

/// Told, per source output, when the batch put with `seq` is safe in one channel (memory: every
/// event of it was committed by the draining sink group; lmdb: the put is durable). Calls come in
/// put order.
class SafeListener {
 public:
  virtual void on_safe_in_channel(std::uint64_t seq) noexcept = 0;

 protected:
  ~SafeListener() = default;
};

/// A source's position after the last byte of a batch, plus its per-source sequence number. A
/// durable channel stores `position` under `key` ("SOURCE/KEY", e.g. one file of a taildir source)
/// in the same transaction as the batch; empty `key`: nothing to store.
struct SourceCheckpoint {
  SafeListener* listener = nullptr;
  std::uint64_t seq = 0;
  std::string_view position;  // opaque to the channel; valid only during put()
  std::string_view key;
};

class PutListener {
 public:
  /// Runs once per put, on the loop thread: ok once stored (lmdb: durable). On any error the
  /// batch was not stored and is still the caller's (see Channel::put()):
  /// - Errc::backpressure: no room. Answered inside put(), the channel's bounds are reached;
  ///   answered later, the store itself ran out of space (disk or map full). Either way register
  ///   with wait_for_space() and put the same batch again then.
  /// - any other code: put the same batch again after a pause (with backoff).
  /// Once a put failed, every later put into the same channel that was already made fails too,
  /// so that putting the failed ones again in sequence order keeps their order in the channel.
  /// May run inside put().
  virtual void on_put_done(std::uint64_t seq, Status status) noexcept = 0;

 protected:
  ~PutListener() = default;
};

class SpaceListener {
 public:
  virtual void on_space() noexcept = 0;

 protected:
  ~SpaceListener() = default;
};

class DataListener {
 public:
  /// Runs on a later loop turn after events arrived for an armed cursor; never inside put().
  virtual void on_data() noexcept = 0;

 protected:
  ~DataListener() = default;
};

/// A consumer that reads taken events at once and keeps no copy (Channel::take_in_place()).
class EventReader {
 public:
  /// Events [begin, end) of `batch`, valid only during the call. Must not call into the channel.
  virtual void on_events(const Batch& batch, std::size_t begin, std::size_t end) = 0;

 protected:
  ~EventReader() = default;
};

class CommitListener {
 public:
  /// Runs once per commit, on the loop thread, once the removal is durable. May run inside
  /// commit().
  virtual void on_committed(std::uint64_t token, Status status) noexcept = 0;

 protected:
  ~CommitListener() = default;
};

class Channel;

/// Events taken from a channel and not yet committed. Dropping a held lease rolls it back, so an
/// early return cannot lose events.
class Lease {
 public:
  Lease() = default;
  Lease(Channel* channel, std::uint64_t token, std::uint32_t events, std::uint64_t bytes)
      : channel_(channel), token_(token), events_(events), bytes_(bytes) {}
  Lease(Lease&& o) noexcept { *this = std::move(o); }
  Lease& operator=(Lease&& o) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease() { rollback(); }

  /// Returns the events to the head of the channel, order kept. A no-op for an empty lease.
  void rollback() noexcept;
  bool held() const noexcept { return channel_ != nullptr; }
  std::uint64_t token() const noexcept { return token_; }
  std::uint32_t events() const noexcept { return events_; }
  std::uint64_t bytes() const noexcept { return bytes_; }
  /// Gives up ownership without rolling back (the channel's commit() calls this).
  void release() noexcept { channel_ = nullptr; }

 private:
  Channel* channel_ = nullptr;
  std::uint64_t token_ = 0;
  std::uint32_t events_ = 0;
  std::uint64_t bytes_ = 0;
};

/// A transactional queue between sources and the sink groups that drain it. All calls happen on
/// the loop thread. The contract is in DESIGN.md, "Contracts between components".
class Channel {
 public:
  virtual ~Channel() = default;

  /// Opens the cursor of one sink group. The memory channel supports exactly one.
  virtual Result<CursorId> open_cursor(std::string_view group) = 0;
  /// The most events one put() or take() may carry (`transaction_events`).
  virtual std::uint32_t max_transaction_events() const noexcept = 0;

  /// Stores all of `batch` and `checkpoint` atomically, or neither. `done` runs once, on the loop
  /// thread. A put that completes inside put() with ok may take the batch's contents (leaving
  /// `batch` empty, possibly holding recycled capacity); in every other case `batch` is left as
  /// it was: a channel that completes later copies what it needs during put(), so that a put
  /// that fails leaves the batch with its caller, who puts it again (see PutListener).
  virtual void put(Batch& batch, const SourceCheckpoint& checkpoint, PutListener& done) = 0;
  /// Calls `listener.on_space()` once, on a later loop turn (never inside wait_for_space()), when
  /// a put that was refused with backpressure may fit: after a commit freed room, or, when the
  /// store ran out of space, after a probe delay (the disk may have been freed meanwhile).
  virtual void wait_for_space(SpaceListener& listener) = 0;

  /// Leases up to `limits` events for `cursor` into `out` (cleared first). An empty `out` means the
  /// channel had nothing for this cursor. Events stay owned by the channel until the lease commits.
  virtual Result<Lease> take(CursorId cursor, Batch& out, TakeLimits limits) = 0;
  /// take() for a consumer that reads the events at once: `reader` sees every leased event, in
  /// take order and in one or more runs, before this returns; the lease is as take()'s (its
  /// events() counts them). A channel that holds its events as batches passes its own, without a
  /// copy; otherwise they are taken into `scratch`.
  virtual Result<Lease> take_in_place(CursorId cursor, Batch& scratch, TakeLimits limits,
                                      EventReader& reader) {
    Result<Lease> lease = take(cursor, scratch, limits);
    if (lease && !scratch.empty()) reader.on_events(scratch, 0, scratch.size());
    return lease;
  }
  /// Calls `listener.on_data()` once, on a later loop turn, when events arrive for `cursor` (or
  /// return to it by a rollback); never inside put(), take(), commit() or a rollback.
  virtual void wait_for_data(CursorId cursor, DataListener& listener) = 0;
  /// Removes the leased events for good. Leases of one cursor commit in the order they were taken.
  /// `done` runs once; a channel retries a commit that failed to store itself (its effect on
  /// what the cursor sees is immediate), so an error reaches `done` only at shutdown.
  virtual void commit(Lease&& lease, CommitListener& done) = 0;

  /// Durable channels only (a consumer whose own state must move with its cursor, the SQL
  /// pipelines): commits `leases` (held leases of `cursor`, in take order; may be empty) and stores
  /// `value` under the checkpoint key `key` (read back by load_checkpoints()) in the same
  /// transaction, so that after a crash the cursor is past those events exactly when `value` is
  /// stored. The leases are consumed; `done` runs once as for commit(). Returns false, leaving the
  /// leases held, when the channel cannot (it is not durable).
  virtual bool commit_with_checkpoint(CursorId cursor, std::vector<Lease>& leases,
                                      std::string_view key, std::string value,
                                      CommitListener& done) {
    (void)cursor;
    (void)leases;
    (void)key;
    (void)value;
    (void)done;
    return false;
  }

  /// Closes a cursor whose reader is gone for good (a sink group removed by a reload, or built by
  /// a reload that failed): it stops holding records back. No lease of it may be committed after.
  virtual void close_cursor(CursorId cursor) noexcept { (void)cursor; }
  /// With several sink groups: once the channel is full, drop this cursor's oldest backlog instead
  /// of blocking the others (`lagging = "detach"`). Ignored by channels with one cursor.
  virtual void set_detach_when_lagging(CursorId cursor, bool detach) {
    (void)cursor;
    (void)detach;
  }
  /// Non-empty when the channel keeps running but an operator should look (quarantined records,
  /// puts failing because the disk is full): reported by /healthz as `degraded`.
  virtual std::string health_problem() const { return {}; }
  /// True if a put survives a crash (and stores its checkpoint with it).
  virtual bool durable() const noexcept { return false; }
  /// The checkpoints stored for keys starting with `prefix` ("SOURCE/"), as (key, position).
  virtual std::vector<std::pair<std::string, std::string>> load_checkpoints(
      std::string_view prefix) {
    (void)prefix;
    return {};
  }

  virtual std::uint64_t events() const noexcept = 0;  // events held, leased or not
  virtual std::uint64_t bytes() const noexcept = 0;

 protected:
  friend class Lease;
  /// Called by Lease::rollback(): returns the leased events (and every later lease of the same
  /// cursor, which the sink group rolls back first) to the head of the channel.
  virtual void rollback(const Lease& lease) noexcept = 0;
};

inline Lease& Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    rollback();
    channel_ = std::exchange(o.channel_, nullptr);
    token_ = o.token_;
    events_ = o.events_;
    bytes_ = o.bytes_;
  }
  return *this;
}

inline void Lease::rollback() noexcept {
  if (channel_ == nullptr) return;
  Channel* ch = std::exchange(channel_, nullptr);
  ch->rollback(*this);
}

}  // namespace sluice

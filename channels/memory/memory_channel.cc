#include "channels/memory/memory_channel.h"

#include <fmt/format.h>

#include <algorithm>

#include "lib/core/log.h"

namespace sluice::channels {

std::optional<MemoryConfig> MemoryConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  MemoryConfig c;
  node.optional("max_events", c.max_events, errors, InRange<std::uint64_t>{1, 100'000'000});
  node.optional("max_bytes", c.max_bytes, errors, InRange<ByteSize>{{1024}, {1ULL << 40}});
  node.optional("transaction_events", c.transaction_events, errors,
                InRange<std::uint32_t>{1, 1'000'000});
  node.reject_unknown_keys(errors);
  if (!node.has("transaction_events") && c.transaction_events > c.max_events) {
    c.transaction_events =
        static_cast<std::uint32_t>(c.max_events);  // the default follows a small max_events
  }
  if (errors.size() == before && c.transaction_events > c.max_events) {
    node.error_at(
        "transaction_events", errors,
        fmt::format("must not exceed max_events ({}), got {}", c.max_events, c.transaction_events));
  }
  return errors.size() == before ? std::optional{c} : std::nullopt;
}

namespace {

// glibc's malloc, which the agent uses: a block carries an 8-byte header and is 16-aligned, 32
// bytes at least; a block past the mmap threshold (128 KiB until the first such block is freed)
// is whole pages with a 16-byte header.
constexpr std::uint64_t kBlockOverhead = 32;
constexpr std::uint64_t kMmapThreshold = 128u << 10;
constexpr std::uint64_t kPage = 4096;

std::uint64_t block_cost(std::uint64_t n) noexcept {
  if (n == 0) return 0;
  if (n >= kMmapThreshold) return (n + kBlockOverhead + kPage - 1) / kPage * kPage;
  return std::max<std::uint64_t>(kBlockOverhead, (n + 8 + 15) / 16 * 16);
}

// Index bytes per event of a Batch (its record; headers and fields add their own): only decides
// when a batch is worth copying into exactly sized buffers, never what is charged.
constexpr std::uint64_t kIndexBytesPerEvent = 48;

}  // namespace

// A Batch is three vectors (arena, event records, header/field records) whose capacities sum to
// capacity_bytes(): each is one heap block, so the blocks cost at most 32 bytes more each, and a
// block past the mmap threshold (at most three of them, each over 128 KiB) at most a page more.
// Its common headers are one vector of string pairs plus the strings too long for the small-string
// buffer. Each held chunk also keeps a ring slot, and the ring is at most twice the chunks held.
std::uint64_t MemoryChannel::held_cost(const Batch& batch) noexcept {
  const std::uint64_t cap = batch.capacity_bytes();
  std::uint64_t cost = cap + 3 * kBlockOverhead +
                       std::min<std::uint64_t>(3, cap / kMmapThreshold) * kPage + 2 * sizeof(Chunk);
  if (const std::size_t common = batch.common_header_count(); common > 0 && !batch.empty()) {
    cost += block_cost(common * sizeof(std::pair<std::string, std::string>));
    const EventView e = batch[0];
    const std::size_t own = e.header_count() - common;
    for (std::size_t i = 0; i < common; ++i) {
      const Header h = e.header(own + i);
      for (const std::size_t len : {h.key.size(), h.value.size()}) {
        if (len >= sizeof(std::string)) cost += block_cost(len + 1);
      }
    }
  }
  return cost;
}

MemoryChannel::MemoryChannel(const MemoryConfig& config, ChannelContext& ctx)
    : config_(config),
      loop_(ctx.loop),
      name_(ctx.name),
      ring_(16),
      metrics_(ctx, config.max_events, config.max_bytes.bytes),
      dropped_events_(ctx.metrics.counter("sluice_channel_dropped_events_total",
                                          "Events dropped when full (when_full = \"drop_oldest\", "
                                          "or a group with lagging = \"detach\").",
                                          ctx.labels())),
      compacted_(ctx.metrics.counter("sluice_channel_compacted_batches_total",
                                     "Batches copied into exactly sized buffers when put into a "
                                     "filling memory channel (so that a backlog is stored "
                                     "compactly).",
                                     ctx.labels())) {}

Result<std::unique_ptr<MemoryChannel>> MemoryChannel::create(const MemoryConfig& config,
                                                             ChannelContext& ctx) {
  return std::make_unique<MemoryChannel>(config, ctx);
}

Result<CursorId> MemoryChannel::open_cursor(std::string_view group) {
  if (cursors_.size() >= (std::size_t{1} << (64 - kCursorShift)) - 1) {
    return Status(Errc::config, fmt::format("memory channel {}: too many cursors ({} for {})",
                                            name_, cursors_.size(), group));
  }
  // A new reader starts at the oldest event still held: it sees everything not yet freed. A reader
  // of a name seen before (a pipeline or group built again by a reload) reads on where its
  // predecessor committed, so that what it already counted or delivered is not read twice.
  Cursor c;
  c.group = std::string(group);
  c.open = true;
  c.committed = freed_total_;
  for (const Cursor& old : cursors_) {
    if (old.group == group) c.committed = std::max(freed_total_, old.committed);
  }
  c.taken = c.committed;
  c.take_chunk = chunk_holding(c.taken);
  cursors_.push_back(std::move(c));
  return static_cast<CursorId>(cursors_.size() - 1);
}

void MemoryChannel::close_cursor(CursorId cursor) noexcept {
  if (cursor >= cursors_.size() || !cursors_[cursor].open) return;
  Cursor& c = cursors_[cursor];
  c.open = false;
  c.data_waiter = nullptr;
  const std::uint64_t before = freed_total_;
  release_committed();
  update_gauges();
  if (freed_total_ != before) notify_space_later();
}

void MemoryChannel::set_detach_when_lagging(CursorId cursor, bool detach) {
  if (cursor < cursors_.size()) cursors_[cursor].detach = detach;
}

MemoryChannel::Cursor* MemoryChannel::cursor_of(std::uint64_t token) noexcept {
  const std::uint64_t id = token >> kCursorShift;
  if (id >= cursors_.size() || !cursors_[id].open) return nullptr;
  return &cursors_[id];
}

std::uint64_t MemoryChannel::min_committed() const noexcept {
  std::uint64_t m = put_total_;
  bool any = false;
  for (const Cursor& c : cursors_) {
    if (!c.open) continue;
    any = true;
    m = std::min(m, c.committed);
  }
  // No reader: nothing may be freed (a reader opened later sees every held event).
  return any ? m : freed_total_;
}

std::size_t MemoryChannel::chunk_holding(std::uint64_t event) const noexcept {
  std::size_t i = 0;
  while (i < count_) {
    const Chunk& c = chunk_at(i);
    if (c.first + c.batch.size() > event) break;
    ++i;
  }
  return i;
}

void MemoryChannel::grow_ring() {
  std::vector<Chunk> bigger(ring_.size() * 2);
  for (std::size_t i = 0; i < count_; ++i) bigger[i] = std::move(chunk_at(i));
  // Keep the recycled buffers of the free slots too.
  for (std::size_t i = count_; i < ring_.size(); ++i) bigger[i] = std::move(chunk_at(i));
  ring_.swap(bigger);
  head_ = 0;
}

void MemoryChannel::release_spares() noexcept {
  for (std::size_t i = count_; i < ring_.size(); ++i) {
    Chunk& c = chunk_at(i);
    if (c.spare == 0) continue;
    c.batch.release();
    c.spare = 0;
  }
  spare_bytes_ = 0;
}

void MemoryChannel::put(Batch& batch, const SourceCheckpoint& checkpoint, PutListener& done) {
  const std::size_t n = batch.size();
  SLUICE_ASSERT(n > 0);  // an empty chunk would never be committed, so never reported safe
  if (Status st = ChannelMetrics::check_transaction(n, config_.transaction_events); !st.ok()) {
    done.on_put_done(checkpoint.seq, std::move(st));
    return;
  }
  // A backlog builds (the channel is a quarter full) and the batch has much unused capacity (a
  // source's batch grown by doubling has up to half): store a copy in exactly sized buffers, and
  // leave the caller its warm buffers.
  const std::uint64_t exact = batch.bytes() + n * kIndexBytesPerEvent;
  const bool compact =
      bytes_ >= config_.max_bytes.bytes / 4 && batch.capacity_bytes() > exact + exact / 8;
  if (compact) {
    compact_.release();
    compact_.reserve(n, batch.bytes());
    compact_.append_range(batch, 0, n);
  }
  const std::uint64_t cost = held_cost(compact ? compact_ : batch);
  auto fits = [&] {
    return events() + n <= config_.max_events && bytes_ + cost <= config_.max_bytes.bytes;
  };
  // An empty channel takes any batch, so that one event larger than max_bytes cannot block forever.
  while (!fits() && events() > 0) {
    if (!drop_oldest()) {
      if (compact) compact_.release();
      metrics_.backpressure.inc();
      done.on_put_done(checkpoint.seq, Status(Errc::backpressure, "memory channel full"));
      return;
    }
  }
  // Recycled buffers of free slots count against the bound too: freed when they would not fit.
  if (bytes_ + cost + spare_bytes_ > config_.max_bytes.bytes) release_spares();
  if (count_ == ring_.size()) grow_ring();
  Chunk& c = chunk_at(count_);
  ++count_;
  spare_bytes_ -= c.spare;
  c.spare = 0;
  if (compact) {
    c.batch.release();
    c.batch.swap(compact_);
    batch.clear();
    compacted_.inc();
  } else {
    c.batch.clear();
    c.batch.swap(batch);  // the slot's recycled buffers go to the caller
  }
  c.first = put_total_;
  c.listener = checkpoint.listener;
  c.seq = checkpoint.seq;
  c.cost = cost;
  put_total_ += n;
  bytes_ += c.cost;
  event_bytes_ += c.batch.bytes();
  metrics_.put_events.inc(n);
  update_gauges();
  done.on_put_done(checkpoint.seq, Status());
  for (CursorId id = 0; id < cursors_.size(); ++id) notify_data_later(id);
}

void MemoryChannel::wait_for_space(SpaceListener& listener) {
  if (std::find(space_waiters_.begin(), space_waiters_.end(), &listener) == space_waiters_.end()) {
    space_waiters_.push_back(&listener);
  }
}

// The runs of events a take leases, in order: run(chunk's batch, from, to) for each. With
// `one_header_set`, stops before a chunk whose common headers differ from the first run's (a
// Batch holds one set).
template <class Run>
Result<Lease> MemoryChannel::take_runs(CursorId cursor, TakeLimits limits, bool one_header_set,
                                       Run&& run) {
  if (cursor >= cursors_.size() || !cursors_[cursor].open) {
    return Status(Errc::config,
                  fmt::format("memory channel {}: cursor {} is not open", name_, cursor));
  }
  Cursor& cur = cursors_[cursor];
  const std::uint64_t start = cur.taken;
  const std::uint64_t max_events =
      std::min<std::uint64_t>(limits.max_events, config_.transaction_events);
  std::uint64_t bytes = 0;
  std::uint64_t taken = 0;
  const Batch* first = nullptr;
  while (cur.taken < put_total_ && taken < max_events) {
    Chunk& c = chunk_at(cur.take_chunk);
    const std::size_t from = cur.taken - c.first;
    if (from >= c.batch.size()) {
      ++cur.take_chunk;
      continue;
    }
    // One lease carries one set of common headers (e.g. one file's path): stop at a chunk with
    // others.
    if (one_header_set && first != nullptr && !first->same_common_headers(c.batch)) break;
    std::size_t to = from;
    while (to < c.batch.size() && taken + (to - from) < max_events) {
      const std::uint64_t b = c.batch[to].bytes();
      if (bytes + b > limits.max_bytes && (taken + (to - from)) > 0) break;
      bytes += b;
      ++to;
    }
    if (to == from) break;
    run(c.batch, from, to);
    if (first == nullptr) first = &c.batch;
    taken += to - from;
    cur.taken += to - from;
    if (to < c.batch.size()) break;  // stopped by a limit
    ++cur.take_chunk;
  }
  if (taken == 0) return Lease();
  return Lease(this, (std::uint64_t{cursor} << kCursorShift) | start,
               static_cast<std::uint32_t>(taken), bytes);
}

Result<Lease> MemoryChannel::take(CursorId cursor, Batch& out, TakeLimits limits) {
  out.clear();
  return take_runs(cursor, limits, true, [&](const Batch& b, std::size_t from, std::size_t to) {
    out.append_range(b, from, to);
  });
}

Result<Lease> MemoryChannel::take_in_place(CursorId cursor, Batch& scratch, TakeLimits limits,
                                           EventReader& reader) {
  (void)scratch;
  // The chunks stay as they are until the lease commits or rolls back, and the reader does not
  // call into the channel: each run is read where it lies.
  return take_runs(cursor, limits, false, [&](const Batch& b, std::size_t from, std::size_t to) {
    reader.on_events(b, from, to);
  });
}

void MemoryChannel::wait_for_data(CursorId cursor, DataListener& listener) {
  if (cursor >= cursors_.size() || !cursors_[cursor].open) return;
  cursors_[cursor].data_waiter = &listener;
  notify_data_later(cursor);
}

void MemoryChannel::notify_data_later(CursorId id) {
  Cursor& c = cursors_[id];
  if (!c.open || c.data_waiter == nullptr || c.data_task_pending || c.taken >= put_total_) return;
  c.data_task_pending = true;
  loop_.defer(&MemoryChannel::notify_data, this, id);
}

void MemoryChannel::notify_data(void* self, std::uint64_t cursor) {
  auto* ch = static_cast<MemoryChannel*>(self);
  if (cursor >= ch->cursors_.size()) return;
  MemoryChannel::Cursor& c = ch->cursors_[cursor];
  c.data_task_pending = false;
  DataListener* l = std::exchange(c.data_waiter, nullptr);
  if (l != nullptr && c.open) l->on_data();
}

void MemoryChannel::commit(Lease&& lease, CommitListener& done) {
  SLUICE_ASSERT(lease.held());
  const std::uint64_t token = lease.token();
  lease.release();
  Cursor* c = cursor_of(token);
  if (c == nullptr) {  // its cursor was closed: nothing of it holds events any more
    done.on_committed(token, Status());
    return;
  }
  const std::uint64_t first = token & kEventMask;
  const std::uint64_t end = first + lease.events();
  // Leases of a cursor commit in take order: this one starts at its oldest uncommitted event,
  // unless a drop (lagging = "detach") already moved the cursor past some or all of it.
  SLUICE_ASSERT(first <= c->committed);
  SLUICE_ASSERT(end <= c->taken);
  if (end > c->committed) {
    metrics_.committed_events.inc(end - std::max(first, c->committed));
    c->committed = end;
  }
  release_committed();
  update_gauges();
  done.on_committed(token, Status());
  notify_space_later();
}

void MemoryChannel::release_committed() {
  const std::uint64_t upto = min_committed();
  // Release fully committed chunks, oldest first; each one's batch is now safe for its source.
  while (count_ > 0) {
    Chunk& c = chunk_at(0);
    if (c.first + c.batch.size() > upto) break;
    SafeListener* l = c.listener;
    const std::uint64_t seq = c.seq;
    freed_total_ = c.first + c.batch.size();
    bytes_ -= c.cost;
    event_bytes_ -= c.batch.bytes();
    c.cost = 0;
    c.batch.clear();
    c.listener = nullptr;
    head_ = (head_ + 1) % ring_.size();
    --count_;
    keep_spare(c);
    for (Cursor& cur : cursors_) cur.take_chunk = cur.take_chunk > 0 ? cur.take_chunk - 1 : 0;
    if (l != nullptr) l->on_safe_in_channel(seq);
  }
}

// The freed buffers go to the slot the next put uses, if it has none: a put hands its batch to
// its slot and takes the slot's buffers, so one spare there keeps a steady stream warm (kept in
// the freed slot, a spare waited for the whole ring to come round, and with batches of ~750 KB
// only some puts found one). Within kMaxSpareBytes, but always one, whatever its size.
void MemoryChannel::keep_spare(Chunk& freed) noexcept {
  const std::size_t cap = freed.batch.capacity_bytes();
  if (cap == 0) return;
  if (spare_bytes_ > 0 && spare_bytes_ + cap > kMaxSpareBytes) {
    freed.batch.release();
    return;
  }
  Chunk& next = chunk_at(count_);
  Chunk& slot = &next != &freed && next.spare == 0 ? next : freed;
  if (&slot != &freed) {
    slot.batch.release();
    slot.batch.swap(freed.batch);
  }
  slot.spare = cap;
  spare_bytes_ += cap;
}

bool MemoryChannel::drop_oldest() {
  if (count_ == 0) return false;
  const Chunk& head = chunk_at(0);
  const std::uint64_t end = head.first + head.batch.size();
  // Only detachable cursors move; a cursor that does not detach and still needs the oldest chunk
  // keeps it (and the channel stays full: the sources wait).
  bool any = false;
  for (const Cursor& c : cursors_) {
    if (!c.open || c.committed >= end) continue;
    if (!c.detach) return false;
    any = true;
  }
  if (!any) return false;
  for (Cursor& c : cursors_) {
    if (!c.open || c.committed >= end) continue;
    const std::uint64_t lost = end - c.committed;
    dropped_events_.inc(lost);
    SLUICE_WARN_RATE_LIMITED(
        "memory channel {}: full; dropped {} of the oldest events for sink group {} (lagging = "
        "\"detach\")",
        name_, lost, c.group);
    c.committed = end;
    c.taken = std::max(c.taken, end);
  }
  release_committed();
  for (Cursor& c : cursors_) c.take_chunk = chunk_holding(c.taken);
  update_gauges();
  return true;
}

void MemoryChannel::notify_space_later() {
  if (!space_waiters_.empty() && !space_task_pending_) {
    space_task_pending_ = true;
    loop_.defer(&MemoryChannel::notify_space, this, 0);
  }
}

void MemoryChannel::notify_space(void* self, std::uint64_t) {
  auto* ch = static_cast<MemoryChannel*>(self);
  ch->space_task_pending_ = false;
  ch->space_notifying_.clear();
  ch->space_notifying_.swap(ch->space_waiters_);
  for (SpaceListener* l : ch->space_notifying_) l->on_space();
}

void MemoryChannel::rollback(const Lease& lease) noexcept {
  Cursor* c = cursor_of(lease.token());
  if (c == nullptr) return;
  // Everything taken from the lease's first event on returns to the head: later leases of the
  // cursor are rolled back first by the group, and the events never left their chunks. Events a
  // drop moved the cursor past stay dropped.
  const std::uint64_t first = std::max(lease.token() & kEventMask, c->committed);
  if (first >= c->taken) return;
  metrics_.rollback_events.inc(c->taken - first);
  c->taken = first;
  c->take_chunk = chunk_holding(first);
  notify_data_later(static_cast<CursorId>(c - cursors_.data()));
}

void MemoryChannel::update_gauges() noexcept { metrics_.held(events(), bytes_); }

}  // namespace sluice::channels

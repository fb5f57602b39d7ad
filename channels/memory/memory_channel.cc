#include "channels/memory/memory_channel.h"

#include <fmt/format.h>

#include <algorithm>

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

MemoryChannel::MemoryChannel(const MemoryConfig& config, ChannelContext& ctx)
    : config_(config),
      loop_(ctx.loop),
      ring_(16),
      metrics_(ctx, config.max_events, config.max_bytes.bytes) {}

Result<std::unique_ptr<MemoryChannel>> MemoryChannel::create(const MemoryConfig& config,
                                                             ChannelContext& ctx) {
  return std::make_unique<MemoryChannel>(config, ctx);
}

Result<CursorId> MemoryChannel::open_cursor(std::string_view group) {
  if (cursor_open_) {
    return Status(Errc::config,
                  fmt::format("memory channel supports one sink group; {} is a second", group));
  }
  cursor_open_ = true;
  return CursorId{0};
}

void MemoryChannel::grow_ring() {
  std::vector<Chunk> bigger(ring_.size() * 2);
  for (std::size_t i = 0; i < count_; ++i) bigger[i] = std::move(chunk_at(i));
  // Keep the recycled buffers of the free slots too.
  for (std::size_t i = count_; i < ring_.size(); ++i) bigger[i] = std::move(chunk_at(i));
  ring_.swap(bigger);
  head_ = 0;
}

void MemoryChannel::put(Batch& batch, const SourceCheckpoint& checkpoint, PutListener& done) {
  const std::size_t n = batch.size();
  SLUICE_ASSERT(n > 0);  // an empty chunk would never be committed, so never reported safe
  if (Status st = ChannelMetrics::check_transaction(n, config_.transaction_events); !st.ok()) {
    done.on_put_done(checkpoint.seq, std::move(st));
    return;
  }
  // An empty channel takes any batch, so that one event larger than max_bytes cannot block forever.
  const bool fits =
      events() + n <= config_.max_events && bytes_ + batch.bytes() <= config_.max_bytes.bytes;
  if (!fits && events() > 0) {
    metrics_.backpressure.inc();
    done.on_put_done(checkpoint.seq, Status(Errc::backpressure, "memory channel full"));
    return;
  }
  if (count_ == ring_.size()) grow_ring();
  Chunk& c = chunk_at(count_);
  ++count_;
  spare_bytes_ -= c.spare;  // its recycled buffers go to the caller
  c.spare = 0;
  c.batch.clear();
  c.batch.swap(batch);
  c.first = put_total_;
  c.listener = checkpoint.listener;
  c.seq = checkpoint.seq;
  put_total_ += n;
  bytes_ += c.batch.bytes();
  metrics_.put_events.inc(n);
  update_gauges();
  done.on_put_done(checkpoint.seq, Status());
  if (data_waiter_ != nullptr && !data_task_pending_ && taken_total_ < put_total_) {
    data_task_pending_ = true;
    loop_.defer(&MemoryChannel::notify_data, this, 0);
  }
}

void MemoryChannel::wait_for_space(SpaceListener& listener) {
  if (std::find(space_waiters_.begin(), space_waiters_.end(), &listener) == space_waiters_.end()) {
    space_waiters_.push_back(&listener);
  }
}

Result<Lease> MemoryChannel::take(CursorId, Batch& out, TakeLimits limits) {
  out.clear();
  const std::uint64_t start = taken_total_;
  const std::uint64_t max_events =
      std::min<std::uint64_t>(limits.max_events, config_.transaction_events);
  std::uint64_t bytes = 0;
  while (taken_total_ < put_total_ && out.size() < max_events) {
    Chunk& c = chunk_at(take_chunk_);
    const std::size_t from = taken_total_ - c.first;
    if (from >= c.batch.size()) {
      ++take_chunk_;
      continue;
    }
    // One lease carries one set of common headers (e.g. one file's path): stop at a chunk with
    // others.
    if (!out.empty() && !out.same_common_headers(c.batch)) break;
    std::size_t to = from;
    while (to < c.batch.size() && out.size() + (to - from) < max_events) {
      const std::uint64_t b = c.batch[to].bytes();
      if (bytes + b > limits.max_bytes && (out.size() + (to - from)) > 0) break;
      bytes += b;
      ++to;
    }
    if (to == from) break;
    out.append_range(c.batch, from, to);
    taken_total_ += to - from;
    if (to < c.batch.size()) break;  // stopped by a limit
    ++take_chunk_;
  }
  if (out.empty()) return Lease();
  return Lease(this, start, static_cast<std::uint32_t>(out.size()), bytes);
}

void MemoryChannel::wait_for_data(CursorId, DataListener& listener) {
  data_waiter_ = &listener;
  if (taken_total_ < put_total_ && !data_task_pending_) {
    data_task_pending_ = true;
    loop_.defer(&MemoryChannel::notify_data, this, 0);
  }
}

void MemoryChannel::notify_data(void* self, std::uint64_t) {
  auto* ch = static_cast<MemoryChannel*>(self);
  ch->data_task_pending_ = false;
  DataListener* l = std::exchange(ch->data_waiter_, nullptr);
  if (l != nullptr) l->on_data();
}

void MemoryChannel::commit(Lease&& lease, CommitListener& done) {
  SLUICE_ASSERT(lease.held());
  // Leases commit in take order: this one must start at the oldest uncommitted event.
  SLUICE_ASSERT(lease.token() == committed_total_);
  SLUICE_ASSERT(committed_total_ + lease.events() <= taken_total_);
  const std::uint64_t token = lease.token();
  lease.release();
  committed_total_ += lease.events();
  metrics_.committed_events.inc(lease.events());
  bytes_ -= lease.bytes();
  // Release fully committed chunks, oldest first; each one's batch is now safe for its source.
  while (count_ > 0) {
    Chunk& c = chunk_at(0);
    if (c.first + c.batch.size() > committed_total_) break;
    SafeListener* l = c.listener;
    const std::uint64_t seq = c.seq;
    c.batch.clear();
    if (const std::size_t cap = c.batch.capacity_bytes(); spare_bytes_ + cap <= kMaxSpareBytes) {
      c.spare = cap;
      spare_bytes_ += cap;
    } else {
      c.batch.release();
    }
    c.listener = nullptr;
    head_ = (head_ + 1) % ring_.size();
    --count_;
    take_chunk_ = take_chunk_ > 0 ? take_chunk_ - 1 : 0;
    if (l != nullptr) l->on_safe_in_channel(seq);
  }
  update_gauges();
  done.on_committed(token, Status());
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
  // Everything taken from the lease's first event on returns to the head: later leases of the
  // cursor are rolled back first by the group, and the events never left their chunks.
  if (lease.token() >= taken_total_) return;
  metrics_.rollback_events.inc(taken_total_ - lease.token());
  taken_total_ = lease.token();
  take_chunk_ = 0;
  while (take_chunk_ < count_) {
    const Chunk& c = chunk_at(take_chunk_);
    if (c.first + c.batch.size() > taken_total_) break;
    ++take_chunk_;
  }
  if (data_waiter_ != nullptr && !data_task_pending_) {
    data_task_pending_ = true;
    loop_.defer(&MemoryChannel::notify_data, this, 0);
  }
}

void MemoryChannel::update_gauges() noexcept { metrics_.held(events(), bytes_); }

}  // namespace sluice::channels

#include "lib/core/source_output.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace sluice {
namespace {
// A failed put is tried again after kRetryFirst, doubling up to kRetryMax while it keeps failing.
constexpr Duration kRetryFirst = std::chrono::milliseconds(100);
constexpr Duration kRetryMax = std::chrono::seconds(5);
}  // namespace

SourceOutput::SourceOutput(Loop& loop, std::vector<Channel*> channels, std::size_t max_pending_puts,
                           Channel* dead_letter)
    : loop_(loop),
      channels_(std::move(channels)),
      dead_letter_(dead_letter),
      slots_(max_pending_puts),
      retry_timer_(loop),
      retry_delay_(kRetryFirst) {
  SLUICE_ASSERT(!channels_.empty() && max_pending_puts > 0);
  max_batch_events_ = channels_.front()->max_transaction_events();
  for (std::size_t i = 0; i < targets(); ++i)
    max_batch_events_ = std::min(max_batch_events_, target(i)->max_transaction_events());
  remaining_.resize(64);
  resume_seqs_.reserve(max_pending_puts);
}

bool SourceOutput::writable() const noexcept {
  const bool ok = waiting_ == 0 && pending_ < slots_.size();
  if (!ok) told_blocked_ = true;
  return ok;
}

std::size_t SourceOutput::drop_waiting() {
  std::size_t dropped = 0;
  for (Slot& s : slots_) {
    if (!s.busy || !s.waiting || s.next_channel != 0) continue;
    s.waiting = false;
    --waiting_;
    s.busy = false;
    s.batch.clear();
    --pending_;
    ++dropped;
    dropped_seqs_.push_back(s.seq);
  }
  return dropped;
}

bool SourceOutput::settled() const noexcept {
  if (pending_ != 0) return false;
  for (std::size_t i = 0; i < ring_size_; ++i) {
    const std::uint64_t seq = safe_seq_ + 1 + i;
    if (remaining_[(ring_head_ + i) % remaining_.size()] == 0) continue;
    if (std::find(dropped_seqs_.begin(), dropped_seqs_.end(), seq) == dropped_seqs_.end())
      return false;
  }
  return true;
}

std::size_t SourceOutput::abandon_waiting() {
  std::size_t dropped = 0;
  std::uint64_t seqs[kMaxAbandonedPerCall];
  std::size_t n = 0;
  for (Slot& s : slots_) {
    if (!s.busy || !s.waiting || s.next_channel != 0) continue;
    s.waiting = false;
    --waiting_;
    s.busy = false;
    s.batch.clear();
    s.side.clear();
    --pending_;
    if (n < kMaxAbandonedPerCall) {
      seqs[n++] = s.seq;
    } else {
      remaining_[(ring_head_ + (s.seq - safe_seq_ - 1)) % remaining_.size()] = 0;
    }
    ++dropped;
  }
  // Nothing of them was stored. The newest are forgotten as if never numbered, so that a flood of
  // refused requests behind one unsafe put (a dead sink) does not grow the safety ring; the others
  // count as safe at once, in order with the rest.
  std::sort(seqs, seqs + n, std::greater<>());
  bool pop = false;
  for (std::size_t i = 0; i < n; ++i) {
    if (seqs[i] == seq_ && ring_size_ > 0 && seq_ == safe_seq_ + ring_size_) {
      --seq_;
      --ring_size_;
    } else {
      remaining_[(ring_head_ + (seqs[i] - safe_seq_ - 1)) % remaining_.size()] = 0;
      pop = true;
    }
  }
  if (dropped > 0 && waiting_ == 0) retry_timer_.stop();
  if (pop) defer_pop_safe();
  return dropped;
}

void SourceOutput::defer_pop_safe() {
  if (pop_safe_deferred_) return;  // one task pops every entry that is safe by then
  pop_safe_deferred_ = true;
  loop_.defer(pop_safe_task, this, 0);
}

bool SourceOutput::durable() const noexcept {
  for (std::size_t i = 0; i < targets(); ++i) {
    if (target(i)->durable()) return true;
  }
  return false;
}

std::vector<std::pair<std::string, std::string>> SourceOutput::load_checkpoints() {
  const std::string prefix = source_name_ + "/";
  for (std::size_t i = 0; i < targets(); ++i) {
    Channel* c = target(i);
    if (!c->durable()) continue;
    auto found = c->load_checkpoints(prefix);
    for (auto& [k, v] : found) k.erase(0, prefix.size());
    return found;
  }
  return {};
}

std::uint64_t SourceOutput::put(Batch& batch, std::string_view position, std::string_view key) {
  SLUICE_ASSERT(writable());
  Slot* slot = nullptr;
  for (Slot& s : slots_) {
    if (!s.busy) {
      slot = &s;
      break;
    }
  }
  SLUICE_ASSERT(slot != nullptr);
  slot->busy = true;
  slot->batch.clear();
  slot->batch.swap(batch);
  slot->side.clear();
  if (dead_letter_ != nullptr && slot->batch.any_flagged(Batch::kDeadLetter)) {
    // Route flagged events to the dead-letter channel, keeping the order of both parts.
    kept_.clear();
    const Batch& all = slot->batch;
    for (std::size_t i = 0; i < all.size();) {
      const bool dead = (all[i].flags() & Batch::kDeadLetter) != 0;
      std::size_t j = i + 1;
      while (j < all.size() && ((all[j].flags() & Batch::kDeadLetter) != 0) == dead) ++j;
      (dead ? slot->side : kept_).append_range(all, i, j);
      i = j;
    }
    slot->batch.swap(kept_);
  }
  slot->position.assign(position);
  slot->key.clear();
  if (!key.empty()) {
    slot->key.append(source_name_).append("/").append(key);
  }
  slot->seq = ++seq_;
  slot->next_channel = 0;
  ++pending_;
  // Register the seq for safety tracking before any channel can report it safe.
  if (ring_size_ == remaining_.size()) {
    std::vector<std::uint32_t> bigger(remaining_.size() * 2);
    for (std::size_t i = 0; i < ring_size_; ++i)
      bigger[i] = remaining_[(ring_head_ + i) % remaining_.size()];
    remaining_.swap(bigger);
    ring_head_ = 0;
  }
  std::uint32_t acks = slot->batch.empty() ? 0 : static_cast<std::uint32_t>(channels_.size());
  if (!slot->side.empty()) ++acks;
  remaining_[(ring_head_ + ring_size_) % remaining_.size()] = acks;
  ++ring_size_;
  const std::uint64_t seq = slot->seq;
  if (acks == 0) defer_pop_safe();  // safe once every earlier put is
  advance(*slot);
  return seq;
}

void SourceOutput::advance(Slot& slot) {
  while (slot.next_channel < targets()) {
    Channel* ch = target(slot.next_channel);
    Batch& source = batch_for(slot, slot.next_channel);
    if (source.empty()) {
      ++slot.next_channel;  // nothing for this channel
      continue;
    }
    const bool last = slot.next_channel + 1 >= channels_.size();  // the side batch has one taker
    Batch* to_put = &source;
    if (!last) {
      scratch_.clear();
      scratch_.append_range(source, 0, source.size());
      to_put = &scratch_;
    }
    slot.in_put = true;
    slot.done_inline = false;
    ch->put(*to_put, SourceCheckpoint{this, slot.seq, slot.position, slot.key}, *this);
    slot.in_put = false;
    if (!slot.done_inline) return;  // on_put_done() continues later
    if (!accepted(slot, std::move(slot.inline_status), true)) return;
  }
  finish(slot);
}

bool SourceOutput::accepted(Slot& slot, Status st, bool inline_answer) {
  if (st.ok()) {
    ++slot.next_channel;
    failing_ = false;
    retry_delay_ = kRetryFirst;
    return true;
  }
  slot.waiting = true;
  ++waiting_;
  // A full channel refusing inside put() is ordinary flow control; anything else means the
  // channel took the put and could not store it.
  if (!inline_answer || st.code() != Errc::backpressure) count_error(st, inline_answer);
  if (st.code() == Errc::backpressure) {
    target(slot.next_channel)->wait_for_space(*this);
  } else if (!retry_timer_.active()) {
    // Never drop the batch: it is still ours (channel.h); put it again, with every other
    // waiting one, in order.
    spdlog::warn("source {}: put into channel failed, retrying in {}ms: {}", source_name_,
                 std::chrono::duration_cast<std::chrono::milliseconds>(retry_delay_).count(),
                 st.str());
    retry_timer_.start(retry_delay_, [this] {
      retry_delay_ = std::min(retry_delay_ * 2, kRetryMax);
      resume_waiting();
    });
  }
  return false;
}

void SourceOutput::count_error(const Status& st, bool inline_answer) {
  ++put_errors_;
  if (!failing_ || last_error_.empty()) last_error_ = st.str();
  failing_ = true;
  if (metrics_ == nullptr) return;
  const std::string reason = st.code() == Errc::backpressure && !inline_answer
                                 ? std::string("no_space")
                                 : std::string(errc_name(st.code()));
  for (auto& [r, c] : error_counters_) {
    if (r == reason) return c->inc();
  }
  Labels labels = labels_;
  labels.emplace_back("reason", reason);
  Counter& c =
      metrics_->counter("sluice_source_put_errors_total",
                        "Puts a channel took but could not store (retried), by reason.", labels);
  error_counters_.emplace_back(reason, &c);
  c.inc();
}

void SourceOutput::set_metrics(MetricsRegistry& metrics, Labels labels) {
  metrics_ = &metrics;
  labels_ = std::move(labels);
  error_counters_.clear();
}

std::string SourceOutput::health_problem() const {
  if (!failing_) return {};
  return "source " + source_name_ + ": puts fail, retrying: " + last_error_;
}

void SourceOutput::finish(Slot& slot) {
  slot.busy = false;
  slot.batch.clear();
  slot.side.clear();
  --pending_;
  if (told_blocked_ && writable() && listener_ != nullptr) {
    told_blocked_ = false;
    listener_->on_writable();
  }
}

SourceOutput::Slot* SourceOutput::slot_for(std::uint64_t seq) noexcept {
  for (Slot& s : slots_) {
    if (s.busy && s.seq == seq) return &s;
  }
  return nullptr;
}

void SourceOutput::on_put_done(std::uint64_t seq, Status status) noexcept {
  Slot* slot = slot_for(seq);
  SLUICE_ASSERT(slot != nullptr);
  if (slot->in_put) {
    slot->done_inline = true;
    slot->inline_status = std::move(status);
    return;
  }
  if (accepted(*slot, std::move(status), false)) advance(*slot);
}

void SourceOutput::on_space() noexcept { resume_waiting(); }

// Puts every waiting put again, oldest first, so that order into each channel is kept: a channel
// fails every put made after one that failed (channel.h), so the waiting ones are exactly the
// puts to make again. Stops at the first one refused again at once; the rest wait with it.
void SourceOutput::resume_waiting() {
  if (resuming_) return;  // an inline answer re-entered through on_space()
  resuming_ = true;
  std::vector<std::uint64_t>& seqs = resume_seqs_;  // reserved: on_space() is on the hot path
  seqs.clear();
  for (const Slot& s : slots_) {
    if (s.busy && s.waiting) seqs.push_back(s.seq);
  }
  std::sort(seqs.begin(), seqs.end());
  for (std::uint64_t seq : seqs) {
    Slot* slot = slot_for(seq);
    if (slot == nullptr || !slot->waiting) continue;
    slot->waiting = false;
    --waiting_;
    advance(*slot);
    if (slot->busy && slot->seq == seq && slot->waiting) break;
  }
  resuming_ = false;
}

void SourceOutput::pop_safe_task(void* self, std::uint64_t) {
  auto* out = static_cast<SourceOutput*>(self);
  out->pop_safe_deferred_ = false;
  out->pop_safe();
}

void SourceOutput::on_safe_in_channel(std::uint64_t seq) noexcept {
  SLUICE_ASSERT(seq > safe_seq_ && seq - safe_seq_ <= ring_size_);
  std::uint32_t& left = remaining_[(ring_head_ + (seq - safe_seq_ - 1)) % remaining_.size()];
  SLUICE_ASSERT(left > 0);
  --left;
  pop_safe();
}

void SourceOutput::pop_safe() {
  std::uint64_t advanced = safe_seq_;
  while (ring_size_ > 0 && remaining_[ring_head_] == 0) {
    ring_head_ = (ring_head_ + 1) % remaining_.size();
    --ring_size_;
    ++advanced;
  }
  if (advanced != safe_seq_) {
    safe_seq_ = advanced;
    if (listener_ != nullptr) listener_->on_safe(safe_seq_);
  }
}

}  // namespace sluice

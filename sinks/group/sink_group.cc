#include "sinks/group/sink_group.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace sluice::sinks {

bool GroupConfig::parse(const ConfigNode& node, ConfigErrors& errors, GroupConfig& out) {
  const std::size_t before = errors.size();
  using std::chrono::nanoseconds;
  node.optional("max_in_flight", out.max_in_flight, errors, InRange<std::uint32_t>{1, 64});
  node.optional("batch_events", out.batch_events, errors, InRange<std::uint32_t>{1, 1'000'000});
  node.optional("batch_bytes", out.batch_bytes, errors, InRange<ByteSize>{{1024}, {1ULL << 30}});
  node.optional("max_penalty", out.max_penalty, errors,
                InRange<nanoseconds>{std::chrono::milliseconds(1), std::chrono::hours(1)});
  node.optional("penalty_base", out.penalty_base, errors,
                InRange<nanoseconds>{std::chrono::milliseconds(1), std::chrono::hours(1)});
  return errors.size() == before;
}

std::chrono::nanoseconds penalty_for(std::uint32_t failures, std::chrono::nanoseconds base,
                                     std::chrono::nanoseconds max) {
  if (failures == 0) return std::chrono::nanoseconds::zero();
  std::chrono::nanoseconds p = base;
  for (std::uint32_t i = 1; i < failures && p < max; ++i) p *= 2;
  return std::min(p, max);
}

SingleProcessor::SingleProcessor(Sink& sink, std::chrono::nanoseconds base,
                                 std::chrono::nanoseconds max)
    : sink_(sink), base_(base), max_(max) {}

Sink* SingleProcessor::pick(TimePoint now) { return now >= until_ ? &sink_ : nullptr; }

void SingleProcessor::penalize(Sink&, TimePoint now) {
  ++failures_;
  until_ = now + penalty_for(failures_, base_, max_);
}

void SingleProcessor::succeeded(Sink&) {
  failures_ = 0;
  until_ = {};
}

TimePoint SingleProcessor::next_ready(TimePoint now) const { return std::max(now, until_); }

SinkGroup::SinkGroup(ComponentContext ctx, Channel& channel, CursorId cursor,
                     std::unique_ptr<Processor> processor, std::vector<GroupMember> members,
                     const GroupConfig& config, const Clock& clock)
    : ctx_(std::move(ctx)),
      channel_(channel),
      cursor_(cursor),
      processor_(std::move(processor)),
      members_(std::move(members)),
      config_(config),
      clock_(clock),
      slots_(config.max_in_flight),
      retry_timer_(ctx_.loop),
      switches_(ctx_.metrics.counter("sluice_group_switches_total",
                                     "Times the group's active sink changed.", ctx_.labels())),
      penalties_(ctx_.metrics.counter("sluice_group_penalties_total",
                                      "Times a member was penalised after a retry or timeout.",
                                      ctx_.labels())),
      dropped_rejected_(ctx_.metrics.counter(
          "sluice_group_rejected_dropped_events_total",
          "Events a sink rejected for good, dropped because the group has no dead-letter sink.",
          ctx_.labels())) {
  config_.batch_events = std::min(config_.batch_events, channel_.max_transaction_events());
  for (Slot& s : slots_) s.timer = std::make_unique<Timer>(ctx_.loop);
  order_.reserve(slots_.size());
  for (const GroupMember& m : members_) {
    Labels l{{"component", m.name}, {"type", m.type}};
    auto outcome = [&](const char* o) {
      Labels lo = l;
      lo.emplace_back("outcome", o);
      return &ctx_.metrics.counter("sluice_sink_events_total", "Events by delivery outcome.", lo);
    };
    Labels group_member{{"component", ctx_.name}, {"type", ctx_.type}, {"sink", m.name}};
    member_metrics_.push_back(MemberMetrics{
        outcome("ok"), outcome("retry"), outcome("reject"),
        &ctx_.metrics.counter("sluice_sink_bytes_total", "Bytes delivered.", l),
        &ctx_.metrics.counter("sluice_sink_timeouts_total",
                              "Deliveries not answered within delivery_timeout.", l),
        &ctx_.metrics.histogram("sluice_sink_delivery_seconds", "Time from deliver to answer.", l),
        &ctx_.metrics.gauge("sluice_group_active_sink",
                            "1 on the member that received the last batch.", group_member)});
  }
}

SinkGroup::~SinkGroup() = default;

void SinkGroup::start() {
  started_ = true;
  pump();
}

std::size_t SinkGroup::member_index(const GroupMember* m) const noexcept {
  return static_cast<std::size_t>(m - members_.data());
}

SinkGroup::Slot* SinkGroup::find(DeliveryId id) noexcept {
  for (Slot& s : slots_) {
    if (s.busy && s.id == id) return &s;
  }
  return nullptr;
}

void SinkGroup::set_active(GroupMember* m) {
  if (active_ == m) return;
  if (active_ != nullptr) {
    member_metrics_[member_index(active_)].active->set(0);
    switches_.inc();
    spdlog::info("group {}: active sink is now {}", ctx_.name, m->name);
  }
  active_ = m;
  member_metrics_[member_index(m)].active->set(1);
}

void SinkGroup::pump() {
  if (in_pump_) return;  // a synchronous commit or rollback inside pump() re-enters here
  in_pump_ = true;
  while (started_ && !abandoned_ && order_.size() < slots_.size()) {
    const TimePoint now = clock_.now();
    Sink* sink = processor_->pick(now);
    if (sink == nullptr) {
      arm_retry_timer(processor_->next_ready(now));
      break;
    }
    Slot* slot = nullptr;
    for (Slot& s : slots_) {
      if (!s.busy) {
        slot = &s;
        break;
      }
    }
    if (slot == nullptr) break;  // every free slot is held by an abandoned delivery
    Result<Lease> lease =
        channel_.take(cursor_, slot->batch, {config_.batch_events, config_.batch_bytes.bytes});
    if (!lease) {
      SLUICE_WARN_LIMITED(retry_log_, "group {}: take failed: {}", ctx_.name, lease.error().str());
      arm_retry_timer(now + std::chrono::seconds(1));
      break;
    }
    if (slot->batch.empty()) {
      if (!waiting_data_) {
        waiting_data_ = true;
        channel_.wait_for_data(cursor_, *this);
      }
      break;
    }
    GroupMember* member = nullptr;
    for (GroupMember& m : members_) {
      if (m.sink == sink) member = &m;
    }
    SLUICE_ASSERT(member != nullptr);
    set_active(member);
    slot->busy = true;
    slot->delivered = false;
    slot->abandoned = false;
    slot->lease = std::move(*lease);
    slot->member = member;
    slot->id = DeliveryId{++next_id_};
    slot->started = now;
    order_.push_back(slot);
    ++in_flight_count_;
    Slot* s = slot;
    slot->timer->start(member->delivery_timeout, [this, s] { on_timeout(*s); });
    sink->deliver(slot->batch, slot->id, *this);
  }
  in_pump_ = false;
  check_drained();
}

void SinkGroup::on_data() noexcept {
  waiting_data_ = false;
  pump();
}

void SinkGroup::arm_retry_timer(TimePoint when) {
  const auto delay =
      std::max(when - clock_.now(), std::chrono::nanoseconds(std::chrono::milliseconds(1)));
  retry_timer_.start(std::chrono::duration_cast<Duration>(delay), [this] { pump(); });
}

void SinkGroup::on_delivered(DeliveryId id, const DeliveryResult& result) noexcept {
  Slot* slot = find(id);
  SLUICE_ASSERT(slot != nullptr);
  if (slot->abandoned) {
    // Its lease was rolled back when it timed out or an earlier lease failed; the sink is done
    // with the batch now, so the slot can be reused.
    slot->busy = false;
    slot->abandoned = false;
    --in_flight_count_;
    pump();
    return;
  }
  slot->timer->stop();
  MemberMetrics& mm = member_metrics_[member_index(slot->member)];
  mm.latency->observe(std::chrono::duration<double>(clock_.now() - slot->started).count());
  if (result.is_retry()) {
    mm.retry_events->inc(slot->batch.size());
    SLUICE_WARN_LIMITED(retry_log_, "group {}: sink {} asked to retry {} events: {}", ctx_.name,
                        slot->member->name, slot->batch.size(), result.reason);
    retry_from(*slot, true);
    return pump();
  }
  std::size_t rejected = 0;
  if (result.is_reject()) {
    rejected = result.rejected.empty() ? slot->batch.size() : result.rejected.size();
    mm.reject_events->inc(rejected);
    // TODO(#6): hand rejected events to the group's dead-letter sink once groups have one.
    dropped_rejected_.inc(rejected);
    SLUICE_WARN_LIMITED(reject_log_, "group {}: sink {} rejected {} events for good, dropped: {}",
                        ctx_.name, slot->member->name, rejected, result.reason);
  }
  mm.ok_events->inc(slot->batch.size() - rejected);
  mm.bytes->inc(slot->batch.bytes());
  processor_->succeeded(*slot->member->sink);
  slot->delivered = true;
  commit_ready();
  pump();
}

void SinkGroup::on_timeout(Slot& slot) {
  if (!slot.busy || slot.abandoned || slot.delivered) return;
  MemberMetrics& mm = member_metrics_[member_index(slot.member)];
  mm.timeouts->inc();
  mm.retry_events->inc(slot.batch.size());
  SLUICE_WARN_LIMITED(retry_log_, "group {}: sink {} did not answer within {}", ctx_.name,
                      slot.member->name, format_duration(slot.member->delivery_timeout));
  retry_from(slot, false);
  pump();
}

// Rolls back `slot`'s lease and every later one, newest first, so the channel's order is kept.
// Slots whose sinks still hold their batch are marked abandoned until those sinks answer.
void SinkGroup::retry_from(Slot& slot, bool answered) {
  processor_->penalize(*slot.member->sink, clock_.now());
  penalties_.inc();
  auto it = std::find(order_.begin(), order_.end(), &slot);
  SLUICE_ASSERT(it != order_.end());
  for (auto r = order_.end(); r != it;) {
    --r;
    Slot* s = *r;
    s->timer->stop();
    s->lease.rollback();
    if ((s == &slot && answered) || s->delivered) {
      // The sink has answered this one (or it is the one answering now): free at once.
      s->busy = false;
      --in_flight_count_;
    } else {
      s->abandoned = true;
    }
    s->delivered = false;
  }
  order_.erase(it, order_.end());
}

void SinkGroup::commit_ready() {
  while (!order_.empty() && order_.front()->delivered) {
    Slot* s = order_.front();
    order_.erase(order_.begin());
    s->delivered = false;
    s->busy = false;
    --in_flight_count_;
    channel_.commit(std::move(s->lease), *this);
  }
}

void SinkGroup::on_committed(std::uint64_t, Status status) noexcept {
  if (!status.ok()) {
    spdlog::error("group {}: commit failed: {}", ctx_.name, status.str());
  }
}

void SinkGroup::drain(std::function<void()> on_drained) {
  stopping_ = true;
  on_drained_ = std::move(on_drained);
  pump();
}

void SinkGroup::abandon() {
  abandoned_ = true;
  retry_timer_.stop();
}

bool SinkGroup::drained() const noexcept { return in_flight_count_ == 0 && channel_.events() == 0; }

void SinkGroup::check_drained() {
  if (!stopping_ || !on_drained_ || !drained() || sinks_stopping_ > 0) return;
  sinks_stopping_ = members_.size();
  for (GroupMember& m : members_) {
    m.sink->stop([this] {
      if (--sinks_stopping_ == 0 && on_drained_) {
        auto cb = std::move(on_drained_);
        on_drained_ = nullptr;
        cb();
      }
    });
  }
}

}  // namespace sluice::sinks

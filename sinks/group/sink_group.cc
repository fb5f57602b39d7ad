#include "sinks/group/sink_group.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace sluice::sinks {

namespace {
constexpr std::size_t kMaxSlotsPerInFlight = 4;  // abandoned deliveries may hold this many extra
constexpr std::uint64_t kDeadLetterIdBit = 1ULL << 63;
}  // namespace

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
  node.optional_enum("lagging", out.detach_when_lagging, errors,
                     {{"block", false}, {"detach", true}});
  return errors.size() == before;
}

SinkGroup::SinkGroup(ComponentContext ctx, Channel& channel, CursorId cursor,
                     std::unique_ptr<Processor> processor, std::vector<GroupMember> members,
                     const GroupConfig& config, const Clock& clock,
                     std::optional<GroupMember> dead_letter)
    : ctx_(std::move(ctx)),
      channel_(channel),
      cursor_(cursor),
      processor_(std::move(processor)),
      members_(std::move(members)),
      dead_letter_(std::move(dead_letter)),
      config_(config),
      clock_(clock),
      retry_timer_(ctx_.loop),
      switches_(ctx_.metrics.counter("sluice_group_switches_total",
                                     "Times the group's active sink changed.", ctx_.labels())),
      penalties_(ctx_.metrics.counter(
          "sluice_group_penalties_total",
          "Times a member was penalised after a retry, timeout or failed probe.", ctx_.labels())),
      dropped_rejected_(ctx_.metrics.counter(
          "sluice_group_rejected_dropped_events_total",
          "Events a sink rejected for good that no dead-letter sink took; dropped and logged.",
          ctx_.labels())),
      dead_lettered_(ctx_.metrics.counter("sluice_group_dead_letter_events_total",
                                          "Rejected events handed to the dead-letter sink.",
                                          ctx_.labels())),
      probes_ok_(ctx_.metrics.counter("sluice_group_probes_total",
                                      "Health probes of penalised members.",
                                      [&] {
                                        Labels l = ctx_.labels();
                                        l.emplace_back("result", "ok");
                                        return l;
                                      }())),
      probes_failed_(ctx_.metrics.counter("sluice_group_probes_total",
                                          "Health probes of penalised members.", [&] {
                                            Labels l = ctx_.labels();
                                            l.emplace_back("result", "failed");
                                            return l;
                                          }())) {
  config_.batch_events = std::min(config_.batch_events, channel_.max_transaction_events());
  dead_listener_.group = this;
  order_.reserve(config_.max_in_flight);
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
                            "1 on the member that received the last batch.", group_member),
        &ctx_.metrics.gauge("sluice_group_probing",
                            "1 while the group probes a penalised member's destination.",
                            group_member)});
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

GroupMember* SinkGroup::member_of(const Sink* sink) noexcept {
  for (GroupMember& m : members_) {
    if (m.sink == sink) return &m;
  }
  return nullptr;
}

SinkGroup::Slot* SinkGroup::find(DeliveryId id) noexcept {
  for (Slot& s : slots_) {
    if (s.state != State::free &&
        (s.id == id || (s.state == State::dead_lettering && s.dead_id == id)))
      return &s;
  }
  return nullptr;
}

void SinkGroup::set_active(GroupMember* m) {
  if (active_ == m) return;
  if (active_ != nullptr) {
    member_metrics_[member_index(active_)].active->set(0);
    switches_.inc();
    spdlog::info("group {}: active sink is now {} (was {})", ctx_.name, m->name, active_->name);
  }
  active_ = m;
  member_metrics_[member_index(m)].active->set(1);
}

SinkGroup::Slot* SinkGroup::free_slot() {
  for (Slot& s : slots_) {
    if (s.state == State::free) return &s;
  }
  if (slots_.size() >= config_.max_in_flight * kMaxSlotsPerInFlight) return nullptr;
  Slot& s = slots_.emplace_back();
  s.timer = std::make_unique<Timer>(ctx_.loop);
  return &s;
}

void SinkGroup::start_probes(TimePoint now) {
  while (Sink* sink = processor_->due_for_probe(now)) {
    processor_->set_probing(*sink, true);
    GroupMember* m = member_of(sink);
    if (m != nullptr) member_metrics_[member_index(m)].probing->set(1);
    if (!sink->probe(*this)) {
      // No probe: the sink gets the next batch as its trial.
      processor_->set_probing(*sink, false);
      processor_->set_no_probe(*sink);
      if (m != nullptr) member_metrics_[member_index(m)].probing->set(0);
      break;
    }
  }
}

void SinkGroup::pump() {
  if (in_pump_) return;  // a synchronous commit or rollback inside pump() re-enters here
  in_pump_ = true;
  // At shutdown a durable channel keeps its contents: only the leases in flight finish.
  const bool taking = !(stopping_ && (channel_.durable() || keep_contents_));
  while (started_ && taking && order_.size() < config_.max_in_flight) {
    const TimePoint now = clock_.now();
    start_probes(now);
    Sink* sink = processor_->pick(now);
    if (sink == nullptr) {
      arm_retry_timer(processor_->next_ready(now));
      break;
    }
    Slot* slot = free_slot();
    if (slot == nullptr) break;  // abandoned deliveries hold every slot; their answers free them
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
    GroupMember* member = member_of(sink);
    SLUICE_ASSERT(member != nullptr);
    set_active(member);
    slot->state = State::delivering;
    slot->lease = std::move(*lease);
    slot->member = member;
    slot->id = DeliveryId{++next_id_};
    slot->started = now;
    order_.push_back(slot);
    ++in_flight_count_;
    slot->timer->start(member->delivery_timeout, [this, slot] { on_timeout(*slot); });
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

void SinkGroup::on_probed(Sink& sink, bool healthy) noexcept {
  processor_->set_probing(sink, false);
  GroupMember* m = member_of(&sink);
  if (m != nullptr) member_metrics_[member_index(m)].probing->set(0);
  if (healthy) {
    probes_ok_.inc();
    processor_->succeeded(sink);
    spdlog::info("group {}: sink {} passed its health probe", ctx_.name,
                 m != nullptr ? m->name : "?");
  } else {
    probes_failed_.inc();
    processor_->penalize(sink, clock_.now());
    penalties_.inc();
  }
  pump();
}

void SinkGroup::on_delivered(DeliveryId id, const DeliveryResult& result) noexcept {
  Slot* slot = find(id);
  SLUICE_ASSERT(slot != nullptr && slot->id == id);
  if (slot->state == State::abandoned) {
    // Its lease was rolled back when it timed out or an earlier lease failed; the sink is done
    // with the batch now, so the slot can be reused.
    slot->state = State::free;
    --in_flight_count_;
    pump();
    return;
  }
  SLUICE_ASSERT(slot->state == State::delivering);
  slot->timer->stop();
  MemberMetrics& mm = member_metrics_[member_index(slot->member)];
  mm.latency->observe(std::chrono::duration<double>(clock_.now() - slot->started).count());
  if (result.is_retry()) {
    mm.retry_events->inc(slot->batch.size());
    SLUICE_WARN_LIMITED(retry_log_, "group {}: sink {} failed {} events, retrying: {}", ctx_.name,
                        slot->member->name, slot->batch.size(), result.reason);
    retry_from(*slot, true);
    return pump();
  }
  processor_->succeeded(*slot->member->sink);
  mm.bytes->inc(slot->batch.bytes());
  if (result.is_reject()) {
    reject(*slot, result);
  } else {
    slot->ok_events = static_cast<std::uint32_t>(slot->batch.size());
    slot->reject_events = slot->dropped_events = slot->dead_lettered_events = 0;
    slot->state = State::delivered;
  }
  commit_ready();
  pump();
}

void SinkGroup::reject(Slot& slot, const DeliveryResult& result) {
  const std::size_t n = result.rejected.empty()
                            ? slot.batch.size()
                            : std::min(result.rejected.size(), slot.batch.size());
  slot.reject_events = static_cast<std::uint32_t>(n);
  slot.ok_events = static_cast<std::uint32_t>(slot.batch.size() - n);
  slot.dropped_events = slot.dead_lettered_events = 0;
  if (!dead_letter_) {
    slot.dropped_events = static_cast<std::uint32_t>(n);
    SLUICE_WARN_LIMITED(
        reject_log_, "group {}: sink {} rejected {} events for good, dropped (no dead_letter): {}",
        ctx_.name, slot.member->name, n, result.reason);
    slot.state = State::delivered;
    return;
  }
  // Copy the rejected events with the reason; the lease commits once the dead-letter sink has them.
  slot.dead.clear();
  auto copy = [&](std::size_t i) {
    const EventView e = slot.batch[i];
    slot.dead.add(e.body(), e.timestamp_ns(), e.id());
    for (std::size_t h = 0; h < e.header_count(); ++h)
      slot.dead.add_header(e.header(h).key, e.header(h).value);
    slot.dead.add_header(kRejectReasonHeader, result.reason);
    slot.dead.add_header(kRejectedByHeader, slot.member->name);
    for (std::size_t f = 0; f < e.field_count(); ++f) {
      const Field fd = e.field(f);
      slot.dead.add_field(fd.key, fd.text, fd.type);
    }
  };
  if (result.rejected.empty()) {
    for (std::size_t i = 0; i < slot.batch.size(); ++i) copy(i);
  } else {
    for (std::uint32_t i : result.rejected) {
      if (i < slot.batch.size()) copy(i);
    }
  }
  slot.reject_reason = result.reason;
  send_dead_letter(slot);
}

void SinkGroup::send_dead_letter(Slot& slot) {
  slot.state = State::dead_lettering;
  slot.dead_out = true;
  slot.dead_id = DeliveryId{kDeadLetterIdBit | ++next_id_};
  dead_letter_->sink->deliver(slot.dead, slot.dead_id, dead_listener_);
}

void SinkGroup::on_dead_lettered(DeliveryId id, const DeliveryResult& result) noexcept {
  Slot* slot = find(id);
  SLUICE_ASSERT(slot != nullptr);
  if (slot->state == State::abandoned) {  // rolled back meanwhile: just free the slot
    slot->dead_out = false;
    slot->state = State::free;
    --in_flight_count_;
    pump();
    return;
  }
  SLUICE_ASSERT(slot->state == State::dead_lettering);
  slot->dead_out = false;
  if (result.is_retry()) {
    SLUICE_WARN_LIMITED(reject_log_, "group {}: dead-letter sink {} failed, retrying in 1s: {}",
                        ctx_.name, dead_letter_->name, result.reason);
    slot->timer->start(std::chrono::seconds(1), [this, slot] { send_dead_letter(*slot); });
    return;
  }
  if (result.is_reject()) {
    const std::size_t n = result.rejected.empty()
                              ? slot->dead.size()
                              : std::min(result.rejected.size(), slot->dead.size());
    slot->dropped_events = static_cast<std::uint32_t>(n);
    SLUICE_WARN_LIMITED(reject_log_,
                        "group {}: dead-letter sink {} rejected {} events too, dropped: {}",
                        ctx_.name, dead_letter_->name, n, result.reason);
    slot->dead_lettered_events = static_cast<std::uint32_t>(slot->dead.size() - n);
  } else {
    slot->dead_lettered_events = static_cast<std::uint32_t>(slot->dead.size());
  }
  slot->state = State::delivered;
  commit_ready();
  pump();
}

void SinkGroup::on_timeout(Slot& slot) {
  if (slot.state != State::delivering) return;
  MemberMetrics& mm = member_metrics_[member_index(slot.member)];
  mm.timeouts->inc();
  mm.retry_events->inc(slot.batch.size());
  SLUICE_WARN_LIMITED(retry_log_, "group {}: sink {} did not answer within {}", ctx_.name,
                      slot.member->name, format_duration(slot.member->delivery_timeout));
  retry_from(slot, false);
  pump();
}

// Rolls back `slot`'s lease and every later one, newest first, so the channel's order is kept.
// Slots whose sinks still hold their batch are abandoned until those sinks answer, and their sinks
// are asked to cancel, so that a failover does not wait for a dead destination.
void SinkGroup::retry_from(Slot& slot, bool answered) {
  processor_->penalize(*slot.member->sink, clock_.now());
  penalties_.inc();
  auto it = std::find(order_.begin(), order_.end(), &slot);
  SLUICE_ASSERT(it != order_.end());
  // A channel may wake the group from inside rollback() (lmdb does). Taking again before every
  // lease from `slot` on is back would re-take events that are still leased, and the new lease
  // would be erased from order_ below and never committed: the callers pump() once this is done.
  const bool was_in_pump = std::exchange(in_pump_, true);
  for (auto r = order_.end(); r != it;) {
    --r;
    Slot* s = *r;
    s->lease.rollback();
    if (s->state == State::dead_lettering && s->dead_out) {
      // The dead-letter delivery is still out; its answer frees the slot.
      s->state = State::abandoned;
      s->id = s->dead_id;
      continue;
    }
    // (A dead-letter resend waiting on the timer is simply not sent.)
    s->timer->stop();
    if ((s == &slot && answered) || s->state == State::delivered ||
        s->state == State::dead_lettering) {
      s->state = State::free;
      --in_flight_count_;
    } else {
      s->state = State::abandoned;
      s->member->sink->cancel(s->id);
    }
  }
  order_.erase(it, order_.end());
  in_pump_ = was_in_pump;
}

void SinkGroup::commit_ready() {
  while (!order_.empty() && order_.front()->state == State::delivered) {
    Slot* s = order_.front();
    order_.erase(order_.begin());
    s->state = State::free;
    --in_flight_count_;
    MemberMetrics& mm = member_metrics_[member_index(s->member)];
    mm.ok_events->inc(s->ok_events);
    mm.reject_events->inc(s->reject_events);
    dropped_rejected_.inc(s->dropped_events);
    dead_lettered_.inc(s->dead_lettered_events);
    channel_.commit(std::move(s->lease), *this);
  }
}

void SinkGroup::on_committed(std::uint64_t, Status status) noexcept {
  if (!status.ok()) spdlog::error("group {}: commit failed: {}", ctx_.name, status.str());
}

void SinkGroup::drain(std::function<void()> on_drained, bool keep_contents) {
  stopping_ = true;
  keep_contents_ = keep_contents;
  on_drained_ = std::move(on_drained);
  pump();
}

bool SinkGroup::drained() const noexcept {
  return in_flight_count_ == 0 && (channel_.durable() || keep_contents_ || channel_.events() == 0);
}

void SinkGroup::check_drained() {
  if (!stopping_ || !on_drained_ || !drained() || sinks_stopping_ > 0) return;
  std::vector<Sink*> sinks;
  for (GroupMember& m : members_) sinks.push_back(m.sink);
  if (dead_letter_) sinks.push_back(dead_letter_->sink);
  sinks_stopping_ = sinks.size();
  for (Sink* s : sinks) {
    s->stop([this] {
      if (--sinks_stopping_ == 0 && on_drained_) {
        auto cb = std::move(on_drained_);
        on_drained_ = nullptr;
        cb();
      }
    });
  }
}

}  // namespace sluice::sinks

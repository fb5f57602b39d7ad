#include "sinks/group/processors.h"

#include <algorithm>

#include "lib/core/assert.h"

namespace sluice::sinks {

std::chrono::nanoseconds penalty_for(std::uint32_t failures, std::chrono::nanoseconds base,
                                     std::chrono::nanoseconds max) {
  if (failures == 0) return std::chrono::nanoseconds::zero();
  std::chrono::nanoseconds p = base;
  for (std::uint32_t i = 1; i < failures && p < max; ++i) p *= 2;
  return std::min(p, max);
}

PenaltyProcessor::PenaltyProcessor(std::vector<Sink*> sinks, std::chrono::nanoseconds base,
                                   std::chrono::nanoseconds max)
    : base_(base), max_(max) {
  for (Sink* s : sinks) members_.push_back(Member{s});
}

PenaltyProcessor::Member& PenaltyProcessor::member(Sink& sink) {
  for (Member& m : members_) {
    if (m.sink == &sink) return m;
  }
  SLUICE_ASSERT(false);
  return members_.front();
}

void PenaltyProcessor::penalize(Sink& sink, TimePoint now) {
  Member& m = member(sink);
  ++m.failures;
  m.until = now + penalty_for(m.failures, base_, max_);
}

void PenaltyProcessor::succeeded(Sink& sink) {
  Member& m = member(sink);
  m.failures = 0;
  m.until = {};
}

TimePoint PenaltyProcessor::next_ready(TimePoint now) const {
  TimePoint best = TimePoint::max();
  for (const Member& m : members_) {
    if (!m.probing) best = std::min(best, std::max(now, m.until));
  }
  return best == TimePoint::max() ? now + std::chrono::milliseconds(100) : best;
}

bool PenaltyProcessor::has_live(TimePoint now) const {
  for (const Member& m : members_) {
    // A sink without a probe whose penalty ended is as live as it can be shown to be: it takes
    // the next batch, and an idle group may have none to give it.
    if (m.failures == 0 || (m.no_probe && now >= m.until)) return true;
  }
  return false;
}

Sink* PenaltyProcessor::due_for_probe(TimePoint now) {
  for (Member& m : members_) {
    if (m.failures > 0 && !m.probing && now >= m.until) return m.sink;
  }
  return nullptr;
}

void PenaltyProcessor::set_probing(Sink& sink, bool probing) { member(sink).probing = probing; }

void PenaltyProcessor::set_no_probe(Sink& sink) { member(sink).no_probe = true; }

Sink* SingleProcessor::pick(TimePoint now) {
  return eligible(members_.front(), now) ? members_.front().sink : nullptr;
}

Sink* FailoverProcessor::pick(TimePoint now) {
  for (const Member& m : members_) {
    if (eligible(m, now)) return m.sink;
  }
  return nullptr;
}

LoadBalanceProcessor::LoadBalanceProcessor(std::vector<Sink*> sinks, Selector selector,
                                           std::chrono::nanoseconds base,
                                           std::chrono::nanoseconds max, std::uint64_t seed)
    : PenaltyProcessor(std::move(sinks), base, max), selector_(selector), rng_(seed) {}

Sink* LoadBalanceProcessor::pick(TimePoint now) {
  const std::size_t n = members_.size();
  if (selector_ == Selector::round_robin) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t k = (next_ + i) % n;
      if (eligible(members_[k], now)) {
        next_ = k + 1;
        return members_[k].sink;
      }
    }
    return nullptr;
  }
  std::size_t live = 0;
  for (const Member& m : members_) live += eligible(m, now) ? 1 : 0;
  if (live == 0) return nullptr;
  std::size_t choice = std::uniform_int_distribution<std::size_t>(0, live - 1)(rng_);
  for (const Member& m : members_) {
    if (!eligible(m, now)) continue;
    if (choice-- == 0) return m.sink;
  }
  return nullptr;
}

}  // namespace sluice::sinks

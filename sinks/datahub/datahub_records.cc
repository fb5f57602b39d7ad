#include "sinks/datahub/datahub_records.h"

#include <algorithm>

#include "lib/core/assert.h"

namespace sluice::sinks::datahub {

void AcceptedLedger::add(std::uint64_t id) {
  ++counts_[id];
  order_.push_back(id);
  ++live_;
  while (live_ > max_ && !order_.empty()) {
    const std::uint64_t old = order_.front();
    order_.pop_front();
    auto it = counts_.find(old);
    if (it == counts_.end()) continue;  // already taken
    if (--it->second == 0) counts_.erase(it);
    --live_;
    ++evicted_;
  }
  // Taken ids leave stale entries in order_; keep it from growing without bound.
  if (order_.size() > 2 * max_ + 64) {
    std::deque<std::uint64_t> kept;
    std::unordered_map<std::uint64_t, std::uint32_t> seen;
    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
      auto c = counts_.find(*it);
      if (c != counts_.end() && seen[*it] < c->second) {
        ++seen[*it];
        kept.push_front(*it);
      }
    }
    order_.swap(kept);
  }
}

bool AcceptedLedger::take(std::uint64_t id) {
  auto it = counts_.find(id);
  if (it == counts_.end()) return false;
  if (--it->second == 0) counts_.erase(it);
  --live_;
  return true;
}

void DeliveryTracker::start(const Batch& batch, AcceptedLedger* ledger) {
  states_.assign(batch.size(), State::pending);
  rejected_.clear();
  reject_reason_.clear();
  last_failure_.clear();
  pending_ = batch.size();
  in_flight_ = accepted_ = 0;
  cursor_ = 0;
  if (ledger == nullptr || ledger->empty()) return;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (ledger->take(batch[i].id())) set(static_cast<std::uint32_t>(i), State::accepted);
  }
}

void DeliveryTracker::set(std::uint32_t i, State s) {
  auto count = [this](State st) -> std::size_t* {
    switch (st) {
      case State::pending:
        return &pending_;
      case State::in_flight:
        return &in_flight_;
      case State::accepted:
        return &accepted_;
      case State::rejected:
        return nullptr;
    }
    return nullptr;
  };
  if (std::size_t* c = count(states_[i])) --*c;
  states_[i] = s;
  if (std::size_t* c = count(s)) ++*c;
  if (s == State::pending && i < cursor_) cursor_ = i;
}

void DeliveryTracker::take_pending(std::size_t max, std::vector<std::uint32_t>& out) {
  std::size_t taken = 0;
  while (taken < max && pending_ > 0 && cursor_ < states_.size()) {
    if (states_[cursor_] == State::pending) {
      set(static_cast<std::uint32_t>(cursor_), State::in_flight);
      out.push_back(static_cast<std::uint32_t>(cursor_));
      ++taken;
    }
    ++cursor_;
  }
}

void DeliveryTracker::reject(std::uint32_t index, std::string reason) {
  SLUICE_ASSERT(states_[index] != State::accepted && states_[index] != State::rejected);
  set(index, State::rejected);
  rejected_.push_back(index);
  if (reject_reason_.empty()) reject_reason_ = std::move(reason);
}

ApplyCounts DeliveryTracker::apply(const std::vector<std::uint32_t>& sent,
                                   const std::vector<FailedRecord>& failed) {
  ApplyCounts c;
  // Failed positions first (an index outside the request is ignored: it names nothing we sent).
  std::vector<const FailedRecord*> by_pos(sent.size(), nullptr);
  for (const FailedRecord& f : failed) {
    if (f.index < sent.size()) by_pos[f.index] = &f;
  }
  for (std::size_t pos = 0; pos < sent.size(); ++pos) {
    const std::uint32_t i = sent[pos];
    SLUICE_ASSERT(states_[i] == State::in_flight);
    const FailedRecord* f = by_pos[pos];
    if (f == nullptr) {
      set(i, State::accepted);
      ++c.accepted;
      continue;
    }
    switch (classify_code(f->code)) {
      case CodeClass::reject:
        reject(i, f->code + ": " + f->message);
        ++c.rejected;
        break;
      case CodeClass::reroute:
        set(i, State::pending);
        ++c.reroute;
        last_failure_ = f->code + ": " + f->message;
        break;
      case CodeClass::halt:
        set(i, State::pending);
        ++c.halt;
        last_failure_ = f->code + ": " + f->message;
        break;
      case CodeClass::retry:
        set(i, State::pending);
        ++c.retry;
        last_failure_ = f->code + ": " + f->message;
        break;
    }
  }
  return c;
}

void DeliveryTracker::fail_all(const std::vector<std::uint32_t>& sent) {
  for (std::uint32_t i : sent) {
    SLUICE_ASSERT(states_[i] == State::in_flight);
    set(i, State::pending);
  }
}

void DeliveryTracker::reject_all(const std::vector<std::uint32_t>& sent,
                                 const std::string& reason) {
  for (std::uint32_t i : sent) reject(i, reason);
}

void DeliveryTracker::spill(const Batch& batch, AcceptedLedger& ledger) const {
  for (std::size_t i = 0; i < states_.size(); ++i) {
    if (states_[i] == State::accepted) ledger.add(batch[i].id());
  }
}

}  // namespace sluice::sinks::datahub

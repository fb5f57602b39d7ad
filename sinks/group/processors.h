#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

#include "lib/core/processor.h"

namespace sluice::sinks {

/// Doubling backoff: base * 2^(failures-1), capped at max.
std::chrono::nanoseconds penalty_for(std::uint32_t failures, std::chrono::nanoseconds base,
                                     std::chrono::nanoseconds max);

/// Penalty bookkeeping shared by every processor: consecutive failures and the end of the
/// current penalty per member, in the processor's order.
class PenaltyProcessor : public Processor {
 public:
  struct Member {
    Sink* sink;
    std::uint32_t failures = 0;
    TimePoint until{};
    bool probing = false;
    bool no_probe = false;  // learnt when the group first asked it for a probe
  };
  PenaltyProcessor(std::vector<Sink*> sinks, std::chrono::nanoseconds base,
                   std::chrono::nanoseconds max);
  void penalize(Sink& sink, TimePoint now) override;
  void succeeded(Sink& sink) override;
  TimePoint next_ready(TimePoint now) const override;
  bool has_live(TimePoint now) const override;
  Sink* due_for_probe(TimePoint now) override;
  void set_probing(Sink& sink, bool probing) override;
  void set_no_probe(Sink& sink) override;
  const std::vector<Member>& members() const noexcept { return members_; }

 protected:
  static bool eligible(const Member& m, TimePoint now) { return !m.probing && now >= m.until; }
  Member& member(Sink& sink);
  std::vector<Member> members_;
  std::chrono::nanoseconds base_, max_;
};

/// One sink (a sink with its own channel, or processor = "default").
class SingleProcessor final : public PenaltyProcessor {
 public:
  SingleProcessor(Sink& sink, std::chrono::nanoseconds base, std::chrono::nanoseconds max)
      : PenaltyProcessor({&sink}, base, max) {}
  Sink* pick(TimePoint now) override;
};

/// Sinks in priority order (first = preferred): the best live sink always wins, so traffic
/// returns to a recovered higher-priority sink (failback).
class FailoverProcessor final : public PenaltyProcessor {
 public:
  using PenaltyProcessor::PenaltyProcessor;
  Sink* pick(TimePoint now) override;
};

enum class Selector : std::uint8_t { round_robin, random };

/// Spreads batches over the live sinks, in turn or at random. Order across sinks is not kept.
class LoadBalanceProcessor final : public PenaltyProcessor {
 public:
  LoadBalanceProcessor(std::vector<Sink*> sinks, Selector selector, std::chrono::nanoseconds base,
                       std::chrono::nanoseconds max, std::uint64_t seed = std::random_device{}());
  Sink* pick(TimePoint now) override;

 private:
  Selector selector_;
  std::size_t next_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace sluice::sinks

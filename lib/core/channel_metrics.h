#pragma once

#include <cstdint>
#include <string>

#include "lib/core/context.h"
#include "lib/core/metrics.h"
#include "lib/core/status.h"

namespace sluice {

/// The series every channel exports, resolved once at construction.
struct ChannelMetrics {
  ChannelMetrics(const ComponentContext& ctx, std::uint64_t max_events, std::uint64_t max_bytes)
      : events(ctx.metrics.gauge("sluice_channel_events", "Events held by the channel.",
                                 ctx.labels())),
        bytes(
            ctx.metrics.gauge("sluice_channel_bytes", "Bytes held by the channel.", ctx.labels())),
        put_events(ctx.metrics.counter("sluice_channel_put_events_total", "Events stored by puts.",
                                       ctx.labels())),
        committed_events(ctx.metrics.counter("sluice_channel_committed_events_total",
                                             "Events removed by sink group commits.",
                                             ctx.labels())),
        rollback_events(ctx.metrics.counter("sluice_channel_rollback_events_total",
                                            "Leased events returned to the head.", ctx.labels())),
        backpressure(ctx.metrics.counter("sluice_channel_backpressure_total",
                                         "Puts refused because the channel was full.",
                                         ctx.labels())) {
    ctx.metrics.gauge("sluice_channel_capacity_events", "The channel's max_events.", ctx.labels())
        .set(static_cast<std::int64_t>(max_events));
    ctx.metrics.gauge("sluice_channel_capacity_bytes", "The channel's max_bytes.", ctx.labels())
        .set(static_cast<std::int64_t>(max_bytes));
  }
  /// The put-size rule every channel applies: ok, or invalid_data naming both numbers.
  static Status check_transaction(std::size_t events, std::uint32_t transaction_events) {
    if (events <= transaction_events) return {};
    return Status(Errc::invalid_data, "batch of " + std::to_string(events) +
                                          " events exceeds transaction_events " +
                                          std::to_string(transaction_events));
  }
  void held(std::uint64_t n_events, std::uint64_t n_bytes) noexcept {
    events.set(static_cast<std::int64_t>(n_events));
    bytes.set(static_cast<std::int64_t>(n_bytes));
  }

  Gauge& events;
  Gauge& bytes;
  Counter& put_events;
  Counter& committed_events;
  Counter& rollback_events;
  Counter& backpressure;
};

}  // namespace sluice

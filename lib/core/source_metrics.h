#pragma once

#include "lib/core/context.h"
#include "lib/core/metrics.h"

namespace sluice {

/// The series every line source exports, resolved once at construction.
struct SourceMetrics {
  explicit SourceMetrics(const ComponentContext& ctx)
      : events(ctx.metrics.counter("sluice_source_events_total", "Events read by the source.",
                                   ctx.labels())),
        bytes(ctx.metrics.counter("sluice_source_bytes_total", "Bytes read by the source.",
                                  ctx.labels())),
        overflows(ctx.metrics.counter("sluice_source_line_overflows_total",
                                      "Lines longer than max_line_bytes (split or truncated).",
                                      ctx.labels())) {}
  Counter& events;
  Counter& bytes;
  Counter& overflows;
};

}  // namespace sluice

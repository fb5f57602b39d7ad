#include "lib/core/metrics.h"

#include <catch2/catch.hpp>

using namespace sluice;

TEST_CASE("metrics render in the Prometheus text format", "[unit][core]") {
  MetricsRegistry m;
  m.counter("sluice_source_events_total", "Events read.", {{"component", "a"}, {"type", "exec"}})
      .inc(3);
  m.gauge("sluice_channel_events", "Held.", {{"component", "c\"1"}, {"type", "memory"}}).set(-2);
  m.histogram("sluice_sink_delivery_seconds", "Latency.", {{"component", "k"}, {"type", "file"}})
      .observe(0.003);
  const std::string out = m.render();
  CHECK(out.find("# TYPE sluice_source_events_total counter\n"
                 "sluice_source_events_total{component=\"a\",type=\"exec\"} 3\n") !=
        std::string::npos);
  CHECK(out.find("sluice_channel_events{component=\"c\\\"1\",type=\"memory\"} -2\n") !=
        std::string::npos);
  CHECK(
      out.find(
          "sluice_sink_delivery_seconds_bucket{component=\"k\",type=\"file\",le=\"0.0025\"} 0\n") !=
      std::string::npos);
  CHECK(
      out.find(
          "sluice_sink_delivery_seconds_bucket{component=\"k\",type=\"file\",le=\"0.005\"} 1\n") !=
      std::string::npos);
  CHECK(out.find("sluice_sink_delivery_seconds_count{component=\"k\",type=\"file\"} 1\n") !=
        std::string::npos);
  double v = 0;
  REQUIRE(m.find("sluice_source_events_total", {{"component", "a"}, {"type", "exec"}}, v));
  CHECK(v == 3);
  // The same name and labels return the same series.
  m.counter("sluice_source_events_total", "Events read.", {{"component", "a"}, {"type", "exec"}})
      .inc();
  REQUIRE(m.find("sluice_source_events_total", {{"component", "a"}, {"type", "exec"}}, v));
  CHECK(v == 4);
}

#include "lib/core/log.h"

TEST_CASE("rate limiter lets a burst through, then counts what it held back", "[unit][core]") {
  sluice::RateLimiter limiter(2, std::chrono::seconds(3600));
  std::uint64_t suppressed = 99;
  CHECK(limiter.allow(suppressed));
  CHECK(suppressed == 0);
  CHECK(limiter.allow(suppressed));
  for (int i = 0; i < 5; ++i) CHECK_FALSE(limiter.allow(suppressed));
  sluice::RateLimiter fresh(1, std::chrono::seconds(0));  // a zero window resets every call
  CHECK(fresh.allow(suppressed));
  CHECK(fresh.allow(suppressed));
}

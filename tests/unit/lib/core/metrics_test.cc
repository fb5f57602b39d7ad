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

TEST_CASE("metrics: a removed component's series leave the text and come back continued",
          "[unit][core]") {
  MetricsRegistry m;
  const Labels gone{{"component", "b"}, {"type", "file"}};
  Counter& events =
      m.counter("sluice_sink_events_total", "Delivered.", with_label(gone, "outcome", "ok"));
  events.inc(5);
  m.histogram("sluice_sink_delivery_seconds", "Latency.", gone).observe(0.1);
  m.gauge("sluice_only_b", "Only b has it.", gone).set(1);
  m.counter("sluice_sink_events_total", "Delivered.",
            {{"component", "a"}, {"type", "file"}, {"outcome", "ok"}})
      .inc(2);
  // Same name, another kind's type: not the removed component.
  m.counter("sluice_source_events_total", "Read.", {{"component", "b"}, {"type", "exec"}}).inc(1);
  CHECK(m.remove(gone) == 3);
  CHECK(m.remove(gone) == 0);
  const std::string out = m.render();
  CHECK(out.find("component=\"b\",type=\"file\"") == std::string::npos);
  CHECK(out.find("sluice_only_b") == std::string::npos);  // no HELP or TYPE left either
  CHECK(out.find("sluice_sink_events_total{component=\"a\",type=\"file\",outcome=\"ok\"} 2\n") !=
        std::string::npos);
  CHECK(out.find("sluice_source_events_total{component=\"b\",type=\"exec\"} 1\n") !=
        std::string::npos);
  double v = 0;
  CHECK_FALSE(m.find("sluice_sink_events_total", with_label(gone, "outcome", "ok"), v));
  events.inc();  // a reference resolved before stays valid
  // Registered again (a component of that name built again): the same series, continued.
  Counter& again =
      m.counter("sluice_sink_events_total", "Delivered.", with_label(gone, "outcome", "ok"));
  CHECK(&again == &events);
  CHECK(m.render().find(
            "sluice_sink_events_total{component=\"b\",type=\"file\",outcome=\"ok\"} 6\n") !=
        std::string::npos);
  CHECK(m.render().find("sluice_only_b") == std::string::npos);
}

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

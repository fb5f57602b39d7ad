#include "agent/top.h"

#include <catch2/catch.hpp>
#include <string>

using namespace sluice;

namespace {

const char* kStatus =
    R"({"agent":{"name":"web01","version":"0.1.0","uptime_s":3723,"state":"running"},
"components":[
 {"name":"gen","kind":"source","type":"exec","state":"running","events_total":10,"bytes_total":50,"safe_seq":7,"last_seq":9},
 {"name":"buf","kind":"channel","type":"memory","state":"running","events":250,"bytes":2048},
 {"name":"a","kind":"sink","type":"null","state":"running","events_ok":0,"events_retry":0,"events_reject":0},
 {"name":"b","kind":"sink","type":"file","state":"running","events_ok":0,"events_retry":0,"events_reject":0},
 {"name":"g","kind":"sink_group","type":"failover","state":"running","channel":"buf","active_sink":"b","in_flight":2}]})";

std::string metrics(int events, int ok_a, int ok_b, int switches) {
  return "# HELP sluice_source_events_total events\n"
         "# TYPE sluice_source_events_total counter\n"
         "sluice_source_events_total{component=\"gen\",type=\"exec\"} " +
         std::to_string(events) +
         "\n"
         "sluice_source_bytes_total{component=\"gen\",type=\"exec\"} " +
         std::to_string(events * 5) +
         "\n"
         "sluice_source_parse_errors_total{component=\"gen\",type=\"exec\",reason=\"json_syntax\"} "
         "2\n"
         "sluice_source_parse_errors_total{component=\"gen\",type=\"exec\",reason=\"regex_limit\"} "
         "1\n"
         "sluice_channel_put_events_total{component=\"buf\",type=\"memory\"} " +
         std::to_string(events) +
         "\n"
         "sluice_channel_committed_events_total{component=\"buf\",type=\"memory\"} " +
         std::to_string(ok_a + ok_b) +
         "\n"
         "sluice_channel_capacity_events{component=\"buf\",type=\"memory\"} 1000\n"
         "sluice_channel_capacity_bytes{component=\"buf\",type=\"memory\"} 8192\n"
         "sluice_channel_backpressure_total{component=\"buf\",type=\"memory\"} 0\n"
         "sluice_sink_events_total{component=\"a\",type=\"null\",outcome=\"ok\"} " +
         std::to_string(ok_a) +
         "\n"
         "sluice_sink_events_total{component=\"a\",type=\"null\",outcome=\"retry\"} 4\n"
         "sluice_sink_events_total{component=\"b\",type=\"file\",outcome=\"ok\"} " +
         std::to_string(ok_b) +
         "\n"
         "sluice_sink_bytes_total{component=\"b\",type=\"file\"} " +
         std::to_string(ok_b * 1024) +
         "\n"
         "sluice_sink_delivery_seconds_bucket{component=\"b\",type=\"file\",le=\"0.1\"} 99\n"
         "sluice_sink_timeouts_total{component=\"a\",type=\"null\"} 3\n"
         "sluice_group_active_sink{component=\"g\",type=\"failover\",sink=\"a\"} 0\n"
         "sluice_group_active_sink{component=\"g\",type=\"failover\",sink=\"b\"} 1\n"
         "sluice_group_switches_total{component=\"g\",type=\"failover\"} " +
         std::to_string(switches) + "\n";
}

std::string line_of(const std::vector<std::string>& lines, const std::string& start) {
  for (const auto& l : lines) {
    if (l.rfind(start, 0) == 0) return l;
  }
  return "";
}

}  // namespace

TEST_CASE("top: Prometheus text with labels escapes and comments", "[unit][top]") {
  const auto s = top::parse_metrics(
      "# HELP x y\n"
      "a_total 3\n"
      "b{component=\"we\\\"ird\",type=\"t\"} 1.5e3\n"
      "c{component=\"x\"} NaN\n"
      "broken{component=\"x\"}\n");
  REQUIRE(s.size() == 3);
  CHECK(s[0].name == "a_total");
  CHECK(s[0].value == 3);
  CHECK(s[1].labels.at("component") == "we\"ird");
  CHECK(s[1].labels.at("type") == "t");
  CHECK(s[1].value == 1500);
  CHECK(s[2].name == "c");
}

TEST_CASE("top: rows rates fill levels and the active sink", "[unit][top]") {
  auto before = top::make_snapshot(kStatus, metrics(100, 0, 40, 1), 1000);
  auto now = top::make_snapshot(kStatus, metrics(300, 0, 240, 2), 3000);
  REQUIRE(before);
  REQUIRE(now);
  const auto lines = top::render(&*before, *now, "127.0.0.1:24280", 80, top::SortBy::name);
  for (const auto& l : lines) CHECK(l.size() <= 80);
  CHECK(lines[0] == "sluice top: web01 0.1.0 running, up 1h02m03s, admin 127.0.0.1:24280");
  // 200 events in 2 s; 3 parse errors; 2 batches not yet safe.
  CHECK(line_of(lines, "gen ") ==
        "gen              exec      running        100      500B      3     2         -");
  // 250 of 1000 events, 2 KiB of 8 KiB.
  CHECK(line_of(lines, "buf ") ==
        "buf            memory       100      100      250   25%   2.0KiB   25%     0");
  CHECK(line_of(lines, "g ") ==
        "g                failover    running        100 b                       2     2");
  // A series the agent does not export shows "-", not 0.
  CHECK(line_of(lines, "a ") ==
        "a                null      running          0         -       4       -      3");
  CHECK(line_of(lines, "b ") ==
        "b                file      running        100  100.0KiB       -       -      -");
  // Without an earlier snapshot the rates are unknown, not zero.
  const auto first = top::render(nullptr, *now, "x", 80, top::SortBy::name);
  CHECK(line_of(first, "gen ").find("running          -") != std::string::npos);
  // Sorted by rate, the busy sink comes first.
  const auto by_rate = top::render(&*before, *now, "x", 80, top::SortBy::rate);
  std::size_t a_at = 0, b_at = 0;
  for (std::size_t i = 0; i < by_rate.size(); ++i) {
    if (by_rate[i].rfind("a ", 0) == 0) a_at = i;
    if (by_rate[i].rfind("b ", 0) == 0) b_at = i;
  }
  CHECK(b_at < a_at);
  // A narrow terminal cuts lines and marks the cut.
  const auto narrow = top::render(&*before, *now, "127.0.0.1:24280", 40, top::SortBy::name);
  CHECK(narrow[0] == "sluice top: web01 0.1.0 running, up 1h0~");
}

TEST_CASE("top: a status that is not JSON is an error", "[unit][top]") {
  auto s = top::make_snapshot("<html>", "", 0);
  REQUIRE_FALSE(s);
  CHECK(s.error().message() == "/api/v1/status is not JSON");
}

// Tiered aggregation (issue 14) with two active-active collectors, from the shipped
// conf/scenario3-edge-ha.toml and conf/scenario3-collector.toml: three edge sluice agents tail
// access logs and replicate every PARTIAL row to collector A and collector B (two sink groups on
// one lmdb channel, each with its own cursor). Collector A is killed with SIGKILL while its windows
// are open and stays down while the edges read more lines; B's rows must be exact meanwhile, and
// once A is back and has received its backlog from the edges' channels, A's rows must be exact
// too: every (window, page) from both collectors, with the PV and UV computed here over all lines.
#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "tests/integration/tier_support.h"
#include "tests/support/agent_process.h"
#include "tests/support/kafka_mock.h"

using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using namespace sluice::test::tier;

namespace {

using Key = std::pair<std::string, std::string>;  // window start, page
using Values = std::map<Key, std::pair<long, long>>;

// The rows of `topic` by (window, page), read until every key of `want` came (or `timeout`);
// `consistent` turns false when a key comes again with other values, `repeated` counts the
// rows that repeat a key.
Values rows_of(KafkaMock& kafka, const std::string& topic, const Values& want,
               std::chrono::seconds timeout, bool& consistent, std::size_t& repeated) {
  Values got;
  std::size_t seen = 0;
  eventually(timeout, [&] {
    // Each read starts from the beginning and returns once one more message than last time came.
    const auto messages = kafka.consume(topic, std::max(want.size(), seen + 1), 3s);
    seen = messages.size();
    got.clear();
    consistent = true;
    repeated = 0;
    for (const auto& m : messages) {
      const Key key{json_value(m.value, "window_start"), json_value(m.value, "path")};
      const std::pair<long, long> v{number(json_value(m.value, "pv")),
                                    number(json_value(m.value, "uv"))};
      if (got.count(key) != 0) {
        ++repeated;
        if (got[key] != v) consistent = false;
      }
      got[key] = v;
    }
    return got.size() >= want.size();
  });
  return got;
}

}  // namespace

TEST_CASE(
    "tier: two active-active collectors both emit exact PV and UV while one is killed with "
    "SIGKILL mid-window and returns to its backlog",
    "[integration][tier][kafka][scenario]") {
  TempDir tmp;
  KafkaMock kafka;
  kafka.create_topic("access-raw", 1);
  for (const char* t : {"pv-uv-a", "pv-uv-b", "late-a", "late-b"}) kafka.create_topic(t, 1);
  const std::vector<std::string> names{"a", "b"};
  std::vector<std::string> addrs, collector_confs, collector_dirs;
  for (const auto& c : names) {
    addrs.push_back("127.0.0.1:" + std::to_string(free_port()));
    collector_dirs.push_back(tmp.file("collector-" + c + "-state"));
    fs::create_directories(collector_dirs.back());
    collector_confs.push_back(
        render("scenario3-collector.toml", tmp.file("collector-" + c + ".toml"),
               {{"name = \"collector-a\"", "name = \"collector-" + c + "\""},
                {"data_dir = \"/var/lib/sluice\"", "data_dir = \"@DATA_DIR@\""},
                {"admin = \"127.0.0.1:24281\"", "admin = \"127.0.0.1:0\""},
                {"listen = \"0.0.0.0:4545\"", "listen = \"" + addrs.back() + "\""},
                {"kafka-1.internal:9092,kafka-2.internal:9092", kafka.bootstraps()},
                {"topic = \"pv-uv-late\"", "topic = \"late-" + c + "\""},
                {"topic = \"pv-uv\"", "topic = \"pv-uv-" + c + "\""},
                {"INTERVAL '1' MINUTE", "INTERVAL '1' SECOND"},
                // Only silence closes windows here: edges deliver in any order.
                {"watermark_delay = \"2m\"", "watermark_delay = \"1h\""},
                {"idle_timeout = \"2m\"", "idle_timeout = \"8s\""}}));
  }
  std::vector<std::string> logs, edge_confs, edge_dirs;
  for (int e = 0; e < 3; ++e) {
    const std::string name = "web0" + std::to_string(e + 1);
    logs.push_back(tmp.file(name + ".log"));
    write_file(logs.back(), "");
    edge_dirs.push_back(tmp.file(name + "-state"));
    fs::create_directories(edge_dirs.back());
    edge_confs.push_back(
        render("scenario3-edge-ha.toml", tmp.file(name + ".toml"),
               {{"name = \"web01\"", "name = \"" + name + "\""},
                {"data_dir = \"/var/lib/sluice\"", "data_dir = \"@DATA_DIR@\""},
                {"admin = \"127.0.0.1:24280\"", "admin = \"127.0.0.1:0\""},
                {"/var/log/nginx/access.log", logs.back()},
                {"kafka-1.internal:9092,kafka-2.internal:9092", kafka.bootstraps()},
                {"collector-a.internal:4545", addrs[0]},
                {"collector-b.internal:4545", addrs[1]},
                // A returning collector is retried within half a second (well inside its idle).
                {"max_penalty = \"10s\"", "max_penalty = \"500ms\""},
                {"INTERVAL '1' MINUTE", "INTERVAL '1' SECOND"},
                {"watermark_delay = \"5s\"", "watermark_delay = \"0s\""},
                {"idle_timeout = \"30s\"", "idle_timeout = \"500ms\""}}));
  }

  std::mt19937_64 rng(1618);
  long seq = 0;
  std::vector<Line> all;
  std::vector<std::vector<Line>> second_half(3);
  for (std::size_t e = 0; e < 3; ++e) {
    auto first = lines_for(static_cast<int>(e), 0, 9, rng, seq);
    append(logs[e], first);
    all.insert(all.end(), first.begin(), first.end());
    second_half[e] = lines_for(static_cast<int>(e), 100, 109, rng, seq);
    all.insert(all.end(), second_half[e].begin(), second_half[e].end());
  }
  Values expected;
  {
    std::map<Key, std::pair<long, std::set<std::string>>> want;
    for (const Line& l : all) {
      if (l.method != "GET") continue;
      auto& [pv, uv] = want[{window_text(l.second), l.path}];
      ++pv;
      uv.insert(l.host);
    }
    for (const auto& [k, v] : want) expected[k] = {v.first, static_cast<long>(v.second.size())};
  }
  auto start = [&](const std::string& conf, const std::string& dir) {
    AgentProcess::Options o;
    o.config_file = conf;
    o.dir = dir;
    auto p = std::make_unique<AgentProcess>("", o);
    REQUIRE(p->wait_ready());
    return p;
  };
  auto collector_a = start(collector_confs[0], collector_dirs[0]);
  auto collector_b = start(collector_confs[1], collector_dirs[1]);
  std::vector<std::unique_ptr<AgentProcess>> edges;
  for (std::size_t e = 0; e < 3; ++e) edges.push_back(start(edge_confs[e], edge_dirs[e]));

  // A is killed once a checkpoint holds merged states of open windows (idle has not closed any).
  const std::string labels = "{component=\"pv_uv\",type=\"sql\"}";
  REQUIRE(eventually(30s, [&] {
    return collector_a->metric("sluice_pipeline_events_total" + labels).value_or(0) > 0;
  }));
  const double checkpoints =
      collector_a->metric("sluice_pipeline_checkpoints_total" + labels).value_or(0);
  REQUIRE(eventually(30s, [&] {
    return collector_a->metric("sluice_pipeline_checkpoints_total" + labels).value_or(0) >
           checkpoints;
  }));
  CHECK(collector_a->metric("sluice_pipeline_rows_total" + labels).value_or(-1) == 0);
  REQUIRE(collector_a->signal_and_wait(SIGKILL) == -SIGKILL);
  for (std::size_t e = 0; e < 3; ++e) append(logs[e], second_half[e]);

  // While A is down, B merges every partial of every edge and its rows are exact, once each.
  bool b_consistent = true;
  std::size_t b_repeated = 0;
  const Values got_b = rows_of(kafka, "pv-uv-b", expected, 60s, b_consistent, b_repeated);
  INFO(collector_b->stderr_text());
  CHECK(got_b == expected);
  CHECK(b_repeated == 0);  // B never stopped: one row per window and page
  CHECK(b_consistent);
  CHECK(kafka.consume("pv-uv-b", expected.size() + 1, 1s).size() == expected.size());
  // The edges kept A's partials: each edge's collector_a group has not delivered them all.
  for (std::size_t e = 0; e < 3; ++e) {
    INFO("edge " << e);
    CHECK(edges[e]
              ->metric("sluice_sink_events_total{component=\"collector_b\",type=\"avro\","
                       "outcome=\"ok\"}")
              .value_or(0) >
          edges[e]
              ->metric("sluice_sink_events_total{component=\"collector_a\",type=\"avro\","
                       "outcome=\"ok\"}")
              .value_or(0));
  }

  // A returns on its state and receives its backlog from the edges' channels.
  collector_a = start(collector_confs[0], collector_dirs[0]);
  bool a_consistent = true;
  std::size_t a_repeated = 0;
  const Values got_a = rows_of(kafka, "pv-uv-a", expected, 60s, a_consistent, a_repeated);
  INFO(collector_a->stderr_text());
  CHECK(got_a == expected);  // no row double counts, none misses a part
  CHECK(a_consistent);       // a row emitted again carries the same values
  CHECK(got_a == got_b);

  for (auto* c : {collector_a.get(), collector_b.get()}) {
    CHECK(c->metric("sluice_pipeline_bad_states_total" + labels).value_or(-1) == 0);
  }
  CHECK(kafka.consume("late-a", 1, 500ms).empty());
  CHECK(kafka.consume("late-b", 1, 500ms).empty());

  for (auto& e : edges) CHECK(e->terminate() == 0);
  CHECK(collector_a->terminate() == 0);
  CHECK(collector_b->terminate() == 0);
}

TEST_CASE("tier: the shipped active-active edge file passes sluice check with two sink groups",
          "[integration][tier][scenario]") {
  auto [code, text] = run_sluice({"check", "-c", source_dir() + "/conf/scenario3-edge-ha.toml"});
  INFO(text);
  CHECK(code == 0);
  CHECK(text.find("1 pipelines") != std::string::npos);
  CHECK(text.find("3 sink groups") != std::string::npos);  // to_a, to_b (+ raw_to_kafka's own)
}

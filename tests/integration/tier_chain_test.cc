// Tiered aggregation (issue 14) end to end from the shipped conf/scenario3-edge.toml and
// conf/scenario3-collector.toml: three edge sluice agents tail access logs (overlapping and
// disjoint visitors), emit PARTIAL PV/UV states per page and window over Avro to a collector
// sluice that MERGEs them and writes the final rows to Kafka (librdkafka's mock cluster). One edge
// is killed with SIGKILL mid-run and restarted on its state; another is killed and restarted with
// its state lost, so that it re-sends every partial. The collector's rows must equal PV and UV
// computed here over all lines, exactly, with no double counting.
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

TEST_CASE(
    "tier: three edges' PARTIAL rows merged at the collector equal PV and UV over all lines, "
    "through a SIGKILL and a lost edge state",
    "[integration][tier][kafka][scenario]") {
  TempDir tmp;
  KafkaMock kafka;
  kafka.create_topic("access-raw", 1);
  kafka.create_topic("pv-uv", 1);
  kafka.create_topic("pv-uv-late", 1);
  const std::string collector_addr = "127.0.0.1:" + std::to_string(free_port());
  const std::string nowhere = "127.0.0.1:" + std::to_string(free_port());  // collector B: down

  const std::string collector_conf =
      render("scenario3-collector.toml", tmp.file("collector.toml"),
             {{"data_dir = \"/var/lib/sluice\"", "data_dir = \"@DATA_DIR@\""},
              {"admin = \"127.0.0.1:24281\"", "admin = \"127.0.0.1:0\""},
              {"listen = \"0.0.0.0:4545\"", "listen = \"" + collector_addr + "\""},
              {"kafka-1.internal:9092,kafka-2.internal:9092", kafka.bootstraps()},
              {"INTERVAL '1' MINUTE", "INTERVAL '1' SECOND"},
              // Only silence closes windows here: edges deliver in any order.
              {"watermark_delay = \"2m\"", "watermark_delay = \"1h\""},
              {"idle_timeout = \"2m\"", "idle_timeout = \"10s\""}});
  std::vector<std::string> logs, edge_confs, edge_dirs;
  for (int e = 0; e < 3; ++e) {
    const std::string name = "web0" + std::to_string(e + 1);
    logs.push_back(tmp.file(name + ".log"));
    write_file(logs.back(), "");
    edge_dirs.push_back(tmp.file(name + "-state"));
    fs::create_directories(edge_dirs.back());
    edge_confs.push_back(
        render("scenario3-edge.toml", tmp.file(name + ".toml"),
               {{"name = \"web01\"", "name = \"" + name + "\""},
                {"data_dir = \"/var/lib/sluice\"", "data_dir = \"@DATA_DIR@\""},
                {"admin = \"127.0.0.1:24280\"", "admin = \"127.0.0.1:0\""},
                {"/var/log/nginx/access.log", logs.back()},
                {"kafka-1.internal:9092,kafka-2.internal:9092", kafka.bootstraps()},
                {"collector-a.internal:4545", collector_addr},
                {"collector-b.internal:4545", nowhere},
                {"INTERVAL '1' MINUTE", "INTERVAL '1' SECOND"},
                {"watermark_delay = \"5s\"", "watermark_delay = \"0s\""},
                {"idle_timeout = \"30s\"", "idle_timeout = \"500ms\""}}));
  }
  for (const auto& c : {collector_conf, edge_confs[0]}) {
    auto [code, text] = run_sluice({"check", "-c", c});
    INFO(text);
    REQUIRE(code == 0);
  }

  // First halves (seconds 0..9) before the edges start, second halves (100..109) later.
  std::mt19937_64 rng(314);
  long seq = 0;
  std::vector<Line> all;
  std::vector<std::vector<Line>> second_half(3);
  for (int e = 0; e < 3; ++e) {
    auto first = lines_for(e, 0, 9, rng, seq);
    append(logs[e], first);
    all.insert(all.end(), first.begin(), first.end());
    second_half[e] = lines_for(e, 100, 109, rng, seq);
    all.insert(all.end(), second_half[e].begin(), second_half[e].end());
  }
  // The reference: PV and UV per (second, page) over the GET lines of all edges.
  std::map<std::pair<std::string, std::string>, std::pair<long, std::set<std::string>>> want;
  for (const Line& l : all) {
    if (l.method != "GET") continue;
    auto& [pv, uv] = want[{window_text(l.second), l.path}];
    ++pv;
    uv.insert(l.host);
  }

  AgentProcess::Options co;
  co.config_file = collector_conf;
  AgentProcess collector("", co);
  REQUIRE(collector.wait_ready());
  auto start_edge = [&](int e) {
    AgentProcess::Options o;
    o.config_file = edge_confs[static_cast<std::size_t>(e)];
    o.dir = edge_dirs[static_cast<std::size_t>(e)];
    auto p = std::make_unique<AgentProcess>("", o);
    REQUIRE(p->wait_ready());
    return p;
  };
  std::vector<std::unique_ptr<AgentProcess>> edges;
  for (int e = 0; e < 3; ++e) edges.push_back(start_edge(e));
  auto delivered = [&](int e) {
    return edges[static_cast<std::size_t>(e)]
        ->metric("sluice_sink_events_total{component=\"collector_a\",type=\"avro\",outcome=\"ok\"}")
        .value_or(0);
  };
  REQUIRE(eventually(30s, [&] { return delivered(0) > 0 && delivered(1) > 0; }));

  for (int e = 0; e < 3; ++e) append(logs[static_cast<std::size_t>(e)], second_half[e]);
  // web01 crashes while it reads the second half and restarts on its state.
  REQUIRE(edges[0]->signal_and_wait(SIGKILL) == -SIGKILL);
  edges[0] = start_edge(0);
  // web02 crashes and loses its state: it reads its log again and re-sends every partial.
  REQUIRE(edges[1]->signal_and_wait(SIGKILL) == -SIGKILL);
  fs::remove_all(edge_dirs[1] + "/data");
  edges[1] = start_edge(1);

  const auto rows = kafka.consume("pv-uv", want.size(), 90s);
  INFO(collector.stderr_text());
  REQUIRE(rows.size() == want.size());
  std::map<std::pair<std::string, std::string>, std::pair<long, long>> got;
  for (const auto& m : rows) {
    INFO(m.value);
    const auto key =
        std::make_pair(json_value(m.value, "window_start"), json_value(m.value, "path"));
    CHECK(got.count(key) == 0);  // one row per window and page
    got[key] = {number(json_value(m.value, "pv")), number(json_value(m.value, "uv"))};
    CHECK(m.key == key.second);  // key = "field.path"
  }
  std::map<std::pair<std::string, std::string>, std::pair<long, long>> expected;
  for (const auto& [k, v] : want) expected[k] = {v.first, static_cast<long>(v.second.size())};
  CHECK(got == expected);
  // Nothing more comes (no second row for a window and page).
  CHECK(kafka.consume("pv-uv", want.size() + 1, 2s).size() == want.size());

  // web02's re-sent states replaced its first ones; nothing was refused or late.
  const std::string labels = "{component=\"pv_uv\",type=\"sql\"}";
  CHECK(collector.metric("sluice_pipeline_partials_replaced_total" + labels).value_or(0) > 0);
  CHECK(collector.metric("sluice_pipeline_bad_states_total" + labels).value_or(-1) == 0);
  CHECK(kafka.consume("pv-uv-late", 1, 1s).empty());
  // And every raw line reached Kafka (at least once: the crashed edges re-send some).
  // (Re-sent lines count too, so read until every sequence number was seen.)
  std::set<long> seqs;
  eventually(30s, [&] {
    for (const auto& m : kafka.consume("access-raw", all.size() + seqs.size() + 1, 1s)) {
      const auto at = m.value.find("seq=");
      if (at != std::string::npos) seqs.insert(std::stol(m.value.substr(at + 4)));
    }
    return seqs.size() >= all.size();
  });
  CHECK(seqs.size() == all.size());

  for (auto& e : edges) CHECK(e->terminate() == 0);
  CHECK(collector.terminate() == 0);
}

TEST_CASE("tier: the shipped scenario 3 edge and collector files pass sluice check",
          "[integration][tier][scenario]") {
  for (const char* f : {"scenario3-edge.toml", "scenario3-collector.toml"}) {
    auto [code, text] = run_sluice({"check", "-c", source_dir() + "/conf/" + f});
    INFO(text);
    CHECK(code == 0);
    CHECK(text.find("1 pipelines") != std::string::npos);
  }
}

TEST_CASE(
    "tier: the collector sends rows with damaged PARTIAL states to its late channel, counted "
    "and logged once",
    "[integration][tier][kafka]") {
  TempDir tmp;
  KafkaMock kafka;
  kafka.create_topic("pv-uv", 1);
  kafka.create_topic("pv-uv-late", 1);
  const std::string addr = "127.0.0.1:" + std::to_string(free_port());
  const std::string conf =
      render("scenario3-collector.toml", tmp.file("collector.toml"),
             {{"data_dir = \"/var/lib/sluice\"", "data_dir = \"@DATA_DIR@\""},
              {"admin = \"127.0.0.1:24281\"", "admin = \"127.0.0.1:0\""},
              {"listen = \"0.0.0.0:4545\"", "listen = \"" + addr + "\""},
              {"kafka-1.internal:9092,kafka-2.internal:9092", kafka.bootstraps()},
              {"idle_timeout = \"2m\"", "idle_timeout = \"1s\""}});
  AgentProcess::Options co;
  co.config_file = conf;
  AgentProcess collector("", co);
  REQUIRE(collector.wait_ready());

  // Version 1 states of agent web01 for [00:01, 00:02) 1970: COUNT(*) = 3, COUNT(DISTINCT) = 3
  // (the golden bytes of tests/unit/sql/tier_test.cc).
  const std::string pv = "U1ABAQV3ZWIwMYDguoS/A4DA9Yj+Bpnp2FE320bvAw==";
  const std::string uv =
      "U1ABAwV3ZWIwMYDguoS/A4DA9Yj+Bpnp2FE320bvAQAOgAgDg8R/Tl2e+i4OidKe6qMPRwmXs6jWRfuK";
  auto row = [](const std::string& p, const std::string& u,
                const std::string& window = "1970-01-01T00:01:00.000Z") {
    std::string r = R"({"window_start":")" + window + R"(","path":"/a")";
    if (!p.empty()) r += R"(,"pv":")" + p + "\"";
    if (!u.empty()) r += R"(,"uv":")" + u + "\"";
    return r + "}\n";
  };
  const std::string input = tmp.file("rows.ndjson");
  write_file(input, row("not-base64!", uv) + row(pv.substr(0, 20), uv) + row(pv, "") + row(pv, uv) +
                        row("U1ACAQV3ZWIwMYDguoS/A4DA9Yj+Bpnp2FE320bvAw==", uv) +
                        // [00:05, 00:06): COUNT(*) = 1 and an empty exact set; its time passes
                        // the watermark (2 minutes behind) over [00:01, 00:02), which closes.
                        row("U1ABAQV3ZWIwMYDgpZa7EYDA4Jr6FJnp2FE320bvAQ==",
                            "U1ABAwV3ZWIwMYDgpZa7EYDA4Jr6FJnp2FE320bvAQAOgAgA",
                            "1970-01-01T00:05:00.000Z"));
  AgentProcess::Options so;
  so.vars = {{"ADDRESS", addr}, {"EXTRA", ""}};
  so.stdin_file = input;
  AgentProcess sender("stdin_avro_sink.toml", so);

  const auto rows = kafka.consume("pv-uv", 1, 30s);
  REQUIRE(rows.size() == 1);
  CHECK(json_value(rows[0].value, "pv") == "3");
  CHECK(json_value(rows[0].value, "uv") == "3");
  const auto late = kafka.consume("pv-uv-late", 4, 30s);
  CHECK(late.size() == 4);  // the four bad rows, as they came
  const std::string labels = "{component=\"pv_uv\",type=\"sql\"}";
  CHECK(collector.metric("sluice_pipeline_bad_states_total" + labels).value_or(0) == 4);
  const std::string log = collector.stderr_text();
  INFO(log);
  std::size_t logged = 0;
  for (auto at = log.find("PARTIAL state is unusable"); at != std::string::npos;
       at = log.find("PARTIAL state is unusable", at + 1)) {
    ++logged;
  }
  CHECK(logged == 1);
  CHECK(log.find("field 'pv': not base64 text") != std::string::npos);
  CHECK(collector.terminate() == 0);
}

TEST_CASE("tier: sluice sql run merges PARTIAL rows from a file and names the unusable ones",
          "[integration][tier][cli]") {
  TempDir tmp;
  const std::string pv =
      "U1ABAQV3ZWIwMYDguoS/A4DA9Yj+Bpnp2FE320bvAw==";  // web01, [00:01, 00:02), 3
  const std::string input = tmp.file("partials.ndjson");
  write_file(input,
             R"({"window_start":"1970-01-01T00:01:00.000Z","path":"/a","pv":")" + pv + "\"}\n" +
                 R"({"window_start":"1970-01-01T00:01:00.000Z","path":"/a","pv":")" + pv + "\"}\n" +
                 R"({"window_start":"1970-01-01T00:01:00.000Z","path":"/a","pv":"xyz"})" + "\n");
  auto [code, text] = run_sluice({"sql", "run",
                                  "SELECT path, MERGE(pv) AS pv FROM edge GROUP BY "
                                  "TUMBLE(window_start, INTERVAL '1' MINUTE), path",
                                  "--input", input, "--output", "ndjson"});
  INFO(text);
  CHECK(code == 0);
  // The same state twice is one agent's re-send: 3, not 6.
  CHECK(text.find(R"({"path":"/a","pv":3})") != std::string::npos);
  CHECK(text.find(input + ":3: field 'pv': not base64 text, skipped") != std::string::npos);
}

TEST_CASE(
    "tier: a collector killed with SIGKILL and restarted on its state still emits exact PV and "
    "UV",
    "[integration][tier][kafka]") {
  TempDir tmp;
  KafkaMock kafka;
  kafka.create_topic("access-raw", 1);
  kafka.create_topic("pv-uv", 1);
  kafka.create_topic("pv-uv-late", 1);
  const std::string collector_addr = "127.0.0.1:" + std::to_string(free_port());
  const std::string nowhere = "127.0.0.1:" + std::to_string(free_port());
  const std::string collector_conf =
      render("scenario3-collector.toml", tmp.file("collector.toml"),
             {{"data_dir = \"/var/lib/sluice\"", "data_dir = \"@DATA_DIR@\""},
              {"admin = \"127.0.0.1:24281\"", "admin = \"127.0.0.1:0\""},
              {"listen = \"0.0.0.0:4545\"", "listen = \"" + collector_addr + "\""},
              {"kafka-1.internal:9092,kafka-2.internal:9092", kafka.bootstraps()},
              {"INTERVAL '1' MINUTE", "INTERVAL '1' SECOND"},
              {"watermark_delay = \"2m\"", "watermark_delay = \"1h\""},
              {"idle_timeout = \"2m\"", "idle_timeout = \"10s\""}});
  std::vector<std::string> logs, edge_confs;
  for (int e = 0; e < 2; ++e) {
    const std::string name = "web0" + std::to_string(e + 1);
    logs.push_back(tmp.file(name + ".log"));
    write_file(logs.back(), "");
    edge_confs.push_back(
        render("scenario3-edge.toml", tmp.file(name + ".toml"),
               {{"name = \"web01\"", "name = \"" + name + "\""},
                {"data_dir = \"/var/lib/sluice\"", "data_dir = \"@DATA_DIR@\""},
                {"admin = \"127.0.0.1:24280\"", "admin = \"127.0.0.1:0\""},
                {"/var/log/nginx/access.log", logs.back()},
                {"kafka-1.internal:9092,kafka-2.internal:9092", kafka.bootstraps()},
                {"collector-a.internal:4545", collector_addr},
                {"collector-b.internal:4545", nowhere},
                {"INTERVAL '1' MINUTE", "INTERVAL '1' SECOND"},
                {"watermark_delay = \"5s\"", "watermark_delay = \"0s\""},
                {"idle_timeout = \"30s\"", "idle_timeout = \"500ms\""}}));
  }
  std::mt19937_64 rng(2718);
  long seq = 0;
  std::vector<Line> all;
  std::vector<std::vector<Line>> second_half(2);
  for (int e = 0; e < 2; ++e) {
    auto first = lines_for(e, 0, 9, rng, seq);
    append(logs[static_cast<std::size_t>(e)], first);
    all.insert(all.end(), first.begin(), first.end());
    second_half[static_cast<std::size_t>(e)] = lines_for(e, 100, 109, rng, seq);
    all.insert(all.end(), second_half[static_cast<std::size_t>(e)].begin(),
               second_half[static_cast<std::size_t>(e)].end());
  }
  std::map<std::pair<std::string, std::string>, std::pair<long, long>> expected;
  {
    std::map<std::pair<std::string, std::string>, std::pair<long, std::set<std::string>>> want;
    for (const Line& l : all) {
      if (l.method != "GET") continue;
      auto& [pv, uv] = want[{window_text(l.second), l.path}];
      ++pv;
      uv.insert(l.host);
    }
    for (const auto& [k, v] : want) expected[k] = {v.first, static_cast<long>(v.second.size())};
  }

  const std::string collector_dir = tmp.file("collector-state");
  fs::create_directories(collector_dir);
  auto start_collector = [&] {
    AgentProcess::Options o;
    o.config_file = collector_conf;
    o.dir = collector_dir;
    auto p = std::make_unique<AgentProcess>("", o);
    REQUIRE(p->wait_ready());
    return p;
  };
  auto collector = start_collector();
  std::vector<std::unique_ptr<AgentProcess>> edges;
  for (int e = 0; e < 2; ++e) {
    AgentProcess::Options o;
    o.config_file = edge_confs[static_cast<std::size_t>(e)];
    edges.push_back(std::make_unique<AgentProcess>("", o));
    REQUIRE(edges.back()->wait_ready());
  }
  // Killed once a checkpoint holds merged states (and the windows are still open): the restart
  // must restore them, and re-read only what came after.
  const std::string labels = "{component=\"pv_uv\",type=\"sql\"}";
  REQUIRE(eventually(30s, [&] {
    return collector->metric("sluice_pipeline_events_total" + labels).value_or(0) > 0;
  }));
  const double checkpoints =
      collector->metric("sluice_pipeline_checkpoints_total" + labels).value_or(0);
  REQUIRE(eventually(30s, [&] {
    return collector->metric("sluice_pipeline_checkpoints_total" + labels).value_or(0) >
           checkpoints;
  }));
  REQUIRE(collector->signal_and_wait(SIGKILL) == -SIGKILL);
  for (int e = 0; e < 2; ++e) {
    append(logs[static_cast<std::size_t>(e)], second_half[static_cast<std::size_t>(e)]);
  }
  collector = start_collector();

  // Final rows are at least once (a row emitted before the crash and not yet checkpointed comes
  // again, with the same values): every window and page once or more, always with the same PV/UV.
  std::map<std::pair<std::string, std::string>, std::pair<long, long>> got;
  bool consistent = true;
  REQUIRE(eventually(90s, [&] {
    got.clear();
    for (const auto& m : kafka.consume("pv-uv", 100000, 1s)) {
      const auto key =
          std::make_pair(json_value(m.value, "window_start"), json_value(m.value, "path"));
      const std::pair<long, long> v{number(json_value(m.value, "pv")),
                                    number(json_value(m.value, "uv"))};
      if (got.count(key) != 0 && got[key] != v) consistent = false;
      got[key] = v;
    }
    return got.size() >= expected.size();
  }));
  INFO(collector->stderr_text());
  CHECK(consistent);
  CHECK(got == expected);
  CHECK(collector->metric("sluice_pipeline_bad_states_total" + labels).value_or(-1) == 0);
  CHECK(kafka.consume("pv-uv-late", 1, 1s).empty());
  for (auto& e : edges) CHECK(e->terminate() == 0);
  CHECK(collector->terminate() == 0);
}

// Scenario 4 (../shared/scenarios/README.md): the DaemonSet's own configuration, taken from the
// ConfigMap in deploy/kubernetes/daemonset.yaml with only addresses and paths replaced, run by
// the real binary: CRI container logs -> LMDB -> Kafka (librdkafka's mock cluster), failing over
// to the HTTP ingestion endpoint (tests/support/http_peer.py) while Kafka is down and back to
// Kafka when it returns; every sequence number arrives on one side or the other.
#include <simdjson.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/http_peer.h"
#include "tests/support/kafka_mock.h"

using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// The text of the ConfigMap key `sluice.toml` (a YAML literal block) in the manifest.
std::string configmap_toml(const std::string& manifest) {
  std::istringstream in(read_file(manifest));
  std::string line, out;
  std::size_t indent = std::string::npos;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside) {
      inside = line.find("sluice.toml: |") != std::string::npos;
      continue;
    }
    if (line.find_first_not_of(' ') == std::string::npos) {
      out += "\n";
      continue;
    }
    const std::size_t n = line.find_first_not_of(' ');
    if (indent == std::string::npos) indent = n;
    if (n < indent) break;
    out += line.substr(indent) + "\n";
  }
  return out;
}

// Replaces the line that sets `key` (at the start of a line) with `key = value`; returns how
// many lines it replaced.
int set_key(std::string& toml, const std::string& key, const std::string& value) {
  std::istringstream in(toml);
  std::string line, out;
  int n = 0;
  while (std::getline(in, line)) {
    if (line.rfind(key + " = ", 0) == 0) {
      line = key + " = " + value;
      ++n;
    }
    out += line + "\n";
  }
  toml = out;
  return n;
}

// Appends sequence numbers as CRI log lines (what the kubelet writes to /var/log/containers).
// Every 7th is split into a partial (P) and a final (F) line, which the agent must join.
void append_cri(const std::string& path, long first, long last) {
  std::ofstream f(path, std::ios::app);
  for (long i = first; i <= last; ++i) {
    const std::string n = std::to_string(i);
    const char* ts = "2026-12-01T10:00:00.000000000Z";
    if (i % 7 == 0 && n.size() > 1) {
      f << ts << " stdout P " << n.substr(0, n.size() / 2) << "\n";
      f << ts << " stdout F " << n.substr(n.size() / 2) << "\n";
    } else {
      f << ts << " stdout F " << n << "\n";
    }
  }
}

struct HttpEvents {
  std::vector<long> numbers;
  std::map<std::string, std::string> first_headers;
  long bad = 0;
};

// The events of every request the peer accepted (ndjson: one object per line, body = the number).
HttpEvents http_events(const HttpPeer& peer) {
  HttpEvents out;
  simdjson::dom::parser p;
  for (const PeerRequest& r : peer.requests()) {
    if (r.answer != "ok") continue;
    std::istringstream in(r.body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      simdjson::dom::element e;
      std::string_view body;
      if (p.parse(line).get(e) || e["body"].get_string().get(body)) {
        ++out.bad;
        continue;
      }
      out.numbers.push_back(std::stol(std::string(body)));
      simdjson::dom::object h;
      if (out.first_headers.empty() && !e["headers"].get_object().get(h)) {
        for (auto [k, v] : h) {
          std::string_view vs;
          if (!v.get_string().get(vs)) out.first_headers[std::string(k)] = std::string(vs);
        }
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("scenario 4: the DaemonSet config fails over from Kafka to HTTP and back losing nothing",
          "[integration][scenario4][kafka][http_sink][failover]") {
  const std::string manifest = source_dir() + "/deploy/kubernetes/daemonset.yaml";
  std::string toml = configmap_toml(manifest);
  REQUIRE(toml.find("[sink_groups.ship]") != std::string::npos);

  // The manifest's configuration as it is passes `sluice check`.
  TempDir tmp;
  write_file(tmp.file("configmap.toml"), toml);
  {
    auto [code, text] = run_sluice({"check", "-c", tmp.file("configmap.toml")});
    INFO(text);
    REQUIRE(code == 0);
  }

  // Only what points at the cluster and the node changes.
  const std::string logs = tmp.file("containers");
  fs::create_directories(logs);
  REQUIRE(set_key(toml, "data_dir", "\"@DATA_DIR@\"") == 1);
  REQUIRE(set_key(toml, "admin", "\"127.0.0.1:0\"") == 1);
  REQUIRE(set_key(toml, "paths", "[\"" + logs + "/*.log\"]") == 1);
  REQUIRE(set_key(toml, "brokers", "\"@BROKERS@\"") == 1);
  REQUIRE(set_key(toml, "url", "\"@URL@\"") == 1);
  write_file(tmp.file("node.toml"), toml);

  KafkaMock kafka;
  kafka.create_topic("container-logs", 3);
  HttpPeer peer;
  AgentProcess::Options o;
  o.config_file = tmp.file("node.toml");
  o.vars = {{"BROKERS", kafka.bootstraps()}, {"URL", peer.url("/v1/events")}};
  AgentProcess agent("", o);
  REQUIRE(agent.wait_ready());

  const std::string log = logs + "/web-7d9f_shop_app-0123456789ab.log";
  const std::string kafka_ok =
      R"(sluice_sink_events_total{component="kafka",type="kafka",outcome="ok"})";
  const std::string http_ok =
      R"(sluice_sink_events_total{component="fallback",type="http",outcome="ok"})";
  const std::string active_kafka =
      R"(sluice_group_active_sink{component="ship",type="failover",sink="kafka"})";
  const std::string active_fallback =
      R"(sluice_group_active_sink{component="ship",type="failover",sink="fallback"})";
  auto delivered = [&] {
    return agent.metric(kafka_ok).value_or(0) + agent.metric(http_ok).value_or(0);
  };

  // Kafka up: everything goes to Kafka.
  append_cri(log, 1, 2000);
  REQUIRE(eventually(30s, [&] { return agent.metric(kafka_ok).value_or(0) >= 2000; }));
  CHECK(agent.metric(http_ok).value_or(0) == 0);
  CHECK(agent.metric(active_kafka) == 1.0);

  // Kafka down: the HTTP endpoint takes the events.
  kafka.set_down(true);
  append_cri(log, 2001, 4000);
  REQUIRE(eventually(30s, [&] { return agent.metric(http_ok).value_or(0) >= 1000; }));
  CHECK(agent.metric(active_fallback) == 1.0);
  REQUIRE(eventually(30s, [&] { return delivered() >= 4000; }));
  const double http_during_outage = agent.metric(http_ok).value_or(0);

  // Kafka back: the group probes it and returns to it (failback); new lines go to Kafka.
  kafka.set_down(false);
  const auto back_at = std::chrono::steady_clock::now();
  long next = 4001;
  const double kafka_before = agent.metric(kafka_ok).value_or(0);
  REQUIRE(eventually(60s, [&] {
    append_cri(log, next, next + 19);  // about 2,000 lines/s while the group has not failed back
    next += 20;
    return agent.metric(active_kafka) == 1.0 &&
           agent.metric(kafka_ok).value_or(0) > kafka_before + 100;
  }));
  const auto failback_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - back_at)
                               .count();
  const long after_failback = next;  // every number from here on is written after the failback
  append_cri(log, next, next + 1999);
  const long last = next + 1999;
  REQUIRE(eventually(30s, [&] { return delivered() >= static_cast<double>(last); }));
  CHECK(agent.metric(R"(sluice_group_switches_total{component="ship",type="failover"})")
            .value_or(0) >= 2);
  CHECK(agent.terminate() == 0);

  // Count at the far side: every number 1..last, on Kafka or on the HTTP endpoint.
  const auto messages = kafka.consume("container-logs", SIZE_MAX, 10s);
  const HttpEvents http = http_events(peer);
  CHECK(http.bad == 0);
  std::vector<long> all = http.numbers;
  for (const auto& m : messages) all.push_back(std::stol(m.value));
  std::sort(all.begin(), all.end());
  const std::size_t total = all.size();
  all.erase(std::unique(all.begin(), all.end()), all.end());
  WARN("scenario 4: " << messages.size() << " on Kafka, " << http.numbers.size() << " on HTTP ("
                      << http_during_outage << " by the end of the outage), "
                      << (total - all.size()) << " repeats, last " << last << ", failback "
                      << failback_ms << " ms after Kafka returned");
  REQUIRE(!all.empty());
  CHECK(all.front() == 1);
  CHECK(all.back() == last);
  CHECK(static_cast<long>(all.size()) == last);  // 1..last, no gap, nothing else
  // Repeats come only from batches in flight at a switch: at most the group's window.
  CHECK(total - all.size() <= 4 * 1000);
  CHECK(http.numbers.size() >= 2000);  // at least the lines written during the outage
  // After the failback everything goes to Kafka again, none to the fallback.
  long on_kafka_after = 0;
  for (const auto& m : messages) on_kafka_after += std::stol(m.value) >= after_failback ? 1 : 0;
  CHECK(on_kafka_after >= last - after_failback + 1);
  CHECK(std::count_if(http.numbers.begin(), http.numbers.end(),
                      [&](long n) { return n >= after_failback; }) == 0);
  // The CRI runtime's lines were decoded: the stream header and the file's path travel along.
  auto header = [&](const char* name) {
    auto it = http.first_headers.find(name);
    return it == http.first_headers.end() ? std::string() : it->second;
  };
  CHECK(header("stream") == "stdout");
  CHECK(header("file") == log);
}

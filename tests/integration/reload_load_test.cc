// 50 reloads under load (issue #15): a taildir source fed 10k lines/s, an HTTP sink whose peer is
// down for part of the run, configuration variants that add and remove a sink, change the memory
// channel's bounds and break the file, alternately by SIGHUP and by POST /api/v1/reload. Every
// sequence number is counted at the far side: nothing lost, no hang, the final configuration
// runs, and every broken file was reported.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "tests/support/agent_process.h"
#include "tests/support/http_peer.h"
#include "tests/support/test_support.h"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

enum class Kind { add, remove_and_shrink, broken, base };

std::string variant(Kind k, const std::string& url) {
  const long max_events = k == Kind::remove_and_shrink ? 5000 : 20000;
  std::string t = R"([agent]
name = "it-reload-load"
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"
shutdown_timeout = "30s"

[sources.tail]
type = "taildir"
paths = ["@DIR@/app.log"]
channel = "buf"
rescan_interval = "200ms"
poll_interval = "20ms"
checkpoint_interval = "100ms"

[channels.buf]
type = "memory"
max_events = )" + std::to_string(max_events) +
                  R"(

[sinks.web]
type = "http"
url = ")" + url + R"("
format = "raw"
)";
  if (k == Kind::add) {
    t += R"(
[sinks.extra]
type = "file"
path = "@DIR@/extra.out"

[sink_groups.g]
channel = "buf"
processor = "load_balance"
sinks = ["web", "extra"]
penalty_base = "100ms"
max_penalty = "300ms"
)";
  } else {
    t += "channel = \"buf\"\npenalty_base = \"100ms\"\nmax_penalty = \"300ms\"\n";
  }
  if (k == Kind::broken) t += "[sinks.web.oops\n";
  return t;
}

std::string fill(const AgentProcess& agent, std::string text) {
  for (const auto& [key, value] :
       {std::pair<std::string, std::string>{"@DATA_DIR@", agent.dir() + "/data"},
        {"@DIR@", agent.dir()}}) {
    for (auto pos = text.find(key); pos != std::string::npos; pos = text.find(key, pos))
      text.replace(pos, key.size(), value);
  }
  return text;
}

void install(const AgentProcess& agent, const std::string& text) {
  const std::string tmp = agent.config_path() + ".new";
  write_file(tmp, fill(agent, text));
  REQUIRE(std::rename(tmp.c_str(), agent.config_path().c_str()) == 0);
}

HttpReply post_reload(const AgentProcess& agent) {
  return http_request(agent.admin(),
                      "POST /api/v1/reload HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n",
                      60s);
}

const std::string kAgent = "{component=\"agent\",type=\"agent\"}";
std::string reloads(const char* result) {
  return std::string("sluice_reloads_total{component=\"agent\",type=\"agent\",result=\"") + result +
         "\"}";
}

// The numbers of the lines of `text`; a line that is not one is counted in `bad`.
std::vector<long> numbers(const std::string& text, long& bad) {
  std::vector<long> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    char* end = nullptr;
    const long v = std::strtol(line.c_str(), &end, 10);
    if (!line.empty() && end != nullptr && *end == '\0') {
      out.push_back(v);
    } else if (!line.empty()) {
      ++bad;
    }
    pos = nl + 1;
  }
  return out;
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("reload: 50 reloads under 10k lines/s with a sink down lose nothing",
          "[integration][reload][load]") {
  HttpPeer peer;
  TempDir tmp;
  write_file(tmp.file("template.toml"), variant(Kind::base, peer.url()));
  AgentProcess::Options o;
  o.config_file = tmp.file("template.toml");
  AgentProcess agent("", o);
  REQUIRE(agent.wait_ready());

  // The writer: sequence numbers at about 10,000 lines/s, a burst of 10 every millisecond.
  std::atomic<bool> writing{true};
  std::atomic<long> written{0};
  std::thread writer([&] {
    std::ofstream out(agent.path("app.log"), std::ios::binary | std::ios::app);
    const auto start = std::chrono::steady_clock::now();
    long n = 0;
    while (writing) {
      std::string burst;
      for (int i = 0; i < 10; ++i) burst += std::to_string(++n) + "\n";
      out.write(burst.data(), static_cast<std::streamsize>(burst.size()));
      out.flush();
      written = n;
      std::this_thread::sleep_until(start + std::chrono::microseconds(n * 100));
    }
  });
  // The fault: the HTTP peer answers 503 for 4 s, from 3 s into the run.
  std::atomic<bool> fault_done{false};
  std::thread fault([&] {
    std::this_thread::sleep_for(3s);
    peer.down();
    std::this_thread::sleep_for(4s);
    peer.up();
    fault_done = true;
  });

  const Kind order[] = {Kind::add, Kind::remove_and_shrink, Kind::broken, Kind::base};
  long broken = 0, api_calls = 0, api_ok = 0;
  bool all_answered = true;
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) {
    const Kind k = order[i % 4];
    install(agent, variant(k, peer.url()));
    if (k == Kind::broken) ++broken;
    if (i % 2 == 0) {
      const double before = agent.metric("sluice_reload_requests_total" + kAgent).value_or(0);
      REQUIRE(::kill(agent.pid(), SIGHUP) == 0);
      // The next variant is written only once the agent has read this one.
      REQUIRE(eventually(10s, [&] {
        return agent.metric("sluice_reload_requests_total" + kAgent).value_or(0) > before;
      }));
    } else {
      ++api_calls;
      const HttpReply r = post_reload(agent);
      if (r.status == 0) {
        all_answered = false;
        const std::string err = agent.stderr_text();
        FAIL("reload " << i << " not answered; status: "
                       << http_get(agent.admin(), "/api/v1/status").body << "\nlog tail:\n"
                       << err.substr(err.size() > 6000 ? err.size() - 6000 : 0));
      }
      if (k == Kind::broken) {
        CHECK(r.status == 422);
      } else {
        CHECK(r.status == 200);
        api_ok += r.status == 200 ? 1 : 0;
      }
    }
    std::this_thread::sleep_for(100ms);  // pacing: let traffic flow between reloads
  }
  // The final configuration, applied by the API: everything before it is done.
  install(agent, variant(Kind::add, peer.url()));
  const HttpReply last = post_reload(agent);
  CHECK(last.status == 200);
  const auto reload_time = std::chrono::steady_clock::now() - started;
  writing = false;
  writer.join();
  fault.join();
  CHECK(fault_done);
  CHECK(all_answered);
  const long n = written;

  // Every number at the far side: the peer's accepted bodies and the extra file sink.
  long bad = 0;
  auto received = [&] {
    std::multiset<long> got;
    bad = 0;
    for (const PeerRequest& r : peer.requests()) {
      if (r.answer != "ok") continue;
      for (long v : numbers(r.body, bad)) got.insert(v);
    }
    for (long v : numbers(read_file(agent.path("extra.out")), bad)) got.insert(v);
    return got;
  };
  std::multiset<long> got;
  long missing = n;
  eventually(30s, [&] {
    got = received();
    missing = 0;
    for (long i = 1; i <= n; ++i) missing += got.count(i) == 0 ? 1 : 0;
    return missing == 0;
  });
  const std::set<long> unique(got.begin(), got.end());
  WARN(
      "50 reloads in " << std::chrono::duration_cast<std::chrono::milliseconds>(reload_time).count()
                       << " ms; " << n << " lines written, " << got.size() << " received ("
                       << got.size() - unique.size() << " repeats), " << missing << " missing");
  CHECK(missing == 0);
  CHECK(bad == 0);

  // Every broken file reported: counted, logged, and for the API answered 422.
  CHECK(agent.metric(reloads("failed")) == broken);
  const std::string log = agent.stderr_text();
  CHECK(occurrences(log, "refused: 1 configuration error in ") == static_cast<std::size_t>(broken));
  CHECK(agent.metric(reloads("ok")).value_or(0) >= static_cast<double>(api_ok + 1));
  CHECK(agent.metric("sluice_reload_requests_total" + kAgent) == 51);
  // The final configuration runs: its group and both sinks, nothing queued.
  const std::string status = http_get(agent.admin(), "/api/v1/status").body;
  CHECK(status.find("\"reload\":\"idle\",\"queued\":false,\"last_reload\":\"ok\"") !=
        std::string::npos);
  CHECK(status.find("{\"name\":\"extra\",\"kind\":\"sink\"") != std::string::npos);
  CHECK(status.find("{\"name\":\"g\",\"kind\":\"sink_group\"") != std::string::npos);
  CHECK(agent.terminate(30s) == 0);
}

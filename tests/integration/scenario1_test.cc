// Scenario 1 end to end from the shipped conf/ files: a web agent (exec tail -F -> memory ->
// failover over Avro to collectors A and B) and two collectors (avro -> memory -> datahub), all
// real sluice processes, against the local DataHub of tests/support/datahub_peer.py.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>

#include "tests/support/agent_process.h"
#include "tests/support/datahub_peer.h"

using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// The conf/ example with its deployment values replaced by the test's (each must be present, so
// that a changed example fails here instead of silently running something else).
std::string render(const std::string& example, const TempDir& tmp, const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& replace) {
  std::string text = read_file(source_dir() + "/conf/" + example);
  for (const auto& [from, to] : replace) {
    const auto at = text.find(from);
    INFO(example << ": " << from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
  }
  write_file(tmp.file(name), text);
  return tmp.file(name);
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

void append_lines(const std::string& path, const std::string& prefix, long first, long last) {
  std::string text;
  for (long i = first; i <= last; ++i) text += prefix + std::to_string(i) + "\n";
  FILE* f = std::fopen(path.c_str(), "a");
  REQUIRE(f != nullptr);
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

}  // namespace

TEST_CASE(
    "scenario 1: web agent fails over from collector A to B and back and DataHub gets "
    "every line",
    "[integration][datahub][scenario]") {
  TempDir tmp;
  DataHubPeer::Options po;
  po.record_type = "tuple";
  po.schema = "line:string";
  po.access_id = "EXAMPLE_ACCESS_ID";
  po.access_key = "scenario-one-key";
  DataHubPeer datahub(po);
  ::setenv("SLUICE_SCENARIO1_DATAHUB_KEY", "scenario-one-key", 1);

  const std::string log = tmp.file("events.log");
  write_file(log, "");
  const std::string addr_a = "127.0.0.1:" + std::to_string(free_port());
  const std::string addr_b = "127.0.0.1:" + std::to_string(free_port());
  auto collector_conf = [&](const std::string& name, const std::string& listen) {
    return render("scenario1-collector.toml", tmp, name + ".toml",
                  {{"data_dir = \"/var/lib/sluice\"", "data_dir = \"@DATA_DIR@\""},
                   {"admin = \"127.0.0.1:24281\"", "admin = \"127.0.0.1:0\""},
                   {"listen = \"0.0.0.0:5555\"", "listen = \"" + listen + "\""},
                   {"http://datahub.example.internal", datahub.endpoint()},
                   {"access_key = \"EXAMPLE_ACCESS_KEY\"",
                    "access_key = { env = \"SLUICE_SCENARIO1_DATAHUB_KEY\" }"}});
  };
  const std::string conf_a = collector_conf("collector-a", addr_a);
  const std::string conf_b = collector_conf("collector-b", addr_b);
  const std::string conf_web =
      render("scenario1-web.toml", tmp, "web.toml",
             {{"data_dir = \"/var/lib/sluice\"", "data_dir = \"@DATA_DIR@\""},
              {"admin = \"127.0.0.1:24280\"", "admin = \"127.0.0.1:0\""},
              {"/var/log/app/events.log", log},
              {"collector-a.internal:5555", addr_a},
              {"collector-b.internal:5555", addr_b}});
  for (const auto& c : {conf_a, conf_web}) {
    auto [code, text] = run_sluice({"check", "-c", c});
    INFO(text);
    CHECK(code == 0);
  }

  const std::string state_a = tmp.file("state-a");
  fs::create_directories(state_a);
  auto start_collector = [&](const std::string& conf, const std::optional<std::string>& dir) {
    AgentProcess::Options o;
    o.config_file = conf;
    o.dir = dir;
    auto p = std::make_unique<AgentProcess>("", o);
    REQUIRE(p->wait_ready());
    return p;
  };
  auto a = start_collector(conf_a, state_a);
  auto b = start_collector(conf_b, std::nullopt);
  AgentProcess::Options ow;
  ow.config_file = conf_web;
  AgentProcess web("", ow);
  REQUIRE(web.wait_ready());

  // What DataHub holds, by line: records are ["<line>"].
  auto lines = [&] {
    std::map<std::string, int> m;
    for (const auto& r : datahub.records()) {
      if (r.size() > 4) ++m[r.substr(2, r.size() - 4)];
    }
    return m;
  };
  auto sent_by = [&](const std::string& sink) {
    return web
        .metric("sluice_sink_events_total{component=\"" + sink + "\",type=\"avro\",outcome=\"ok\"}")
        .value_or(0);
  };
  // tail -F has opened the file once a line written now comes out.
  long warm = 0;
  REQUIRE(eventually(15s, [&] {
    append_lines(log, "warm-", warm, warm);
    ++warm;
    return !lines().empty();
  }));

  // Both collectors up: everything goes to A.
  append_lines(log, "line-", 1, 1000);
  REQUIRE(eventually(20s, [&] { return lines().count("line-1000") == 1; }));
  // The web agent counts a batch once its collector answered OK, which follows DataHub's answer.
  CHECK(eventually(10s, [&] { return sent_by("k1") >= 1000 + warm; }));
  CHECK(sent_by("k2") == 0);

  // Stop A: the web agent fails over to B.
  CHECK(a->terminate() == 0);
  a.reset();
  append_lines(log, "line-", 1001, 2000);
  REQUIRE(eventually(30s, [&] { return lines().count("line-2000") == 1; }));
  CHECK(eventually(10s, [&] { return sent_by("k2") >= 1000; }));
  const double k1_before = sent_by("k1");

  // Start A again on the same address: traffic returns to A (after at most max_penalty, 10 s).
  a = start_collector(conf_a, state_a);
  long next = 2001;
  REQUIRE(eventually(40s, [&] {
    append_lines(log, "line-", next, next + 9);
    next += 10;
    return sent_by("k1") > k1_before;
  }));
  // Let what was in flight to B settle: every line so far acknowledged to the web agent.
  REQUIRE(eventually(20s, [&] { return sent_by("k1") + sent_by("k2") >= warm + next - 1; }));
  const double k2_after_failback = sent_by("k2");
  append_lines(log, "line-", next, next + 499);
  next += 500;
  const long last = next - 1;
  REQUIRE(eventually(30s, [&] {
    return lines().count("line-" + std::to_string(last)) == 1 && sent_by("k1") >= k1_before + 500;
  }));
  CHECK(sent_by("k2") == k2_after_failback);  // A has the traffic again

  // Every line arrived; a line may repeat only when a collector stopped with it unacknowledged.
  const auto got = lines();
  std::size_t missing = 0, repeated = 0;
  for (long i = 1; i <= last; ++i) {
    auto it = got.find("line-" + std::to_string(i));
    if (it == got.end()) {
      ++missing;
    } else if (it->second > 1) {
      ++repeated;
    }
  }
  CHECK(missing == 0);
  WARN("lines repeated across the switches: " << repeated);
  CHECK(datahub.stat("signature_failures") == 0);
  CHECK(datahub.stat("bad_requests") == 0);
  CHECK(datahub.stat("malformed") == 0);
  CHECK(web.terminate() == 0);
  CHECK(a->terminate() == 0);
  CHECK(b->terminate() == 0);
}

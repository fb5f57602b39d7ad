// The real sluice binary delivering to tests/support/datahub_peer.py, a local DataHub that
// recomputes every signature, checks every body and fails on demand.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "tests/support/agent_process.h"
#include "tests/support/datahub_peer.h"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kConf = R"([agent]
name = "it-datahub"
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"
@AGENT@

[sources.in]
type = "stdin"
channel = "buf"
exit_on_eof = false

[channels.buf]
type = "memory"
max_events = 100000

[sinks.dh]
type = "datahub"
channel = "buf"
endpoint = "@ENDPOINT@"
project = "weblogs"
topic = "events"
access_id = "test-id"
access_key = @KEY@
retry_backoff = "20ms"
@EXTRA@
)";

struct Run {
  TempDir tmp;
  std::unique_ptr<AgentProcess> agent;
  Run(const DataHubPeer& peer, std::size_t lines, const std::string& key,
      const std::string& extra = "", const std::string& group = "",
      const std::string& agent_extra = "") {
    write_file(tmp.file("conf.toml"), std::string(kConf) + group);
    std::string in;
    for (std::size_t i = 0; i < lines; ++i) in += "line-" + std::to_string(i) + "\n";
    write_file(tmp.file("in.txt"), in);
    AgentProcess::Options o;
    o.config_file = tmp.file("conf.toml");
    o.stdin_file = tmp.file("in.txt");
    o.vars = {
        {"ENDPOINT", peer.endpoint()}, {"KEY", key}, {"EXTRA", extra}, {"AGENT", agent_extra}};
    agent = std::make_unique<AgentProcess>("", o);
  }
};

std::map<std::string, int> counts(const std::vector<std::string>& records) {
  std::map<std::string, int> m;
  for (const auto& r : records) ++m[r];
  return m;
}

}  // namespace

TEST_CASE("datahub: FailedRecords and shard splits under load deliver every line exactly once",
          "[integration][datahub]") {
  DataHubPeer peer;
  REQUIRE(peer.control(R"({"fail_ratio": 0.2, "fail_code": "InternalServerError", "seed": 3})"));
  ::setenv("SLUICE_IT_DATAHUB_KEY", "test-key", 1);
  constexpr std::size_t kLines = 20'000;
  Run run(peer, kLines, R"({ env = "SLUICE_IT_DATAHUB_KEY" })",
          "max_records_per_request = 500\nrecord_retry_timeout = \"60s\"\ndelivery_timeout = "
          "\"60s\"");
  REQUIRE(run.agent->wait_ready());
  REQUIRE(eventually(30s, [&] { return peer.stat("records") >= 5000; }));
  REQUIRE(peer.control(R"({"split_shards": true})"));  // every later put to 0/1 is sealed
  REQUIRE(eventually(60s, [&] { return peer.stat("records") >= static_cast<long>(kLines); }));
  // The peer stores a put's records before it answers: the count follows the answer.
  CHECK(eventually(10s, [&] {
    return run.agent->metric(
               R"(sluice_datahub_records_sent_total{component="dh",type="datahub"})") ==
           static_cast<double>(kLines);
  }));
  CHECK(run.agent->metric(R"(sluice_datahub_shard_reloads_total{component="dh",type="datahub"})") >=
        1);
  CHECK(run.agent->terminate() == 0);
  const auto c = counts(peer.records());
  CHECK(c.size() == kLines);
  std::size_t dup = 0;
  for (const auto& [line, n] : c) dup += n != 1;
  CHECK(dup == 0);
  CHECK(peer.stat("failed_records") > 1000);
  CHECK(peer.stat("lists") >= 2);
  CHECK(peer.stat("signature_failures") == 0);
  CHECK(peer.stat("bad_requests") == 0);
}

TEST_CASE("datahub: 503s and connection resets and FailedRecords lose nothing",
          "[integration][datahub]") {
  DataHubPeer peer;
  // The first requests answer 503 (the listing too), then two puts are reset after their
  // records were stored (the sink cannot know: at-least-once), and 10% of records fail.
  REQUIRE(peer.control(R"({"status_next": [503, 503, 429], "reset_next": 2,
                           "reset_after_accept": true, "fail_ratio": 0.1, "seed": 9})"));
  constexpr std::size_t kLines = 5'000;
  Run run(peer, kLines, "\"test-key\"", "compression = \"deflate\"",
          "\n[sink_groups.g]\nchannel = \"buf\"\nsinks = [\"dh\"]\nmax_penalty = \"200ms\"\n"
          "penalty_base = \"50ms\"\n");
  REQUIRE(run.agent->wait_ready());
  REQUIRE(eventually(60s, [&] { return counts(peer.records()).size() == kLines; }));
  CHECK(run.agent->terminate() == 0);
  const auto c = counts(peer.records());
  std::size_t missing = 0, extra = 0;
  for (std::size_t i = 0; i < kLines; ++i) {
    auto it = c.find("line-" + std::to_string(i));
    if (it == c.end()) {
      ++missing;
    } else {
      extra += static_cast<std::size_t>(it->second - 1);
    }
  }
  CHECK(missing == 0);
  // At least once: the two reset puts had stored their records (curl may resend a request reset
  // on a reused connection, and then the batch comes back whole), and leases answered Ok behind
  // a failed one are rolled back by the group too (at most max_in_flight - 1 = 3 batches).
  WARN("duplicates after 2 resets: " << extra);
  CHECK(extra <= 2 * 1000 + 3 * 1000);
  CHECK(extra > 0);
  CHECK(peer.stat("resets") == 2);
  CHECK(peer.stat("deflate_requests") > 0);
  CHECK(peer.stat("signature_failures") == 0);
  CHECK(peer.stat("bad_requests") == 0);
}

TEST_CASE("datahub: bad configuration is refused with file and line and key",
          "[integration][datahub]") {
  TempDir tmp;
  write_file(tmp.file("bad.toml"), R"([agent]
data_dir = "/tmp/unused"

[sources.in]
type = "stdin"
channel = "buf"

[channels.buf]
type = "memory"

[sinks.dh]
type = "datahub"
channel = "buf"
endpoint = "datahub.example"
project = "weblogs"
topic = "events"
access_id = "id"
access_key = { env = "SLUICE_IT_NOT_SET_ANYWHERE" }
record_type = "tupel"
)");
  auto [code, text] = run_sluice({"check", "-c", tmp.file("bad.toml")});
  CHECK(code != 0);
  const std::string f = tmp.file("bad.toml");
  CHECK(text.find(f + R"(:14:12: sinks.dh.endpoint: "datahub.example" is not an http:// or )"
                      "https:// URL") != std::string::npos);
  CHECK(text.find(f + ":18:22: sinks.dh.access_key.env: environment variable "
                      "'SLUICE_IT_NOT_SET_ANYWHERE' is not set") != std::string::npos);
  CHECK(text.find(f + ":19:15: sinks.dh.record_type: must be one of \"blob\", \"tuple\", got "
                      "\"tupel\" (did you mean 'tuple'?)") != std::string::npos);
  INFO(text);
}

TEST_CASE("datahub: the access key never appears in logs or status or check output",
          "[integration][datahub]") {
  const std::string secret = "s3cr3t-Val-Q7Zx";
  DataHubPeer::Options po;
  po.access_key = secret;
  DataHubPeer peer(po);
  TempDir keys;
  write_file(keys.file("key"), secret + "\n");
  long expected = 0;
  for (const std::string& key :
       {std::string(R"({ file = ")") + keys.file("key") + "\" }", "\"" + secret + "\""}) {
    INFO(key);
    expected += 100;
    Run run(peer, 100, key);
    REQUIRE(run.agent->wait_ready());
    REQUIRE(eventually(20s, [&] { return peer.stat("records") >= expected; }));
    const std::string status = http_get(run.agent->admin(), "/api/v1/status").body;
    const std::string metrics = http_get(run.agent->admin(), "/metrics").body;
    CHECK(status.find("\"dh\"") != std::string::npos);
    CHECK(status.find(secret) == std::string::npos);
    CHECK(metrics.find(secret) == std::string::npos);
    auto [code, text] = run_sluice({"check", "-c", run.agent->config_path()});
    CHECK(code == 0);
    CHECK(text.find(secret) == std::string::npos);
    CHECK(run.agent->terminate() == 0);
    CHECK(run.agent->stderr_text().find(secret) == std::string::npos);
    CHECK(peer.stat("records") == expected);
  }
  // A wrong key: 401s are logged without the key that was used.
  DataHubPeer other;  // expects "test-key"
  Run wrong(other, 10, "\"" + secret + "\"", "", "", "shutdown_timeout = \"1s\"");
  REQUIRE(wrong.agent->wait_ready());
  REQUIRE(eventually(10s, [&] { return other.stat("signature_failures") >= 1; }));
  wrong.agent->terminate();  // the events cannot drain: exits 1 after shutdown_timeout
  const std::string err = wrong.agent->stderr_text();
  CHECK(err.find("Unauthorized") != std::string::npos);
  CHECK(err.find(secret) == std::string::npos);
}

TEST_CASE("datahub: a failover group moves to a file while DataHub fails and comes back",
          "[integration][datahub]") {
  DataHubPeer peer;
  TempDir tmp;
  const std::string log = tmp.file("in.log"), out = tmp.file("fallback.log");
  write_file(log, "");
  write_file(tmp.file("conf.toml"), R"([agent]
name = "it-datahub-failover"
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"

[sources.in]
type = "taildir"
paths = ["@LOG@"]
channel = "buf"
poll_interval = "50ms"

[channels.buf]
type = "memory"

[sinks.dh]
type = "datahub"
endpoint = "@ENDPOINT@"
project = "weblogs"
topic = "events"
access_id = "test-id"
access_key = "test-key"

[sinks.fallback]
type = "file"
path = "@OUT@"

[sink_groups.g]
channel = "buf"
processor = "failover"
priority = { dh = 10, fallback = 5 }
max_penalty = "1s"
)");
  AgentProcess::Options o;
  o.config_file = tmp.file("conf.toml");
  o.vars = {{"LOG", log}, {"OUT", out}, {"ENDPOINT", peer.endpoint()}};
  AgentProcess agent("", o);
  REQUIRE(agent.wait_ready());
  auto in_datahub = [&] {
    std::set<long> s;
    for (const auto& r : peer.records()) s.insert(std::stol(r));
    return s;
  };
  auto in_file = [&] {
    std::set<long> s;
    for (const auto& l : read_lines(out)) s.insert(std::stol(l));
    return s;
  };
  append_numbers(log, 1, 500);
  REQUIRE(eventually(10s, [&] { return in_datahub().size() == 500; }));
  // DataHub answers 503 to everything for a while: the group moves to the file.
  std::string many = "[";
  for (int i = 0; i < 400; ++i) many += (i ? ",503" : "503");
  REQUIRE(peer.control(R"({"status_next": )" + many + "]}"));
  append_numbers(log, 501, 1000);
  REQUIRE(eventually(15s, [&] { return in_file().count(1000) == 1; }));
  // DataHub is back: the probe (a signed shard listing) passes and the traffic returns.
  REQUIRE(peer.control(R"({"clear": true})"));
  long next = 1001;
  REQUIRE(eventually(20s, [&] {
    append_numbers(log, next, next + 9);
    next += 10;
    return in_datahub().upper_bound(1000) != in_datahub().end();
  }));
  const long last = next - 1;
  REQUIRE(eventually(15s, [&] {
    std::set<long> all = in_datahub();
    for (long v : in_file()) all.insert(v);
    return all.size() == static_cast<std::size_t>(last);
  }));
  CHECK(agent.terminate() == 0);
  CHECK(peer.stat("signature_failures") == 0);
  CHECK(peer.stat("bad_requests") == 0);
}

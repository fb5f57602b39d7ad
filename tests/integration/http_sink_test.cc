// The http (webhook) sink in the real binary against tests/support/http_peer.py: at-least-once
// through failures, rejects to the dead letter, failover to a file and back, secrets kept out of
// logs, status and `sluice check`, and a prompt shutdown with requests in flight.
#include <simdjson.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/http_peer.h"

using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct Setup {
  TempDir tmp;
  std::string logs = tmp.file("logs");
  std::string log_file = logs + "/app.log";
  Setup() { fs::create_directories(logs); }
};

AgentProcess::Options http_options(const Setup& s, const std::string& url,
                                   const std::string& http_extra = "", bool with_backup = false,
                                   int batch = 100) {
  AgentProcess::Options o;
  o.vars = {{"PATHS", "[\"" + s.logs + "/*.log\"]"},
            {"URL", url},
            {"HTTP_EXTRA", http_extra},
            {"SHUTDOWN_TIMEOUT", "10s"},
            {"BATCH", std::to_string(batch)},
            {"SINKS", with_backup ? "[\"hook\", \"backup\"]" : "[\"hook\"]"},
            {"BACKUP_SINK",
             with_backup ? "[sinks.backup]\ntype = \"file\"\npath = \"@DIR@/backup.log\"" : ""}};
  return o;
}

// The numbers at the start of the lines of the bodies the peer answered 200 to (raw format).
std::multiset<long> numbers_received(const HttpPeer& peer) {
  std::multiset<long> out;
  for (const PeerRequest& r : peer.requests()) {
    if (r.answer != "ok" && r.answer != "slow") continue;
    for (long n : numbers_of(r.body)) out.insert(n);
  }
  return out;
}

// The numbers in the bodies of the dead-letter file (json format).
std::multiset<long> dead_numbers(const std::string& path) {
  std::multiset<long> out;
  simdjson::dom::parser p;
  for (const std::string& line : read_lines(path)) {
    simdjson::dom::element e;
    std::string_view body;
    if (line.empty() || p.parse(line).get(e) || e["body"].get_string().get(body)) continue;
    out.insert(std::stol(std::string(body)));
  }
  return out;
}

bool covers(const std::multiset<long>& got, long first, long last) {
  for (long i = first; i <= last; ++i) {
    if (got.count(i) == 0) return false;
  }
  return true;
}

std::string metric_name(const std::string& name, const std::string& extra = "") {
  return name + "{component=\"hook\",type=\"http\"" + (extra.empty() ? "" : "," + extra) + "}";
}

}  // namespace

TEST_CASE("http sink: every line arrives at least once through 503s resets 500s and slow answers",
          "[integration][http_sink]") {
  Setup s;
  const long n = 3000;
  append_numbers(s.log_file, 1, n);
  HttpPeer peer("503:0,reset,500,slow:300,ok,503:0,reset,429:0,ok,reset,ok,500");
  AgentProcess agent("taildir_http.toml",
                     http_options(s, peer.url("/in"), "format = \"raw\"\nmax_in_flight = 2"));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(30s, [&] { return covers(numbers_received(peer), 1, n); }));
  const auto got = numbers_received(peer);
  WARN("requests " << peer.stat("requests") << ", lines received " << got.size() << " for " << n);
  CHECK(*got.rbegin() == n);
  // Which answers reached the sink depends on timing (a request in flight behind a failed one is
  // cancelled by the group's rollback), so the counts are bounds; the peer consumed every action.
  CHECK(peer.stat("requests") >= 30 + 9);
  const double failed =
      agent.metric(metric_name("sluice_http_sink_requests_total", "code=\"4xx\"")).value_or(0) +
      agent.metric(metric_name("sluice_http_sink_requests_total", "code=\"5xx\"")).value_or(0) +
      agent.metric(metric_name("sluice_http_sink_requests_total", "code=\"error\"")).value_or(0);
  CHECK(failed >= 1.0);
  // The peer records a request before it answers: wait for the group to count the last answer.
  // Each event is committed exactly once, whatever the peer received twice.
  CHECK(eventually(5s, [&] {
    return agent.metric(R"(sluice_sink_events_total{component="hook",type="http",outcome="ok"})") ==
           static_cast<double>(n);
  }));
  CHECK(agent.metric(metric_name("sluice_http_sink_retries_total")) >= failed);
  CHECK(agent.metric(R"(sluice_sink_events_total{component="hook",type="http",outcome="reject"})")
            .value_or(0) == 0.0);
  // Every request body was text/plain lines and carried an idempotency key.
  for (const PeerRequest& r : peer.requests()) {
    CHECK(r.header("content-type") == "text/plain; charset=utf-8");
    CHECK(r.header("idempotency-key").size() > 17);
  }
  CHECK(agent.terminate() == 0);
  CHECK(agent.stderr_text().find("Connection reset by peer") != std::string::npos);
}

TEST_CASE("http sink: a 400 is rejected counted and dead-lettered while the rest flows",
          "[integration][http_sink]") {
  Setup s;
  append_numbers(s.log_file, 1, 50);
  HttpPeer peer("400:bad record in batch");
  AgentProcess agent("taildir_http.toml", http_options(s, peer.url("/in"), "format = \"ndjson\""));
  REQUIRE(agent.wait_ready());
  const std::string dead = agent.path("dead.log");
  REQUIRE(eventually(15s, [&] { return count_lines(dead) == 50; }));
  append_numbers(s.log_file, 51, 100);
  REQUIRE(eventually(15s, [&] { return peer.stat("events") == 50; }));
  CHECK(agent.metric(metric_name("sluice_http_sink_rejects_total")) == 1.0);
  // Counted when the lease commits, just after the dead-letter sink answered.
  CHECK(eventually(5s, [&] {
    return agent.metric(
               R"(sluice_sink_events_total{component="hook",type="http",outcome="reject"})") ==
           50.0;
  }));
  // The dead letter holds the rejected events with the reason, which carries the answer's body.
  const std::string text = read_file(dead);
  CHECK(text.find("HTTP 400 Bad Request: bad record in batch") != std::string::npos);
  // The accepted batch is NDJSON in the file sink's json format.
  std::set<long> bodies;
  for (const PeerRequest& r : peer.requests()) {
    if (r.answer != "ok") continue;
    CHECK(r.header("content-type") == "application/x-ndjson");
    simdjson::dom::parser p;
    simdjson::dom::document_stream docs;
    REQUIRE_FALSE(p.parse_many(r.body).get(docs));
    for (auto doc : docs) {
      std::string_view body;
      REQUIRE_FALSE(doc["body"].get_string().get(body));
      std::string_view ts;
      CHECK_FALSE(doc["timestamp"].get_string().get(ts));
      bodies.insert(std::stol(std::string(body)));
    }
  }
  CHECK(bodies.size() == 50);
  CHECK(*bodies.begin() == 51);
  CHECK(agent.terminate() == 0);
}

TEST_CASE(
    "http sink: a 413 splits the request until the receiver takes it while one event too large "
    "is rejected alone and later batches are cut to the learned size",
    "[integration][http_sink][split]") {
  Setup s;
  // Bodies of at most 600 bytes, as nginx's client_max_body_size: a batch of 300 short lines is
  // about 1,000 bytes, and line 301 alone is 705.
  append_numbers(s.log_file, 1, 300);
  write_file(s.logs + "/big.log", "301 " + std::string(700, 'x') + "\n");
  append_numbers(s.log_file, 302, 400);
  HttpPeer peer("", 0, {"--max-body", "600"});
  AgentProcess agent("taildir_http.toml",
                     http_options(s, peer.url("/in"), "format = \"raw\"", false, 300));
  REQUIRE(agent.wait_ready());
  const std::string dead = agent.path("dead.log");
  REQUIRE(eventually(20s, [&] {
    const auto got = numbers_received(peer);
    return count_lines(dead) == 1 && covers(got, 1, 300) && covers(got, 302, 400);
  }));
  CHECK(numbers_received(peer).count(301) == 0);
  CHECK(dead_numbers(dead) == std::multiset<long>{301});
  const std::string text = read_file(dead);
  CHECK(text.find("301 xxxx") != std::string::npos);
  CHECK(text.find("HTTP 413 Content Too Large: body larger than 600 bytes") != std::string::npos);
  CHECK(agent.metric(metric_name("sluice_http_sink_splits_total")).value_or(0) >= 1);
  const double limit =
      agent.metric(metric_name("sluice_http_sink_request_bytes_limit")).value_or(0);
  CHECK(limit > 0);
  CHECK(limit < 600);
  // Counted when the lease commits: after the dead letter and every batch taken before it.
  CHECK(eventually(5s, [&] {
    return agent.metric(
               R"(sluice_sink_events_total{component="hook",type="http",outcome="reject"})") == 1.0;
  }));
  auto refused = [&] {
    long n = 0;
    for (const PeerRequest& r : peer.requests()) {
      if (r.answer == "413") ++n;
      if (r.answer == "ok") CHECK(r.raw_bytes <= 600);
    }
    return n;
  };
  const long refused_before = refused();
  CHECK(refused_before >= 2);  // the first batch, and line 301 alone
  // With the size learned, 600 more lines in batches of 300 go through without another 413.
  append_numbers(s.log_file, 401, 1000);
  REQUIRE(eventually(20s, [&] { return covers(numbers_received(peer), 401, 1000); }));
  CHECK(refused() == refused_before);
  // The peer records a request before it answers: the sink counts the last batch a moment later.
  CHECK(eventually(10s, [&] {
    return agent.metric(R"(sluice_sink_events_total{component="hook",type="http",outcome="ok"})")
               .value_or(-1) == 999.0;
  }));
  CHECK(agent.terminate() == 0);
}

TEST_CASE("http sink: failover to a file while the receiver is down and failback when it returns",
          "[integration][http_sink][failover]") {
  Setup s;
  HttpPeer peer;
  AgentProcess agent("taildir_http.toml",
                     http_options(s, peer.url("/in"),
                                  "format = \"raw\"\nprobe_url = \"" + peer.url("/health") +
                                      "\"\nconnect_timeout = \"500ms\"",
                                  /*with_backup=*/true, 50));
  REQUIRE(agent.wait_ready());
  append_numbers(s.log_file, 1, 100);
  REQUIRE(eventually(15s, [&] { return covers(numbers_received(peer), 1, 100); }));
  const std::string backup = agent.path("backup.log");

  peer.kill();
  append_numbers(s.log_file, 101, 200);
  REQUIRE(eventually(15s, [&] {
    std::multiset<long> all = numbers_received(peer);
    for (long v : numbers_of(read_file(backup))) all.insert(v);
    return covers(all, 1, 200);
  }));
  CHECK(count_lines(backup) > 0);
  const std::string active_backup =
      R"(sluice_group_active_sink{component="up",type="failover",sink="backup"})";
  CHECK(agent.metric(active_backup) == 1.0);

  peer.restart();  // same port
  // The group probes the health URL and fails back: new lines reach the peer again.
  long next = 201;
  REQUIRE(eventually(20s, [&] {
    append_numbers(s.log_file, next, next + 9);
    next += 10;
    const auto got = numbers_received(peer);
    return !got.empty() && *got.rbegin() > 200;
  }));
  const long last = next - 1;
  REQUIRE(eventually(15s, [&] {
    std::multiset<long> all = numbers_received(peer);
    for (long v : numbers_of(read_file(backup))) all.insert(v);
    return covers(all, 1, last);
  }));
  CHECK(agent.metric(R"(sluice_group_active_sink{component="up",type="failover",sink="hook"})") ==
        1.0);
  CHECK(peer.stat("health") >= 1);
  CHECK(agent.metric(R"(sluice_group_switches_total{component="up",type="failover"})") >= 2.0);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("http sink: the auth token never appears in logs status metrics or check",
          "[integration][http_sink][secret]") {
  Setup s;
  append_numbers(s.log_file, 1, 20);
  const std::string token = "tok-7f3a9c1e55d0-do-not-print";
  ::setenv("SLUICE_IT_HOOK_TOKEN", token.c_str(), 1);
  HttpPeer peer("401:who are you,503:0,reset");
  auto o = http_options(s, peer.url("/in"),
                        "format = \"raw\"\nauth_token = { env = \"SLUICE_IT_HOOK_TOKEN\" }");
  AgentProcess agent("taildir_http.toml", o);
  REQUIRE(agent.wait_ready());
  // The 401 kept the batch (Retry): sent again once the peer took it, nothing dead-lettered.
  REQUIRE(eventually(15s, [&] { return covers(numbers_received(peer), 1, 20); }));
  CHECK(dead_numbers(agent.path("dead.log")).empty());
  append_numbers(s.log_file, 21, 40);
  REQUIRE(eventually(15s, [&] { return covers(numbers_received(peer), 21, 40); }));
  for (const PeerRequest& r : peer.requests())
    CHECK(r.header("authorization") == "Bearer " + token);
  const HttpReply status = http_get(agent.admin(), "/api/v1/status");
  CHECK(status.status == 200);
  CHECK(status.body.find("\"hook\"") != std::string::npos);
  CHECK(status.body.find(token) == std::string::npos);
  const HttpReply metrics = http_get(agent.admin(), "/metrics");
  CHECK(metrics.body.find(token) == std::string::npos);
  CHECK(agent.terminate() == 0);
  const std::string log = agent.stderr_text();
  CHECK(log.find("401") != std::string::npos);  // the refusal was logged...
  CHECK(log.find(token) == std::string::npos);  // ...without the token

  // `sluice check` with the token inline and a second, broken secret: errors, never the value.
  const std::string conf = s.tmp.file("check.toml");
  write_file(conf, "[agent]\nname = \"c\"\ndata_dir = \"" + s.tmp.file("d") +
                       "\"\n[sources.in]\ntype = \"stdin\"\nchannel = \"buf\"\n"
                       "[channels.buf]\ntype = \"memory\"\n"
                       "[sinks.hook]\ntype = \"http\"\nchannel = \"buf\"\nurl = \"" +
                       peer.url() + "\"\nauth_token = \"" + token +
                       "\"\n[sinks.other]\ntype = \"http\"\nchannel = \"buf2\"\nurl = \"" +
                       peer.url() +
                       "\"\nauth_token = { file = \"/nonexistent/tok\" }\n"
                       "[channels.buf2]\ntype = \"memory\"\n");
  auto [rc, out] = run_sluice({"check", "-c", conf});
  INFO(out);
  CHECK(rc != 0);
  CHECK(out.find(conf + ":18:23: sinks.other.auth_token.file: cannot read secret file "
                        "'/nonexistent/tok': No such file or directory") != std::string::npos);
  CHECK(out.find(token) == std::string::npos);
}

// The memory channel drains at shutdown: requests that hang are given up after delivery_timeout
// (the group cancels them, the sink aborts them), resent, and the agent exits 0 with every line
// delivered, long before the 60 s request_timeout.
TEST_CASE("http sink: SIGTERM with requests in flight exits 0 promptly",
          "[integration][http_sink][shutdown]") {
  Setup s;
  append_numbers(s.log_file, 1, 400);
  HttpPeer peer("slow:30000,slow:30000,slow:30000,slow:30000");
  AgentProcess agent("taildir_http.toml",
                     http_options(s, peer.url("/in"),
                                  "format = \"raw\"\nrequest_timeout = \"60s\"\n"
                                  "delivery_timeout = \"2s\"",
                                  false, 100));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] { return peer.stat("requests") == 4; }));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(agent.terminate() == 0);
  const auto took = std::chrono::steady_clock::now() - t0;
  WARN("SIGTERM to exit with http requests in flight: "
       << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took < 6s);
  CHECK(covers(numbers_received(peer), 1, 400));
}

TEST_CASE("http sink: gzip and zstd JSON arrays decode to every event",
          "[integration][http_sink][compression]") {
  for (const char* comp : {"gzip", "zstd"}) {
    Setup s;
    append_numbers(s.log_file, 1, 500);
    HttpPeer peer;
    AgentProcess agent(
        "taildir_http.toml",
        http_options(s, peer.url("/in"),
                     std::string("format = \"json\"\ncompression = \"") + comp + "\"", false, 200));
    REQUIRE(agent.wait_ready());
    REQUIRE(eventually(15s, [&] { return peer.stat("events") == 500; }));
    std::set<long> seen;
    for (const PeerRequest& r : peer.requests()) {
      CHECK(r.encoding == comp);
      CHECK(r.decode_error.empty());
      CHECK(r.header("content-type") == "application/json");
      simdjson::dom::parser p;
      simdjson::dom::array arr;
      REQUIRE_FALSE(p.parse(r.body).get_array().get(arr));
      for (auto ev : arr) {
        std::string_view body;
        REQUIRE_FALSE(ev["body"].get_string().get(body));
        seen.insert(std::stol(std::string(body)));
      }
    }
    CHECK(seen.size() == 500);
    const double raw =
        agent.metric(metric_name("sluice_http_sink_bytes_total", "stage=\"uncompressed\""))
            .value_or(0);
    const double sent =
        agent.metric(metric_name("sluice_http_sink_bytes_total", "stage=\"compressed\""))
            .value_or(0);
    WARN(comp << ": " << raw << " bytes compressed to " << sent);
    CHECK(sent > 0);
    CHECK(sent < raw / 3);
    CHECK(agent.terminate() == 0);
  }
}

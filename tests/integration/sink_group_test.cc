#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <set>
#include <string>

#include "tests/support/agent_process.h"
#include "tests/support/fault_peers.h"

using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

AgentProcess::Options failover_options(const std::string& channel, const std::string& logs,
                                       const std::string& backup, const std::string& state) {
  AgentProcess::Options o;
  o.vars = {{"CHANNEL", channel},
            {"PATHS", "[\"" + logs + "/*.log\"]"},
            {"PRIMARY", "/dev/full"},
            {"BACKUP", backup},
            {"GROUP_EXTRA", ""}};
  o.dir = state;
  return o;
}

AgentProcess::Options avro_options(const std::string& channel, const std::string& logs,
                                   const std::string& backup, const std::string& address,
                                   const std::string& connect_timeout,
                                   const std::string& request_timeout,
                                   const std::string& delivery_timeout = "30s") {
  AgentProcess::Options o;
  o.vars = {{"CHANNEL", channel},
            {"PATHS", "[\"" + logs + "/*.log\"]"},
            {"ADDRESS", address},
            {"CONNECT_TIMEOUT", connect_timeout},
            {"REQUEST_TIMEOUT", request_timeout},
            {"DELIVERY_TIMEOUT", delivery_timeout},
            {"BACKUP", backup}};
  return o;
}

}  // namespace

// Hardening item 2: the backup's batch was left uncommitted after a failover, so SIGTERM waited
// the whole shutdown_timeout (exit 1) and a restart delivered the batch again.
TEST_CASE("sink group: failover to the backup commits what the backup delivered",
          "[integration][group]") {
  const std::string channel = GENERATE(as<std::string>{}, "lmdb", "memory");
  INFO("channel = " << channel);
  TempDir tmp;
  const std::string logs = tmp.file("logs"), state = tmp.file("state");
  const std::string backup = tmp.file("backup.out");
  fs::create_directories(logs);
  fs::create_directories(state);
  const long n = 300;
  append_numbers(logs + "/app.log", 1, n);
  const auto o = failover_options(channel, logs, backup, state);
  {
    AgentProcess agent("taildir_lmdb_failover.toml", o);
    REQUIRE(agent.wait_ready());
    REQUIRE(eventually(10s, [&] { return count_lines(backup) >= static_cast<std::size_t>(n); }));
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(agent.terminate() == 0);
    const auto took = std::chrono::steady_clock::now() - t0;
    WARN("SIGTERM to exit: " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                             << " ms");
    CHECK(took < 3s);  // not the 10 s shutdown_timeout
    CHECK(agent.stderr_text().find("shutdown_timeout") == std::string::npos);
  }
  CHECK(count_lines(backup) == static_cast<std::size_t>(n));
  // Restart on the same state: nothing is delivered again. A marker line written after the
  // restart arrives after any redelivery would have (the group keeps order), so waiting for it
  // is enough.
  {
    AgentProcess agent("taildir_lmdb_failover.toml", o);
    REQUIRE(agent.wait_ready());
    append_numbers(logs + "/app.log", n + 1, n + 1);
    REQUIRE(eventually(10s, [&] {
      const auto lines = read_lines(backup);
      return !lines.empty() && lines.back() == std::to_string(n + 1);
    }));
    CHECK(agent.terminate() == 0);
  }
  const auto lines = read_lines(backup);
  CHECK(lines.size() == static_cast<std::size_t>(n + 1));
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i] != std::to_string(i + 1)) {
      FAIL_CHECK("line " << i + 1 << " is " << lines[i]);
      break;
    }
  }
}

// Hardening item 3: SIGTERM while the group probed its avro sink (a connect that hangs) crashed:
// the probe's connect callback ran, cancelled, while the loop closed after the group was gone.
TEST_CASE("sink group: SIGTERM while a health probe of the avro sink is in flight exits 0",
          "[integration][group][avro]") {
  const std::string channel = GENERATE(as<std::string>{}, "memory", "lmdb");
  INFO("channel = " << channel);
  Blackhole hole;
  TempDir tmp;
  const std::string logs = tmp.file("logs"), backup = tmp.file("backup.out");
  fs::create_directories(logs);
  append_numbers(logs + "/app.log", 1, 10);
  AgentProcess agent("taildir_avro_file_failover.toml",
                     avro_options(channel, logs, backup, hole.address(), "5s", "5s"));
  REQUIRE(agent.wait_ready());
  // The first batch waits out connect_timeout, fails over to the backup; after the penalty the
  // next batch makes the group probe the collector, and that connect hangs too.
  REQUIRE(eventually(15s, [&] { return count_lines(backup) >= 10; }));
  const std::string probing =
      R"(sluice_group_probing{component="up",type="failover",sink="collector"})";
  long next = 11;
  REQUIRE(eventually(10s, [&] {
    append_numbers(logs + "/app.log", next, next);
    ++next;
    return agent.metric(probing) == 1.0;
  }));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(agent.terminate() == 0);
  const auto took = std::chrono::steady_clock::now() - t0;
  WARN("SIGTERM to exit with a probe in flight: "
       << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took < 3s);
}

// Shutdown with a request in flight: the server accepted the connection and never answers. The
// lmdb channel keeps the batch; the group stops waiting after delivery_timeout (default 5 s), well
// within shutdown_timeout (10 s), instead of the request_timeout (20 s).
TEST_CASE("sink group: SIGTERM while an avro request waits for its answer exits 0",
          "[integration][group][avro]") {
  SilentServer server;
  TempDir tmp;
  const std::string logs = tmp.file("logs"), backup = tmp.file("backup.out");
  fs::create_directories(logs);
  append_numbers(logs + "/app.log", 1, 10);
  AgentProcess agent("taildir_avro_file_failover.toml",
                     avro_options("lmdb", logs, backup, server.address(), "5s", "20s", "5s"));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] {
    return agent.metric(R"(sluice_avro_sink_connects_total{component="collector",type="avro"})") ==
           1.0;
  }));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(agent.terminate() == 0);
  const auto took = std::chrono::steady_clock::now() - t0;
  WARN("SIGTERM to exit with an avro request in flight: "
       << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took < 8s);
  CHECK(count_lines(backup) == 0);  // nothing was failed over: the batch stays in the channel
}

// Shutdown while the file sink writes: every line it wrote is whole, and a restart on the same
// state writes the rest, so that every line arrives.
TEST_CASE("sink group: SIGTERM while the file sink writes exits 0, a restart writes the rest",
          "[integration][group]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs"), state = tmp.file("state");
  const std::string out = tmp.file("out.log");
  fs::create_directories(logs);
  fs::create_directories(state);
  const long n = 200000;
  append_numbers(logs + "/app.log", 1, n);
  auto o = failover_options("lmdb", logs, out, state);
  o.vars["PRIMARY"] = out;  // the backup is never needed
  o.vars["BACKUP"] = tmp.file("unused.log");
  {
    AgentProcess agent("taildir_lmdb_failover.toml", o);
    REQUIRE(agent.wait_ready());
    REQUIRE(eventually(20s, [&] { return count_lines(out) > 0; }));
    CHECK(agent.terminate() == 0);
  }
  const std::string first = read_file(out);
  REQUIRE(!first.empty());
  CHECK(first.back() == '\n');  // no torn line
  WARN("lines written before SIGTERM: " << count_lines(out) << " of " << n);
  {
    AgentProcess agent("taildir_lmdb_failover.toml", o);
    REQUIRE(agent.wait_ready());
    // Wait for every line at the sink, not only for an empty channel and no lag: before the
    // restarted source's first scan (late on a loaded machine) both read 0 with nothing resumed.
    REQUIRE(eventually(60s, [&] {
      return count_lines(out) >= static_cast<std::size_t>(n) &&
             agent.metric(R"(sluice_channel_events{component="durable",type="lmdb"})") == 0.0;
    }));
    CHECK(agent.terminate() == 0);
  }
  std::set<long> seen;
  for (const auto& l : read_lines(out)) seen.insert(std::stol(l));
  CHECK(seen.size() == static_cast<std::size_t>(n));
  CHECK(*seen.begin() == 1);
  CHECK(*seen.rbegin() == n);
}

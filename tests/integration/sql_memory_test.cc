// Issue 13: the agent's memory with a high-cardinality GROUP BY (taildir -> pipeline -> null).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/agent_process.h"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// VmHWM of a live process, in kB (0 if unreadable).
long peak_rss_kb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

}  // namespace

TEST_CASE("sql: an agent with 100k keys per window and default channel bounds stays under 26 MB",
          "[integration][sql]") {
  TempDir tmp;
  const std::string in = tmp.file("in");
  std::filesystem::create_directories(in);
  {
    // 400k events over 10 s: 100k keys in [0 s, 5 s) and again in [5 s, 10 s), two events each;
    // then one at 10 s and one at 15 s, which close the two windows (watermark delay 5 s; the
    // window [10 s, 15 s) stays open).
    std::string text;
    text.reserve(400'002 * 28);
    for (int i = 0; i < 400'000; ++i) {
      text += "{\"t\":" + std::to_string(i / 40'000) + ",\"k\":\"k" + std::to_string(i % 100'000) +
              "\"}\n";
    }
    text += "{\"t\":10,\"k\":\"end\"}\n{\"t\":15,\"k\":\"end\"}\n";
    write_file(in + "/keys.log", text);
  }
  AgentProcess::Options o;
  o.vars = {{"IN", in}};
  AgentProcess agent("sql_many_keys.toml", o);
  REQUIRE(agent.wait_ready());
  const std::string rows =
      R"(sluice_sink_events_total{component="rows_out",type="null",outcome="ok"})";
  REQUIRE(eventually(60s, [&] { return agent.metric(rows).value_or(0) == 200'000.0; }));
  CHECK(agent.metric(R"(sluice_pipeline_rows_total{component="per_key",type="sql"})") == 200'000.0);
  CHECK(agent.metric(R"(sluice_pipeline_events_total{component="per_key",type="sql"})") ==
        400'002.0);
  const long hwm = peak_rss_kb(agent.pid());
  INFO("agent peak RSS " << hwm << " kB");
  CHECK(hwm > 0);
#ifndef SLUICE_SANITIZED  // ASan's shadow memory and quarantine make the RSS bound meaningless
  // Two windows of 100k groups are ~7 MB of state (the keys stored once, an 8-byte COUNT(*) and
  // 8 bytes of ids per group and window); the pipeline puts a closed window's rows 256 a loop
  // turn (the rest wait in the engine). Measured 18.7-18.9 MB (28 MB with a key table per window,
  // 24-byte count cells and 8,192 rows a turn); issue 13's target for its larger query is 40 MB.
  CHECK(hwm < 26 * 1024);
#endif
  CHECK(agent.terminate() == 0);
}

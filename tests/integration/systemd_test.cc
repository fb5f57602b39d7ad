// The agent under systemd's notify protocol: a real AF_UNIX datagram socket stands in for systemd
// (NOTIFY_SOCKET), and every message the agent sends is read back.

#include <catch2/catch.hpp>
#include <string>

#include "tests/support/agent_process.h"
#include "tests/support/notify_socket.h"
#include "tests/support/test_support.h"

using namespace sluice::test;
using namespace std::chrono_literals;

TEST_CASE("systemd: READY, STATUS with throughput, watchdog pings and STOPPING reach the socket",
          "[integration][systemd]") {
  TempDir tmp;
  NotifySocket notify(tmp.file("notify"));
  AgentProcess::Options o;
  o.vars = {{"COMMAND", R"(["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; done"])"},
            {"OUT", "/dev/null"},
            {"SHUTDOWN_TIMEOUT", "5s"},
            {"MAX_EVENTS", "10000"},
            {"SOURCE_EXTRA", ""},
            {"SINK_EXTRA", ""}};
  o.env = {{"NOTIFY_SOCKET", notify.path()}, {"WATCHDOG_USEC", "200000"}};
  AgentProcess agent("exec_file.toml", o);
  REQUIRE(agent.wait_ready());
  CHECK(eventually(5s, [&] { return notify.saw("READY=1"); }));
  CHECK(eventually(5s, [&] { return notify.saw("WATCHDOG=1"); }));  // every 100 ms here
  CHECK(eventually(5s, [&] { return notify.saw("STATUS=in "); }));
  // A later line counts what flowed since the one before.
  std::string flowing;
  CHECK(eventually(15s, [&] {
    for (const auto& m : notify.read()) {
      if (m.rfind("STATUS=in ", 0) == 0 && m.rfind("STATUS=in 0 ", 0) != 0 &&
          m.find(" events/s, out ") != std::string::npos &&
          m.find(" held in channels; ok") != std::string::npos)
        flowing = m;
    }
    return !flowing.empty();
  }));
  INFO(flowing);
  CHECK(agent.terminate() == 0);
  CHECK(notify.saw("STOPPING=1"));
}

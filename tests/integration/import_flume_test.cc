#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "tests/support/agent_process.h"
#include "tests/support/test_support.h"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

std::string flume_file(const std::string& name) {
  return source_dir() + "/tests/data/flume/" + name;
}

void replace(std::string& s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  REQUIRE(at != std::string::npos);
  s.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("import-flume: the scenario files translate and the web agent passes check",
          "[integration][import_flume]") {
  TempDir dir;
  auto [code, text] =
      run_sluice({"import-flume", flume_file("web-agent.properties"), "-o", dir.file("web.toml")});
  INFO(text);
  CHECK(code == 0);
  CHECK(text ==
        "sluice import-flume: agent 'a1': 23 settings carried, 0 not (kept as '# flume:' "
        "comments)\n");
  const std::string toml = read_file(dir.file("web.toml"));
  CHECK(toml.find("priority = { k1 = 10, k2 = 5 }\n") != std::string::npos);
  auto [check_code, check_text] = run_sluice({"check", "-c", dir.file("web.toml")});
  INFO(check_text);
  CHECK(check_code == 0);
  CHECK(check_text ==
        dir.file("web.toml") + ": ok (1 sources, 1 channels, 2 sinks, 1 sink groups)\n");

  // The collector needs the datahub sink; its translation is checked as text.
  auto [c_code, c_text] = run_sluice(
      {"import-flume", flume_file("collector.properties"), "-o", dir.file("collector.toml")});
  INFO(c_text);
  CHECK(c_code == 0);
  CHECK(c_text ==
        "sluice import-flume: agent 'a1': 20 settings carried, 4 not (kept as '# flume:' "
        "comments)\n");
  const std::string collector = read_file(dir.file("collector.toml"));
  CHECK(collector.find("type = \"datahub\"\n") != std::string::npos);
  CHECK(collector.find("fields = [{ name = \"line\", from = \"body\" }]\n") != std::string::npos);

  auto [e_code, e_text] = run_sluice(
      {"import-flume", flume_file("edge-agent.properties"), "-o", dir.file("edge.toml")});
  CHECK(e_code == 0);
  auto [ec_code, ec_text] = run_sluice({"check", "-c", dir.file("edge.toml")});
  INFO(ec_text);
  CHECK(ec_code == 0);
}

TEST_CASE("import-flume: bad input exits 2 with the reason", "[integration][import_flume]") {
  TempDir dir;
  write_file(dir.file("two.properties"), "a1.sources = r1\na2.sinks = k1\n");
  auto [code, text] = run_sluice({"import-flume", dir.file("two.properties")});
  CHECK(code == 2);
  CHECK(text == "sluice import-flume: " + dir.file("two.properties") +
                    ": the file defines several agents (a1, a2); choose one with --agent NAME\n");
  auto [m_code, m_text] = run_sluice({"import-flume", dir.file("missing.properties")});
  CHECK(m_code == 2);
  CHECK(m_text.find("cannot read") != std::string::npos);
  auto [u_code, u_text] = run_sluice({"import-flume"});
  CHECK(u_code == 2);
}

TEST_CASE("import-flume: a translated Flume agent runs and delivers every event",
          "[integration][import_flume]") {
  TempDir dir;
  write_file(dir.file("agent.properties"),
             "# exec -> memory -> file_roll, as in the Flume user guide\n"
             "agent.sources = seq\n"
             "agent.channels = mem\n"
             "agent.sinks = out\n"
             "agent.sources.seq.type = exec\n"
             "agent.sources.seq.command = seq 1 2000\n"
             "agent.sources.seq.channels = mem\n"
             "agent.channels.mem.type = memory\n"
             "agent.channels.mem.capacity = 500\n"
             "agent.channels.mem.transactionCapacity = 100\n"
             "agent.sinks.out.type = file_roll\n"
             "agent.sinks.out.channel = mem\n"
             "agent.sinks.out.sink.directory = " +
                 dir.path() +
                 "\n"
                 "agent.sinks.out.sink.rollInterval = 0\n");
  auto [code, text] = run_sluice({"import-flume", dir.file("agent.properties"), "--agent", "agent",
                                  "-o", dir.file("agent.toml")});
  INFO(text);
  REQUIRE(code == 0);
  std::string toml = read_file(dir.file("agent.toml"));
  INFO(toml);
  CHECK(toml.find("command = [\"seq\", \"1\", \"2000\"]\n") != std::string::npos);
  CHECK(toml.find("roll_interval") == std::string::npos);
  replace(toml, "# data_dir = \"/var/lib/sluice\"",
          "data_dir = \"" + dir.file("data") + "\"\nadmin = \"127.0.0.1:0\"");
  write_file(dir.file("agent.toml"), toml);
  ChildProcess agent({sluice_binary(), "run", "-c", dir.file("agent.toml")}, dir.file("agent.log"));
  const bool all = eventually(15s, [&] { return count_lines(dir.file("events.log")) == 2000; });
  INFO(read_file(dir.file("agent.log")));
  CHECK(all);
  const auto numbers = numbers_of(read_file(dir.file("events.log")));
  REQUIRE(numbers.size() == 2000);
  CHECK(numbers.front() == 1);
  CHECK(numbers.back() == 2000);
}

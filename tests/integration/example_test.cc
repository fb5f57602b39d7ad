#include <dirent.h>

#include <catch2/catch.hpp>

#include "tests/support/agent_process.h"

using namespace sluice::test;
using namespace std::chrono_literals;

TEST_CASE("the README's example prints to stdout and writes a file within seconds",
          "[integration][example]") {
  TempDir cwd;
  AgentProcess::Options o;
  o.config_file = source_dir() + "/conf/example.toml";
  o.cwd = cwd.path();
  AgentProcess agent("", o);
  REQUIRE(agent.wait_ready_at(cwd.file(".sluice-example/admin.addr")));
  REQUIRE(eventually(10s, [&] {
    return read_lines(agent.path("stdout")).size() >= 3 &&
           read_lines(cwd.file(".sluice-example/out.log")).size() >= 3;
  }));
  CHECK(agent.terminate() == 0);
  const auto printed = read_lines(agent.path("stdout"));
  const auto written = read_lines(cwd.file(".sluice-example/out.log"));
  REQUIRE(printed.size() >= 3);
  CHECK(printed[0].find("msg=\"request served\" seq=1") != std::string::npos);
  CHECK(printed[2].find("seq=3") != std::string::npos);
  // The same events reach both channels: the file holds them as JSON lines.
  REQUIRE(written.size() == printed.size());
  CHECK(written[0].find(R"("body":"20)") != std::string::npos);
  CHECK(written[0].find(R"(seq=1"})") != std::string::npos);
}

TEST_CASE("every configuration in conf/ passes sluice check", "[integration][example]") {
  const std::string dir = source_dir() + "/conf";
  DIR* d = opendir(dir.c_str());
  REQUIRE(d != nullptr);
  int checked = 0;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() < 5 || name.substr(name.size() - 5) != ".toml") continue;
    auto [code, text] = run_sluice({"check", "-c", dir + "/" + name});
    INFO(name << ": " << text);
    CHECK(code == 0);
    ++checked;
  }
  closedir(d);
  CHECK(checked >= 2);
}

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/support/agent_process.h"
#include "tests/support/test_support.h"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// A source that writes 100 lines a second into a memory channel drained by a failover group,
// and a taildir source into an lmdb channel drained by a file sink.
const char* kConfig = R"(
[agent]
name = "topagent"
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"

[sources.gen]
type = "exec"
command = ["/bin/sh", "-c", "while :; do echo tick; sleep 0.01; done"]
channel = "buf"

[sources.tail]
type = "taildir"
paths = ["@DIR@/*.log"]
channel = "disk"

[channels.buf]
type = "memory"
max_events = 5000

[channels.disk]
type = "lmdb"

[sinks.primary]
type = "null"

[sinks.backup]
type = "file"
path = "@DIR@/backup.out"

[sink_groups.out]
channel = "buf"
processor = "failover"
sinks = ["primary", "backup"]

[sinks.archive]
type = "file"
path = "@DIR@/archive.out"
channel = "disk"
)";

// The line of `text` that starts with `name` followed by a space, after the line that starts
// with `section` (a table's header) if given.
std::string row(const std::string& text, const std::string& name, const std::string& section = "") {
  std::size_t pos = section.empty() ? 0 : text.find("\n" + section + " ");
  if (pos == std::string::npos) return "";
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    if (line.rfind(name + " ", 0) == 0) return line;
    pos = end + 1;
  }
  return "";
}

std::vector<std::string> columns(const std::string& line) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

std::string shell(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

struct Agent {
  TempDir conf_dir;
  std::unique_ptr<AgentProcess> process;
  Agent() {
    write_file(conf_dir.file("top.toml"), kConfig);
    AgentProcess::Options o;
    o.config_file = conf_dir.file("top.toml");
    process = std::make_unique<AgentProcess>("", o);
    REQUIRE(process->wait_ready());
    append_numbers(process->path("app.log"), 1, 300);
  }
};

}  // namespace

TEST_CASE("top: --once prints one row per component with measured rates", "[integration][top]") {
  Agent agent;
  REQUIRE(eventually(10s, [&] { return count_lines(agent.process->path("archive.out")) == 300; }));
  auto [code, text] = run_sluice({"top", "--admin", agent.process->admin(), "--once"});
  INFO(text);
  REQUIRE(code == 0);
  CHECK(text.rfind("sluice top: topagent ", 0) == 0);
  for (const auto& line : [&] {
         std::vector<std::string> lines;
         std::size_t p = 0;
         while (p < text.size()) {
           auto e = text.find('\n', p);
           lines.push_back(text.substr(p, e - p));
           p = e + 1;
         }
         return lines;
       }()) {
    CHECK(line.size() <= 80);
  }
  const auto gen = columns(row(text, "gen"));
  REQUIRE(gen.size() == 8);
  CHECK(gen[1] == "exec");
  CHECK(gen[2] == "running");
  // About 100 lines a second (a loaded machine may run the shell loop slower).
  const double gen_rate = std::stod(gen[3]);
  CHECK(gen_rate > 5);
  CHECK(gen_rate < 150);
  const auto tail = columns(row(text, "tail"));
  REQUIRE(tail.size() == 8);
  CHECK(tail[1] == "taildir");
  CHECK(tail[7] == "0B");  // lag: everything read
  const auto buf = columns(row(text, "buf"));
  REQUIRE(buf.size() == 9);
  CHECK(buf[1] == "memory");
  const auto disk = columns(row(text, "disk"));
  REQUIRE(disk.size() == 9);
  CHECK(disk[1] == "lmdb");
  CHECK(disk[4] == "0");  // every tailed line delivered
  const auto out = columns(row(text, "out"));
  REQUIRE(out.size() == 7);
  CHECK(out[1] == "failover");
  CHECK(out[4] == "primary");
  CHECK(out[5] == "0");  // no switch
  CHECK(std::stod(out[3]) > 5);
  const auto primary = columns(row(text, "primary", "SINK  "));
  REQUIRE(primary.size() == 8);
  CHECK(primary[1] == "null");
  CHECK(std::stod(primary[3]) > 5);
  const auto archive = columns(row(text, "archive", "SINK  "));
  REQUIRE(archive.size() == 8);
  CHECK(archive[1] == "file");
  CHECK(archive[5] == "0");
  CHECK(text.find("Not exported by the agent: oldest event age") != std::string::npos);

  // -c finds the address in data_dir/admin.addr.
  auto [c_code, c_text] = run_sluice({"top", "-c", agent.process->config_path(), "--once"});
  INFO(c_text);
  CHECK(c_code == 0);
  CHECK(columns(row(c_text, "archive", "SINK  ")).size() == 8);
}

TEST_CASE("top: an unreachable agent is an error, not a blank screen", "[integration][top]") {
  auto [code, text] = run_sluice({"top", "--admin", "127.0.0.1:1", "--once"});
  CHECK(code == 1);
  CHECK(text.find("sluice top: cannot connect to 127.0.0.1:1") != std::string::npos);
}

TEST_CASE("top: the live view in tmux refreshes and q quits with the terminal restored",
          "[integration][top]") {
  if (shell("command -v tmux").empty()) {
    WARN("tmux is not installed: the interactive view is not tested (apt-get install tmux)");
    return;
  }
  Agent agent;
  TempDir dir;
  const std::string sock = "sluice-top-" + std::to_string(::getpid());
  const std::string tmux = "tmux -L " + sock + " ";
  // After top exits, the shell records the terminal modes and keeps the pane open.
  const std::string cmd = sluice_binary() + " top --admin " + agent.process->admin() +
                          "; stty -a > " + dir.file("stty") + "; sleep 60";
  shell(tmux + "new-session -d -s top -x 80 -y 30 '" + cmd + "'");
  std::string screen;
  const bool drawn = eventually(10s, [&] {
    screen = shell(tmux + "capture-pane -p -t top");
    return screen.find("SINK GROUP") != std::string::npos &&
           columns(row(screen, "gen")).size() == 8 && columns(row(screen, "gen"))[3] != "-";
  });
  INFO(screen);
  CHECK(drawn);
  CHECK(columns(row(screen, "out"))[4] == "primary");
  CHECK(screen.find("q quit") != std::string::npos);
  shell(tmux + "send-keys -t top s");
  CHECK(eventually(5s, [&] {
    return shell(tmux + "capture-pane -p -t top").find("(now by rate)") != std::string::npos;
  }));
  shell(tmux + "send-keys -t top q");
  const bool quit = eventually(5s, [&] { return !read_file(dir.file("stty")).empty(); });
  CHECK(quit);
  const std::string modes = read_file(dir.file("stty"));
  INFO(modes);
  // Canonical mode and echo are back on.
  CHECK(modes.find(" icanon") != std::string::npos);
  CHECK(modes.find(" echo ") != std::string::npos);
  shell(tmux + "kill-server 2>/dev/null");
}

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/agent_process.h"

using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

void append_numbers(const std::string& path, long first, long last) {
  std::string s;
  for (long i = first; i <= last; ++i) s += std::to_string(i) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
  ::close(fd);
}

AgentProcess::Options lmdb_options(const std::string& paths, const std::string& out,
                                   const std::string& state,
                                   const std::string& channel_extra = "") {
  AgentProcess::Options o;
  o.vars = {{"PATHS", paths}, {"OUT", out}, {"CHANNEL_EXTRA", channel_extra}};
  o.dir = state;
  return o;
}

std::vector<long> numbers_of(const std::string& text) {
  std::vector<long> v;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) v.push_back(std::stol(line));
  return v;
}

}  // namespace

TEST_CASE("taildir -> lmdb: kill -9 while writing keeps every line exactly once in the channel",
          "[integration][lmdb]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs"), state = tmp.file("state");
  fs::create_directories(logs);
  fs::create_directories(state);
  const std::string paths = "[\"" + logs + "/app.log*\"]";
  // Phase 1: the sink fails every write (/dev/full), so everything read stays in the channel.
  std::atomic<bool> writing{true};
  std::atomic<long> written{0};
  std::thread writer([&] {
    long n = 0;
    while (writing) {
      append_numbers(logs + "/app.log", n + 1, n + 50);
      n += 50;
      written = n;
      if (n % 5000 == 0) fs::rename(logs + "/app.log", logs + "/app.log." + std::to_string(n));
      std::this_thread::sleep_for(2ms);
    }
  });
  std::mt19937 rng(std::random_device{}());
  const int kills = soak() ? 100 : 5;
  for (int i = 0; i < kills; ++i) {
    AgentProcess agent("taildir_lmdb.toml", lmdb_options(paths, "/dev/full", state));
    REQUIRE(agent.wait_ready());
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 400)(rng)));
    CHECK(agent.signal_and_wait(SIGKILL) == -SIGKILL);
  }
  writing = false;
  writer.join();
  const long n = written;
  std::string conf;
  {
    AgentProcess agent("taildir_lmdb.toml", lmdb_options(paths, "/dev/full", state));
    REQUIRE(agent.wait_ready());
    REQUIRE(eventually(30s, [&] {
      return agent.metric(R"(sluice_channel_events{component="durable",type="lmdb"})")
                 .value_or(0) >= double(n);
    }));
    CHECK(agent.terminate() == 0);  // a durable channel keeps its contents at shutdown
    conf = read_file(agent.config_path());
  }
  write_file(tmp.file("dump.toml"), conf);
  auto [code, dumped] =
      run_sluice({"channel", "dump", "-c", tmp.file("dump.toml"), "--channel", "durable"});
  REQUIRE(code == 0);
  std::vector<long> in_channel = numbers_of(dumped);
  std::sort(in_channel.begin(), in_channel.end());
  const std::set<long> unique(in_channel.begin(), in_channel.end());
  WARN(kills << " kills: " << n << " lines written, " << in_channel.size() << " in the channel, "
             << in_channel.size() - unique.size() << " twice");
  CHECK(in_channel.size() == static_cast<std::size_t>(n));  // exactly once: no loss, no repeat
  CHECK(unique.size() == static_cast<std::size_t>(n));
  auto [scode, stats] = run_sluice({"channel", "stats", "-c", tmp.file("dump.toml")});
  CHECK(scode == 0);
  CHECK(stats.find("channel durable: " + std::to_string(n) + " events") == 0);

  // Phase 2: the sink works again: everything is delivered (at least once), and the channel
  // empties.
  const std::string out = tmp.file("out.log");
  AgentProcess agent("taildir_lmdb.toml", lmdb_options(paths, out, state));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(30s, [&] {
    return agent.metric(R"(sluice_channel_events{component="durable",type="lmdb"})") == 0.0;
  }));
  CHECK(agent.terminate() == 0);
  const std::vector<long> delivered = numbers_of(read_file(out));
  const std::set<long> got(delivered.begin(), delivered.end());
  CHECK(got.size() == static_cast<std::size_t>(n));
  auto [s2code, stats2] = run_sluice({"channel", "stats", "-c", tmp.file("dump.toml")});
  CHECK(s2code == 0);
  CHECK(stats2.find("channel durable: 0 events, 0 bytes, 0 records") == 0);
  CHECK(stats2.find("  cursor out: 0 records behind") != std::string::npos);
}

TEST_CASE("lmdb: a full channel pauses the source with the sink down, then drains",
          "[integration][lmdb]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs"), state = tmp.file("state");
  fs::create_directories(logs);
  fs::create_directories(state);
  append_numbers(logs + "/app.log", 1, 20000);
  const std::string paths = "[\"" + logs + "/*.log\"]";
  std::string conf;
  {
    AgentProcess agent(
        "taildir_lmdb.toml",
        lmdb_options(paths, "/dev/full", state, "max_events = 5000\ntransaction_events = 500"));
    REQUIRE(agent.wait_ready());
    REQUIRE(eventually(10s, [&] {
      return agent.metric(R"(sluice_channel_backpressure_total{component="durable",type="lmdb"})")
                 .value_or(0) > 0;
    }));
    CHECK(agent.metric(R"(sluice_channel_events{component="durable",type="lmdb"})").value_or(0) <=
          5000.0);
    CHECK(
        agent.metric(R"(sluice_taildir_lag_bytes{component="tail",type="taildir",group="default"})")
            .value_or(0) > 0.0);
    CHECK(agent.terminate() == 0);
  }
  const std::string out = tmp.file("out.log");
  AgentProcess agent(
      "taildir_lmdb.toml",
      lmdb_options(paths, out, state, "max_events = 5000\ntransaction_events = 500"));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(30s, [&] {
    const auto v = numbers_of(read_file(out));
    return std::set<long>(v.begin(), v.end()).size() == 20000;
  }));
  CHECK(agent.terminate() == 0);
}

// Truncations that the agent does not see as a shorter file: the file is truncated and written
// past the old offset before taildir reads it again (the agent was busy, stopped, or behind a full
// channel). The rescan is set to an hour, so that only what the reads themselves check counts.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "tests/support/agent_process.h"

using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kTruncations =
    R"(sluice_taildir_truncations_total{component="tail",type="taildir",group="default"})";
constexpr const char* kBytes =
    R"(sluice_taildir_bytes_total{component="tail",type="taildir",group="default"})";

std::string config(const TempDir& tmp) {
  const std::string conf = tmp.file("tail.toml");
  write_file(conf, R"([agent]
name = "it-taildir-truncate"
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"
shutdown_timeout = "20s"

[sources.tail]
type = "taildir"
paths = ["@LOGS@/*.log"]
channel = "buf"
rescan_interval = "1h"
poll_interval = "50ms"
checkpoint_interval = "100ms"
file_header = ""

[channels.buf]
type = "memory"
max_events = 50000
max_bytes = "64MiB"

[sinks.out]
type = "file"
path = "@OUT@"
channel = "buf"
)");
  return conf;
}

std::string numbers(long first, long last) {
  std::string s;
  for (long i = first; i <= last; ++i) s += std::to_string(i) + "\n";
  return s;
}

struct Counts {
  std::size_t missing = 0, repeats = 0, unexpected = 0;
};

// Every number of 1..n in `out` once?
Counts counts(const std::string& out, long n) {
  Counts c;
  std::set<long> seen;
  for (const auto& l : read_lines(out)) {
    char* end = nullptr;
    const long v = std::strtol(l.c_str(), &end, 10);
    if (l.empty() || *end != '\0' || v < 1 || v > n) {
      ++c.unexpected;  // a line read from the middle: the bytes before it were skipped
      continue;
    }
    if (!seen.insert(v).second) ++c.repeats;
  }
  for (long i = 1; i <= n; ++i) c.missing += seen.count(i) == 0 ? 1 : 0;
  return c;
}

// Truncates the file behind `fd` (opened with O_APPEND) and writes `content` at once.
void truncate_and_write(int fd, const std::string& content) {
  REQUIRE(::ftruncate(fd, 0) == 0);
  REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
}

}  // namespace

TEST_CASE("taildir: truncated and rewritten past the offset while the agent is stopped",
          "[integration][taildir]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs");
  fs::create_directories(logs);
  const std::string out = tmp.file("out.log");
  const std::string app = logs + "/app.log";
  append_numbers(app, 1, 1000);
  AgentProcess::Options o;
  o.config_file = config(tmp);
  o.vars = {{"LOGS", logs}, {"OUT", out}};
  AgentProcess agent("", o);
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 1000; }));
  const int fd = ::open(app.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  REQUIRE(fd >= 0);
  long last = 1000, lines = 1000;
  const int rounds = 5;
  for (int r = 1; r <= rounds; ++r) {
    // Stopped, the agent cannot read between the truncation and the rewrite: when it goes on,
    // the file is longer than its offset and only the first bytes tell that it is new content.
    const long count = lines * 3 / 2;
    REQUIRE(::kill(agent.pid(), SIGSTOP) == 0);
    truncate_and_write(fd, numbers(last + 1, last + count));
    REQUIRE(::kill(agent.pid(), SIGCONT) == 0);
    last += count;
    lines = count;
    INFO("round " << r << ": lines 1.." << last);
    REQUIRE(eventually(10s, [&] { return count_lines(out) >= static_cast<std::size_t>(last); }));
    CHECK(eventually(5s, [&] { return agent.metric(kTruncations) == static_cast<double>(r); }));
  }
  ::close(fd);
  CHECK(agent.terminate() == 0);
  const Counts c = counts(out, last);
  CHECK(c.missing == 0);
  CHECK(c.repeats == 0);
  CHECK(c.unexpected == 0);
}

TEST_CASE("taildir: truncated and at once rewritten past the offset, ten times",
          "[integration][taildir]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs");
  fs::create_directories(logs);
  const std::string out = tmp.file("out.log");
  const std::string app = logs + "/app.log";
  append_numbers(app, 1, 200);
  AgentProcess::Options o;
  o.config_file = config(tmp);
  o.vars = {{"LOGS", logs}, {"OUT", out}};
  AgentProcess agent("", o);
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 200; }));
  const int fd = ::open(app.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  REQUIRE(fd >= 0);
  long last = 200, lines = 200;
  const int rounds = 10;
  for (int r = 1; r <= rounds; ++r) {
    // Running: the agent may see the short file first, or only the rewritten one.
    const long count = lines * 3 / 2;
    truncate_and_write(fd, numbers(last + 1, last + count));
    last += count;
    lines = count;
    INFO("round " << r << ": lines 1.." << last);
    REQUIRE(eventually(10s, [&] { return count_lines(out) >= static_cast<std::size_t>(last); }));
    CHECK(eventually(5s, [&] { return agent.metric(kTruncations) == static_cast<double>(r); }));
  }
  ::close(fd);
  CHECK(agent.terminate() == 0);
  const Counts c = counts(out, last);
  CHECK(c.missing == 0);
  CHECK(c.repeats == 0);
  CHECK(c.unexpected == 0);
}

TEST_CASE("taildir: a file whose first bytes arrive a few at a time is not taken for truncated",
          "[integration][taildir]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs");
  fs::create_directories(logs);
  const std::string out = tmp.file("out.log");
  const std::string app = logs + "/app.log";
  write_file(app, "");
  AgentProcess::Options o;
  o.config_file = config(tmp);
  o.vars = {{"LOGS", logs}, {"OUT", out}};
  AgentProcess agent("", o);
  REQUIRE(agent.wait_ready());
  const int fd = ::open(app.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  REQUIRE(fd >= 0);
  // The fingerprint is shorter than fingerprint_bytes while these are read: each read may only
  // compare the bytes it knows, and lengthen what it knows.
  const std::string text = numbers(1, 3000);
  std::size_t at = 0;
  for (std::size_t piece : {1, 2, 3, 5, 8, 13, 40, 100, 200}) {
    REQUIRE(::write(fd, text.data() + at, piece) == static_cast<ssize_t>(piece));
    at += piece;
    INFO("after " << at << " bytes");
    REQUIRE(eventually(5s, [&] { return agent.metric(kBytes) == static_cast<double>(at); }));
  }
  const std::string rest = text.substr(at);
  REQUIRE(::write(fd, rest.data(), rest.size()) == static_cast<ssize_t>(rest.size()));
  ::close(fd);
  REQUIRE(eventually(10s, [&] { return count_lines(out) >= 3000; }));
  CHECK(agent.metric(kTruncations) == 0.0);
  CHECK(agent.terminate() == 0);
  const Counts c = counts(out, 3000);
  CHECK(c.missing == 0);
  CHECK(c.repeats == 0);
  CHECK(c.unexpected == 0);
}

TEST_CASE("taildir: a file of a few bytes rewritten past its offset while the agent is stopped",
          "[integration][taildir]") {
  // Found empty, its fingerprint was empty: only the bytes read since tell the new content apart.
  TempDir tmp;
  const std::string logs = tmp.file("logs");
  fs::create_directories(logs);
  const std::string out = tmp.file("out.log");
  const std::string app = logs + "/app.log";
  write_file(app, "");
  AgentProcess::Options o;
  o.config_file = config(tmp);
  o.vars = {{"LOGS", logs}, {"OUT", out}};
  AgentProcess agent("", o);
  REQUIRE(agent.wait_ready());
  append_numbers(app, 1, 2);
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 2; }));
  const int fd = ::open(app.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::kill(agent.pid(), SIGSTOP) == 0);
  truncate_and_write(fd, numbers(3, 100));
  REQUIRE(::kill(agent.pid(), SIGCONT) == 0);
  ::close(fd);
  REQUIRE(eventually(10s, [&] { return count_lines(out) >= 100; }));
  CHECK(eventually(5s, [&] { return agent.metric(kTruncations) == 1.0; }));
  CHECK(agent.terminate() == 0);
  const Counts c = counts(out, 100);
  CHECK(c.missing == 0);
  CHECK(c.repeats == 0);
  CHECK(c.unexpected == 0);
}

TEST_CASE("taildir: a saved position with a short fingerprint resumes and keeps following",
          "[integration][taildir]") {
  // A positions file as earlier versions wrote it for a file found empty: fp_len 0.
  TempDir tmp;
  const std::string logs = tmp.file("logs"), state = tmp.file("state");
  fs::create_directories(logs);
  fs::create_directories(state + "/data");
  const std::string out = tmp.file("out.log");
  const std::string app = logs + "/app.log";
  append_numbers(app, 1, 100);
  const std::uint64_t offset = numbers(1, 50).size();
  struct stat st {};
  REQUIRE(::stat(app.c_str(), &st) == 0);
  write_file(state + "/data/tail.positions.json",
             "[\n{\"path\":\"" + app + "\",\"dev\":" + std::to_string(st.st_dev) +
                 ",\"ino\":" + std::to_string(st.st_ino) +
                 ",\"fp_len\":0,\"fp_hash\":0,\"offset\":" + std::to_string(offset) + "}\n]\n");
  AgentProcess::Options o;
  o.config_file = config(tmp);
  o.vars = {{"LOGS", logs}, {"OUT", out}};
  o.dir = state;
  AgentProcess agent("", o);
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] { return count_lines(out) >= 50; }));
  append_numbers(app, 101, 2000);  // reads past the start compare the first bytes: unchanged
  REQUIRE(eventually(10s, [&] { return count_lines(out) >= 1950; }));
  CHECK(agent.metric(kTruncations) == 0.0);
  CHECK(agent.terminate() == 0);
  std::set<long> seen;
  std::size_t repeats = 0;
  for (const auto& l : read_lines(out)) repeats += seen.insert(std::stol(l)).second ? 0 : 1;
  CHECK(repeats == 0);
  CHECK(seen.size() == 1950);
  CHECK(*seen.begin() == 51);
  CHECK(*seen.rbegin() == 2000);
}

TEST_CASE("taildir -> lmdb: kill -9 and rename rotation never look like a truncation",
          "[integration][taildir]") {
  // The fingerprints stored with the channel's positions come from the bytes read: after every
  // restart each file must be found again as itself, and no read may take it for rewritten.
  TempDir tmp;
  const std::string logs = tmp.file("logs"), state = tmp.file("state");
  fs::create_directories(logs);
  fs::create_directories(state);
  const std::string out = tmp.file("out.log");
  AgentProcess::Options o;
  o.vars = {{"PATHS", "[\"" + logs + "/app.log*\"]"}, {"OUT", out}, {"CHANNEL_EXTRA", ""}};
  o.dir = state;
  std::atomic<bool> writing{true};
  std::atomic<long> written{0};
  std::thread writer([&] {
    long n = 0;
    while (writing) {
      append_numbers(logs + "/app.log", n + 1, n + 50);
      n += 50;
      written = n;
      if (n % 2000 == 0) fs::rename(logs + "/app.log", logs + "/app.log." + std::to_string(n));
      std::this_thread::sleep_for(2ms);
    }
  });
  std::mt19937 rng(std::random_device{}());
  for (int i = 0; i < 5; ++i) {
    AgentProcess agent("taildir_lmdb.toml", o);
    REQUIRE(agent.wait_ready());
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(50, 400)(rng)));
    CHECK(agent.signal_and_wait(SIGKILL) == -SIGKILL);
    CHECK(agent.stderr_text().find("was truncated") == std::string::npos);
  }
  writing = false;
  writer.join();
  const long n = written;
  AgentProcess agent("taildir_lmdb.toml", o);
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(30s, [&] { return counts(out, n).missing == 0; }));
  CHECK(agent.metric(kTruncations) == 0.0);
  CHECK(agent.terminate() == 0);
  CHECK(agent.stderr_text().find("was truncated") == std::string::npos);
  CHECK(counts(out, n).unexpected == 0);
}

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "tests/support/agent_process.h"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// True if `lines` are exactly "1", "2", ... "n".
bool is_sequence(const std::vector<std::string>& lines, std::size_t n) {
  if (lines.size() != n) return false;
  for (std::size_t i = 0; i < n; ++i) {
    if (lines[i] != std::to_string(i + 1)) return false;
  }
  return true;
}

AgentProcess::Options exec_options(const std::string& command, const std::string& out,
                                   std::string max_events = "10000",
                                   std::string shutdown_timeout = "10s",
                                   std::string source_extra = "", std::string sink_extra = "") {
  AgentProcess::Options o;
  o.vars = {{"COMMAND", command},           {"OUT", out},
            {"MAX_EVENTS", max_events},     {"SHUTDOWN_TIMEOUT", shutdown_timeout},
            {"SOURCE_EXTRA", source_extra}, {"SINK_EXTRA", sink_extra}};
  return o;
}

// The "id" of every event in a file sink's json output, in order.
std::vector<std::string> ids_of(const std::string& path) {
  std::vector<std::string> ids;
  for (const auto& line : read_lines(path)) {
    const auto at = line.find(R"("id":")");
    if (at != std::string::npos) ids.push_back(line.substr(at + 6, 16));
  }
  return ids;
}

// Pids of the live processes whose argv is exactly `argv` (zombies excluded).
std::vector<pid_t> processes_running(const std::vector<std::string>& argv) {
  std::string want;
  for (const auto& a : argv) want += a + '\0';
  std::vector<pid_t> pids;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (read_file(e.path().string() + "/cmdline") != want) continue;
    const std::string stat = read_file(e.path().string() + "/stat");
    const auto paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] == 'Z') continue;
    pids.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return pids;
}

// A `sleep` that no other test runs, found through /proc, and killed if a test leaves it behind.
struct Nap {
  std::string seconds = std::to_string(7'000'000 + std::random_device{}() % 1'000'000);
  std::vector<pid_t> pids() const { return processes_running({"sleep", seconds}); }
  ~Nap() {
    for (pid_t p : pids()) ::kill(p, SIGKILL);
  }
};

double elapsed_s(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

TEST_CASE("exec -> memory -> file delivers all N lines in order, metrics agree",
          "[integration][exec]") {
  TempDir tmp;
  const std::size_t n = 100'000;
  const std::string out = tmp.file("out.log");
  AgentProcess agent("exec_file.toml", exec_options(R"(["seq", "1", "100000"])", out));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(30s, [&] { return count_lines(out) >= n; }));
  CHECK(is_sequence(read_lines(out), n));
  REQUIRE(eventually(5s, [&] {
    return agent.metric(R"(sluice_sink_events_total{component="out",type="file",outcome="ok"})") ==
           double(n);
  }));
  CHECK(agent.metric(R"(sluice_source_events_total{component="gen",type="exec"})") == double(n));
  CHECK(agent.metric(R"(sluice_channel_put_events_total{component="buf",type="memory"})") ==
        double(n));
  CHECK(agent.metric(R"(sluice_channel_committed_events_total{component="buf",type="memory"})") ==
        double(n));
  CHECK(agent.metric(R"(sluice_channel_events{component="buf",type="memory"})") == 0.0);
  CHECK(agent.metric(R"(sluice_source_bytes_total{component="gen",type="exec"})") ==
        double(488'895));  // seq's digits, without newlines
  CHECK(agent.metric(R"(sluice_sink_events_total{component="out",type="file",outcome="retry"})") ==
        0.0);
  CHECK(agent.metric(R"(sluice_sink_delivery_seconds_count{component="out",type="file"})") > 0.0);

  // The exposition passes Prometheus' own checker.
  const std::string metrics_file = tmp.file("metrics.txt");
  write_file(metrics_file, http_get(agent.admin(), "/metrics").body);
  const std::string promtool =
      "promtool check metrics < " + metrics_file + " > " + tmp.file("promtool.out") + " 2>&1";
  const int rc = std::system(promtool.c_str());
  INFO(read_file(tmp.file("promtool.out")));
  CHECK(rc == 0);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("SIGTERM mid-stream: sources stop, the channel drains, exit 0 with nothing lost",
          "[integration][exec]") {
  // Short form: 3 rounds; SLUICE_SOAK=1: 30 rounds, each stopped after a random number of lines.
  const int rounds = soak() ? 30 : 3;
  std::mt19937 rng(std::random_device{}());
  for (int round = 0; round < rounds; ++round) {
    TempDir tmp;
    const std::string out = tmp.file("out.log");
    // A command that never ends: numbers as fast as the shell can print them.
    AgentProcess agent(
        "exec_file.toml",
        exec_options(R"(["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; done"])", out));
    REQUIRE(agent.wait_ready());
    const std::size_t wait_for = std::uniform_int_distribution<std::size_t>(1, 20000)(rng);
    REQUIRE(eventually(20s, [&] { return count_lines(out) >= wait_for; }));
    const auto before = count_lines(out);
    CHECK(agent.terminate() == 0);
    const auto lines = read_lines(out);
    INFO("round " << round << ": delivered " << lines.size() << " lines; " << before
                  << " before SIGTERM");
    CHECK(lines.size() >= before);
    CHECK(is_sequence(lines, lines.size()));  // 1..k without a gap: everything read was delivered
    CHECK(agent.stderr_text().find("stopped: every channel drained") != std::string::npos);
  }
}

TEST_CASE("a second signal exits at once with 1", "[integration][exec]") {
  TempDir tmp;
  // /dev/full fails every write, so the channel can never drain.
  AgentProcess agent("exec_file.toml",
                     exec_options(R"(["seq", "1", "100"])", "/dev/full", "10000", "60s"));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] {
    return agent.metric(R"(sluice_sink_events_total{component="out",type="file",outcome="retry"})")
               .value_or(0) > 0;
  }));
  // Nothing is lost while the sink fails: all 100 events wait in the channel.
  REQUIRE(eventually(10s, [&] {
    return agent.metric(R"(sluice_channel_events{component="buf",type="memory"})") == 100.0;
  }));
  CHECK(agent.metric(R"(sluice_sink_write_errors_total{component="out",type="file"})").value_or(0) >
        0);
  ::kill(agent.pid(), SIGTERM);
  CHECK_FALSE(
      eventually(300ms, [&] { return !agent.running(); }));  // still draining: it did not exit
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(agent.signal_and_wait(SIGTERM, 5s) == 1);  // the second signal: exit 1 at once
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  CHECK(agent.stderr_text().find("exiting at once: second signal (Terminated)") !=
        std::string::npos);
}

TEST_CASE("shutdown_timeout: an undrainable channel exits 1 after the timeout",
          "[integration][exec]") {
  TempDir tmp;
  AgentProcess agent("exec_file.toml",
                     exec_options(R"(["seq", "1", "100"])", "/dev/full", "10000", "500ms"));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] {
    return agent.metric(R"(sluice_channel_events{component="buf",type="memory"})") == 100.0;
  }));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(agent.terminate() == 1);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(agent.stderr_text().find(
            "shutdown_timeout (500ms) passed with 100 events still in memory channels") !=
        std::string::npos);
}

TEST_CASE("back-pressure: a full channel pauses the source, nothing is lost",
          "[integration][exec]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  AgentProcess::Options o;
  o.vars = {{"N", "20000"}};
  o.stdout_fd = fds[1];
  AgentProcess agent("exec_stdout.toml", o);
  ::close(fds[1]);
  REQUIRE(agent.wait_ready());
  // Nobody reads the pipe yet: the stdout sink blocks, the channel fills to its bound and refuses
  // puts.
  REQUIRE(eventually(10s, [&] {
    return agent.metric(R"(sluice_channel_backpressure_total{component="small",type="memory"})")
               .value_or(0) > 0;
  }));
  CHECK(agent.metric(R"(sluice_channel_events{component="small",type="memory"})").value_or(1e9) <=
        100.0);
  const double read_so_far =
      agent.metric(R"(sluice_source_events_total{component="gen",type="exec"})").value_or(0);
  CHECK(read_so_far < 20000);  // the source paused instead of buffering everything
  std::string got;
  std::thread reader([&] {
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<std::size_t>(n));
  });
  REQUIRE(eventually(20s, [&] {
    return agent.metric(
               R"(sluice_sink_events_total{component="console",type="stdout",outcome="ok"})") ==
           20000.0;
  }));
  CHECK(agent.terminate() == 0);
  reader.join();
  ::close(fds[0]);
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (std::size_t nl; (nl = got.find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(got.substr(start, nl - start));
  }
  CHECK(is_sequence(lines, 20000));
}

TEST_CASE("stdin -> memory -> file: every line, then exit 0 at end of input",
          "[integration][stdin]") {
  TempDir tmp;
  std::string input;
  for (int i = 1; i <= 20000; ++i) input += std::to_string(i) + "\n";
  input += std::string(70'000, 'L') + "\r\n";  // over max_line_bytes (64KiB): split in two, counted
  input += "last line without newline";
  write_file(tmp.file("in.txt"), input);
  AgentProcess::Options o;
  o.stdin_file = tmp.file("in.txt");
  AgentProcess agent("stdin_file.toml", o);
  CHECK(agent.wait_exit(20s) == 0);
  const auto lines = read_lines(agent.path("out.log"));
  REQUIRE(lines.size() == 20003);
  CHECK(is_sequence({lines.begin(), lines.begin() + 20000}, 20000));
  CHECK(lines[20000] == std::string(65536, 'L'));
  CHECK(lines[20001] == std::string(70'000 - 65536, 'L'));
  CHECK(lines[20002] == "last line without newline");
  CHECK(agent.stderr_text().find("stdin in: end of input") != std::string::npos);
}

TEST_CASE("a broken configuration exits 2 with every error, exactly", "[integration][config]") {
  AgentProcess agent("broken.toml", {});
  CHECK(agent.wait_exit(10s) == 2);
  const std::string conf = agent.config_path();
  const std::string expected =
      conf +
      ":4:20: agent.shutdown_timeout: \"ten seconds\" is not a duration (e.g. \"250ms\", "
      "\"5s\")\n" +
      conf + ":9:1: sources.gen.channel: unknown channel 'bufer' (did you mean 'buf'?)\n" + conf +
      ":10:1: sources.gen.restart_throtle: unknown key (did you mean 'restart_throttle'?)\n" +
      conf + ":15:1: sinks.out: missing required key 'path'\n" +
      "sluice: 4 configuration errors, nothing started\n";
  CHECK(agent.stderr_text() == expected);
  auto [code, text] = run_sluice({"check", "-c", conf});
  CHECK(code == 2);
  CHECK(text == expected);
}

TEST_CASE("sluice check and sluice version", "[integration][cli]") {
  auto [code, text] = run_sluice({"check", "-c", source_dir() + "/conf/example.toml"});
  CHECK(code == 0);
  CHECK(text ==
        source_dir() + "/conf/example.toml: ok (1 sources, 2 channels, 2 sinks, 2 sink groups)\n");
  auto [vcode, vtext] = run_sluice({"version"});
  CHECK(vcode == 0);
  CHECK(vtext.rfind("sluice ", 0) == 0);
  auto [mcode, mtext] = run_sluice({"check", "-c", "/nonexistent/sluice.toml"});
  CHECK(mcode == 2);
  CHECK(mtext ==
        "/nonexistent/sluice.toml: cannot read the configuration file: No such file or directory\n"
        "sluice: 1 configuration error, nothing started\n");
}

TEST_CASE("admin endpoint: health, readiness, status, and clear errors", "[integration][admin]") {
  TempDir tmp;
  AgentProcess agent("exec_file.toml", exec_options(R"(["seq", "1", "10"])", tmp.file("out.log")));
  REQUIRE(agent.wait_ready());
  CHECK(read_file(agent.path("data/admin.addr")) == agent.admin() + "\n");
  CHECK(http_get(agent.admin(), "/healthz").status == 200);
  CHECK(http_get(agent.admin(), "/readyz").body == "ready\n");
  REQUIRE(eventually(5s, [&] { return count_lines(tmp.file("out.log")) == 10; }));
  // The source is "finished" once seq has exited and its pipes are closed, which may come just
  // after its lines.
  HttpReply status;
  CHECK(eventually(5s, [&] {
    status = http_get(agent.admin(), "/api/v1/status");
    return status.body.find(R"("state":"finished")") != std::string::npos;
  }));
  CHECK(status.status == 200);
  CHECK(status.headers.find("Content-Type: application/json") != std::string::npos);
  CHECK(status.body.find(R"("agent":{"name":"it-exec-file","version":")") != std::string::npos);
  CHECK(
      status.body.find(
          R"({"name":"gen","kind":"source","type":"exec","state":"finished","events_total":10,)") !=
      std::string::npos);
  CHECK(status.body.find(
            R"({"name":"out","kind":"sink","type":"file","state":"running","events_ok":10,)") !=
        std::string::npos);
  CHECK(http_get(agent.admin(), "/nope").status == 404);
  const auto post = http_request(
      agent.admin(),
      "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  CHECK(post.status == 405);
  CHECK(post.headers.find("Allow: GET, HEAD") != std::string::npos);
  CHECK(http_request(agent.admin(), "NOT HTTP AT ALL\r\n\r\n").status == 400);
  CHECK(agent.metric(R"(sluice_http_bad_requests_total{component="admin",type="admin"})") == 1.0);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("exec: restart after exit with a throttle, stderr lines are logged and counted",
          "[integration][exec]") {
  TempDir tmp;
  const std::string out = tmp.file("out.log");
  AgentProcess agent("exec_file.toml",
                     exec_options(R"(["sh", "-c", "echo line; echo oops >&2"])", out, "10000",
                                  "10s", "restart = true\nrestart_throttle = \"100ms\""));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] { return count_lines(out) >= 4; }));
  CHECK(agent.metric(R"(sluice_source_restarts_total{component="gen",type="exec"})").value_or(0) >=
        3);
  CHECK(agent.metric(R"(sluice_source_stderr_lines_total{component="gen",type="exec"})")
            .value_or(0) >= 4);
  CHECK(agent.terminate() == 0);
  CHECK(agent.stderr_text().find("exec gen: stderr: oops") != std::string::npos);
  for (const auto& l : read_lines(out)) CHECK(l == "line");
}

TEST_CASE("exec: a command that cannot run is a clear start-up error", "[integration][exec]") {
  TempDir tmp;
  AgentProcess agent("exec_file.toml",
                     exec_options(R"(["/nonexistent/cmd"])", tmp.file("out.log")));
  CHECK(agent.wait_exit(10s) == 1);
  CHECK(agent.stderr_text().find(
            "cannot start: sources.gen: exec gen: cannot run '/nonexistent/cmd': ENOENT") !=
        std::string::npos);
}

TEST_CASE("file sink: rolls by size and by time, nothing lost across files",
          "[integration][file]") {
  TempDir tmp;
  const std::string out = tmp.file("out.log");
  SECTION("by size") {
    AgentProcess agent("exec_file.toml", exec_options(R"(["seq", "1", "20000"])", out, "10000",
                                                      "10s", "", "roll_bytes = \"8KiB\""));
    REQUIRE(agent.wait_ready());
    REQUIRE(eventually(10s, [&] {
      return agent.metric(
                 R"(sluice_sink_events_total{component="out",type="file",outcome="ok"})") ==
             20000.0;
    }));
    CHECK(
        agent.metric(R"(sluice_sink_file_rolls_total{component="out",type="file"})").value_or(0) >=
        5);
    CHECK(agent.terminate() == 0);
  }
  SECTION("by time") {
    AgentProcess agent(
        "exec_file.toml",
        exec_options(R"(["sh", "-c", "for i in $(seq 1 12); do echo $i; sleep 0.05; done"])", out,
                     "10000", "10s", "", "roll_interval = \"100ms\"\nfsync = \"batch\""));
    REQUIRE(agent.wait_ready());
    REQUIRE(eventually(10s, [&] {
      return agent.metric(
                 R"(sluice_sink_events_total{component="out",type="file",outcome="ok"})") == 12.0;
    }));
    CHECK(
        agent.metric(R"(sluice_sink_file_rolls_total{component="out",type="file"})").value_or(0) >=
        2);
    CHECK(agent.terminate() == 0);
  }
  // Every rolled file is PATH.<stamp>[.N]; read them in roll order, then the current file.
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path())) {
    const std::string name = e.path().filename().string();
    if (name.rfind("out.log.", 0) == 0) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end(), [](const std::string& a, const std::string& b) {
    return std::filesystem::last_write_time(a) < std::filesystem::last_write_time(b) ||
           (std::filesystem::last_write_time(a) == std::filesystem::last_write_time(b) && a < b);
  });
  files.push_back(out);
  std::vector<std::string> all;
  for (const auto& f : files) {
    const auto lines = read_lines(f);
    all.insert(all.end(), lines.begin(), lines.end());
  }
  std::vector<std::string> sorted = all;
  std::sort(sorted.begin(), sorted.end(),
            [](const std::string& a, const std::string& b) { return std::stol(a) < std::stol(b); });
  CHECK(is_sequence(sorted, sorted.size()));  // every number exactly once
  CHECK((sorted.size() == 20000 || sorted.size() == 12));
}

TEST_CASE("SIGHUP of an unchanged file reloads nothing, a busy admin port stops the start",
          "[integration][admin]") {
  TempDir tmp;
  AgentProcess agent("exec_file.toml", exec_options(R"(["seq", "1", "10"])", tmp.file("out.log")));
  REQUIRE(agent.wait_ready());
  ::kill(agent.pid(), SIGHUP);
  REQUIRE(eventually(5s, [&] {
    return agent.stderr_text().find(
               "reload (SIGHUP) done: generation 2 runs (no component "
               "changed)") != std::string::npos;
  }));
  CHECK(agent.running());
  CHECK(http_get(agent.admin(), "/readyz").status == 200);
  // A second agent configured on the first one's admin address cannot start.
  std::string conf = read_file(agent.config_path());
  const auto at = conf.find("admin = \"127.0.0.1:0\"");
  REQUIRE(at != std::string::npos);
  conf.replace(at, std::string("admin = \"127.0.0.1:0\"").size(),
               "admin = \"" + agent.admin() + "\"");
  const auto data = conf.find(agent.dir());
  REQUIRE(data != std::string::npos);
  write_file(tmp.file("second.toml"), conf);
  AgentProcess::Options o;
  o.config_file = tmp.file("second.toml");
  AgentProcess second("", o);
  CHECK(second.wait_exit(10s) == 1);
  CHECK(second.stderr_text().find("cannot start: agent.admin: listen " + agent.admin() +
                                  ": EADDRINUSE") != std::string::npos);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("event ids: exec ids differ between runs, taildir ids of the same bytes do not",
          "[integration][exec][id]") {
  TempDir tmp;
  // The same command twice, each run in a fresh agent: the same output, so only the ids can tell
  // the events apart, and a receiver that de-duplicates on them must not drop the second run.
  std::vector<std::string> runs[2];
  for (int run = 0; run < 2; ++run) {
    const std::string out = tmp.file("exec" + std::to_string(run) + ".json");
    AgentProcess agent("exec_file.toml", exec_options(R"(["seq", "1", "5"])", out, "10000", "10s",
                                                      "", "format = \"json\""));
    REQUIRE(agent.wait_ready());
    REQUIRE(eventually(10s, [&] { return count_lines(out) == 5; }));
    CHECK(agent.terminate() == 0);
    runs[run] = ids_of(out);
  }
  REQUIRE(runs[0].size() == 5);
  REQUIRE(runs[1].size() == 5);
  std::set<std::string> all(runs[0].begin(), runs[0].end());
  all.insert(runs[1].begin(), runs[1].end());
  INFO("run 1: " << runs[0][0] << " ... run 2: " << runs[1][0]);
  CHECK(all.size() == 10);

  // The same for a network source: the same request to two runs of an http source.
  std::vector<std::string> http_runs[2];
  for (int run = 0; run < 2; ++run) {
    const std::string out = tmp.file("http" + std::to_string(run) + ".json");
    AgentProcess::Options o;
    o.vars = {{"EXTRA", ""},
              {"CHANNEL", "type = \"memory\""},
              {"SINK", "file"},
              {"SINK_EXTRA", "path = \"" + out + "\""}};
    AgentProcess agent("http_file.toml", o);
    REQUIRE(agent.wait_ready());
    const std::string body = "a\nb\nc\n";
    const auto r =
        http_request(agent.source_address("web"),
                     "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                     "Content-Length: " +
                         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    CHECK(r.status == 200);
    REQUIRE(eventually(10s, [&] { return count_lines(out) == 3; }));
    CHECK(agent.terminate() == 0);
    http_runs[run] = ids_of(out);
  }
  REQUIRE(http_runs[0].size() == 3);
  std::set<std::string> http_ids(http_runs[0].begin(), http_runs[0].end());
  http_ids.insert(http_runs[1].begin(), http_runs[1].end());
  CHECK(http_ids.size() == 6);

  // A file read again from its head (fresh state, same bytes): the same ids, so that the
  // receiver can recognise the re-read.
  const std::string log = tmp.file("app.log");
  append_numbers(log, 1, 5);
  std::vector<std::string> tail_runs[2];
  for (int run = 0; run < 2; ++run) {
    const std::string out = tmp.file("tail" + std::to_string(run) + ".json");
    AgentProcess::Options o;
    o.vars = {{"OUT", out}, {"EXTRA", "paths = [\"" + log + "\"]"}};
    AgentProcess agent("taildir_json.toml", o);
    REQUIRE(agent.wait_ready());
    REQUIRE(eventually(10s, [&] { return count_lines(out) == 5; }));
    CHECK(agent.terminate() == 0);
    tail_runs[run] = ids_of(out);
  }
  REQUIRE(tail_runs[0].size() == 5);
  CHECK(tail_runs[0] == tail_runs[1]);
  CHECK(std::set<std::string>(tail_runs[0].begin(), tail_runs[0].end()).size() == 5);
}

TEST_CASE("exec: SIGTERM ends a child that outlived the command and holds its output",
          "[integration][exec][stop]") {
  TempDir tmp;
  Nap nap;
  const std::string out = tmp.file("out.log");
  AgentProcess agent("exec_file.toml",
                     exec_options(R"(["sh", "-c", "sleep )" + nap.seconds + R"( & echo started"])",
                                  out, "10000", "10s", "kill_timeout = \"1s\""));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 1 && nap.pids().size() == 1; }));
  const pid_t child = nap.pids()[0];
  // The shell has exited; what it left behind is reported, by pid, and counted.
  REQUIRE(eventually(5s, [&] {
    return agent.metric(R"(sluice_source_exec_leftover_processes{component="gen",type="exec"})") ==
           1.0;
  }));
  // (Named by pid: the report may catch the child between fork and exec, still called "sh".)
  CHECK(agent.stderr_text().find("processes it started still run: pid " + std::to_string(child) +
                                 " (") != std::string::npos);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(agent.terminate() == 0);
  const double took = elapsed_s(t0);
  INFO(agent.stderr_text());
  CHECK(took < 2.5);  // kill_timeout (1s) + a margin, not shutdown_timeout (10s)
  CHECK(eventually(2s, [&] { return nap.pids().empty(); }));
  CHECK(read_lines(out) == std::vector<std::string>{"started"});
}

TEST_CASE("exec: a child that ignores SIGTERM is killed after kill_timeout, exit 0",
          "[integration][exec][stop]") {
  TempDir tmp;
  Nap nap;
  const std::string out = tmp.file("out.log");
  AgentProcess agent("exec_file.toml", exec_options(R"(["sh", "-c", "trap '' TERM; sleep )" +
                                                        nap.seconds + R"( & echo started"])",
                                                    out, "10000", "10s", "kill_timeout = \"1s\""));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 1 && nap.pids().size() == 1; }));
  const pid_t child = nap.pids()[0];
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(agent.terminate() == 0);
  const double took = elapsed_s(t0);
  INFO(agent.stderr_text());
  CHECK(took >= 0.9);
  CHECK(took < 2.5);
  CHECK(eventually(2s, [&] { return nap.pids().empty(); }));
  CHECK(agent.stderr_text().find("still running after kill_timeout (1s), sending SIGKILL: pid " +
                                 std::to_string(child) + " (sleep, in its process group)") !=
        std::string::npos);
}

TEST_CASE("exec: a setsid child that holds the output is found, named and stopped",
          "[integration][exec][stop]") {
  TempDir tmp;
  Nap nap;
  const std::string out = tmp.file("out.log");
  AgentProcess agent("exec_file.toml", exec_options(R"(["sh", "-c", "setsid sleep )" + nap.seconds +
                                                        R"( & echo started"])",
                                                    out, "10000", "10s", "kill_timeout = \"1s\""));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 1 && nap.pids().size() == 1; }));
  const pid_t child = nap.pids()[0];
  REQUIRE(eventually(5s, [&] {
    return agent.metric(R"(sluice_source_exec_leftover_processes{component="gen",type="exec"})") ==
           1.0;
  }));
  CHECK(agent.stderr_text().find("processes it started still run: pid " + std::to_string(child) +
                                 " (") != std::string::npos);
  const std::string named = "pid " + std::to_string(child) + " (sleep, left its process group)";
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(agent.terminate() == 0);
  const double took = elapsed_s(t0);
  INFO(agent.stderr_text());
  CHECK(took < 2.5);
  CHECK(eventually(2s, [&] { return nap.pids().empty(); }));
  CHECK(agent.stderr_text().find("sending SIGTERM to " + named) != std::string::npos);
}

TEST_CASE("exec: a setsid daemon with its output closed is found by its mark and stopped",
          "[integration][exec][stop]") {
  TempDir tmp;
  Nap nap;
  const std::string out = tmp.file("out.log");
  AgentProcess agent("exec_file.toml", exec_options(R"(["sh", "-c", "setsid sleep )" + nap.seconds +
                                                        R"( >/dev/null 2>&1 & echo started"])",
                                                    out, "10000", "10s", "kill_timeout = \"1s\""));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 1 && nap.pids().size() == 1; }));
  const pid_t child = nap.pids()[0];
  // The output closed with the shell's exit: the source is done, and reports what is left.
  REQUIRE(eventually(5s, [&] {
    return agent.metric(R"(sluice_source_exec_leftover_processes{component="gen",type="exec"})") ==
           1.0;
  }));
  INFO(agent.stderr_text());
  CHECK(agent.stderr_text().find("processes it started still run: pid " + std::to_string(child) +
                                 " (") != std::string::npos);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(agent.terminate() == 0);
  CHECK(elapsed_s(t0) < 2.5);
  CHECK(eventually(2s, [&] { return nap.pids().empty(); }));
  CHECK(agent.stderr_text().find("sending SIGTERM to pid " + std::to_string(child) +
                                 " (sleep, left its process group, not holding the output)") !=
        std::string::npos);
}

TEST_CASE("log injection: a parse-error warning escapes the input it quotes",
          "[integration][exec][log]") {
  TempDir tmp;
  const std::string out = tmp.file("out.log");
  // A line that is not JSON, with a carriage return, a forged log line and terminal escapes (clear
  // screen, set the window title), and the same on stderr.
  // (A TOML literal string, so that the shell's printf sees the backslashes.)
  const std::string script =
      R"(printf '{not json\r2026-12-01T00:00:00.000Z error forged\033[2J\033]0;owned\007\n'; )"
      R"(printf 'oops\033[31m red\n' >&2)";
  AgentProcess agent("exec_file.toml", exec_options("[\"sh\", \"-c\", '''" + script + "''']", out,
                                                    "10000", "10s", "format = \"json\""));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 1; }));
  REQUIRE(eventually(
      5s, [&] { return agent.stderr_text().find("exec gen: stderr: oops") != std::string::npos; }));
  CHECK(agent.terminate() == 0);
  const std::string log = agent.stderr_text();
  INFO(log);
  CHECK(
      log.find(
          R"(did not parse (json_syntax at offset 0): {not json\r2026-12-01T00:00:00.000Z error forged\x1b[2J\x1b]0;owned\x07)") !=
      std::string::npos);
  CHECK(log.find(R"(exec gen: stderr: oops\x1b[31m red)") != std::string::npos);
  CHECK(log.find('\x1b') == std::string::npos);
  CHECK(log.find('\r') == std::string::npos);
  CHECK(log.find('\x07') == std::string::npos);

  // A Flume JSON body can carry a raw newline: the forged line stays on the warning's own line.
  AgentProcess::Options o;
  o.vars = {{"EXTRA", "format = \"json\""},
            {"CHANNEL", "type = \"memory\""},
            {"SINK", "file"},
            {"SINK_EXTRA", "path = \"" + tmp.file("http.json") + "\""}};
  AgentProcess http("http_file.toml", o);
  REQUIRE(http.wait_ready());
  const std::string body =
      R"([{"body":"not json\n2026-12-01T00:00:00.000Z [error] forged\u001b[2J"}])";
  const auto r =
      http_request(http.source_address("web"),
                   "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: " +
                       std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  CHECK(r.status == 200);
  REQUIRE(eventually(10s, [&] { return count_lines(tmp.file("http.json")) == 1; }));
  CHECK(http.terminate() == 0);
  const std::string hlog = http.stderr_text();
  INFO(hlog);
  CHECK(hlog.find(R"(: not json\n2026-12-01T00:00:00.000Z [error] forged\x1b[2J)") !=
        std::string::npos);
  CHECK(hlog.find("\n2026-12-01T00:00:00.000Z [error] forged") == std::string::npos);
  CHECK(hlog.find('\x1b') == std::string::npos);
}

TEST_CASE("rate-limited warnings: what a burst held back is summarised, with its count",
          "[integration][exec][log]") {
  TempDir tmp;
  const std::string out = tmp.file("out.log");
  // 300 stderr lines at once: 5 are logged (the burst), the other 295 are one summary line, which
  // the agent logs once the window ends or, at the latest, when it exits.
  AgentProcess agent("exec_file.toml",
                     exec_options(R"(["sh", "-c", "seq 1 300 >&2; echo done"])", out));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(10s, [&] {
    return agent.metric(R"(sluice_source_stderr_lines_total{component="gen",type="exec"})") ==
           300.0;
  }));
  CHECK(agent.terminate() == 0);
  const std::string log = agent.stderr_text();
  INFO(log);
  std::size_t logged = 0;
  for (std::size_t at = 0; (at = log.find("warning exec gen: stderr: ", at)) != std::string::npos;
       ++at) {
    ++logged;
  }
  CHECK(logged == 5);
  CHECK(log.find("warning 295 similar messages suppressed within 10s; the first: exec gen: "
                 "stderr: 6\n") != std::string::npos);
}

TEST_CASE(
    "rate-limited warnings: lmdb lagging = detach logs a burst of drops as 5 lines and a "
    "summary",
    "[integration][exec][log]") {
  TempDir tmp;
  AgentProcess::Options o;
  o.vars = {{"COMMAND", "seq 1 20000"},
            {"GOOD", tmp.file("good.log")},
            {"CHANNEL_EXTRA", "max_events = 2000\ntransaction_events = 200"},
            {"BAD_EXTRA", "lagging = \"detach\""}};
  AgentProcess agent("lmdb_groups.toml", o);
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(30s, [&] { return count_lines(tmp.file("good.log")) == 20000; }));
  const double dropped =
      agent.metric(R"(sluice_channel_dropped_events_total{component="durable",type="lmdb"})")
          .value_or(0);
  CHECK(agent.terminate() == 0);
  const std::string log = agent.stderr_text();
  INFO(log);
  std::size_t lines = 0;
  for (std::size_t at = 0;
       (at = log.find("warning lmdb channel durable: full; dropped", at)) != std::string::npos;
       ++at) {
    ++lines;
  }
  INFO("dropped " << dropped << " events");
  CHECK(dropped > 0);
  CHECK(lines >= 1);
  CHECK(lines <= 5 * 4);  // at most a burst of 5 per 10 s window over the run, not one per drop
  CHECK(log.find("similar messages suppressed within 10s; the first: lmdb channel durable: full; "
                 "dropped") != std::string::npos);
}

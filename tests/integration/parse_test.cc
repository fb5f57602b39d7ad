#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/support/agent_process.h"

using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

AgentProcess::Options parse_options(const std::string& paths, const std::string& out,
                                    const std::string& extra) {
  AgentProcess::Options o;
  o.vars = {{"PATHS", paths}, {"OUT", out}, {"EXTRA", extra}};
  return o;
}

std::size_t count(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

void append(const std::string& path, std::string_view text) {
  std::ofstream f(path, std::ios::app | std::ios::binary);
  f << text;
}

}  // namespace

TEST_CASE("parse: the game events scenario, JSON with local event time", "[integration][parse]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs"), out = tmp.file("out.json");
  fs::create_directories(logs);
  fs::copy_file(std::string(SLUICE_SOURCE_DIR) + "/tests/data/game_events.ndjson",
                logs + "/game.log");
  append(logs + "/game.log", "{\"create_time\": \"not a time\", \"uid\": 1}\n{truncated\n");
  AgentProcess agent("taildir_parse.toml", parse_options("[\"" + logs + "/*.log\"]", out, R"(
format = "json"
on_parse_error = "dead_letter"
timestamp = { field = "create_time", format = "%Y-%m-%d %H:%M:%S.%f", timezone = "Asia/Shanghai" }
[[sources.tail.interceptors]]
type = "drop_fields"
fields = ["role"]
)"));
  REQUIRE(agent.wait_ready());
  REQUIRE(
      eventually(20s, [&] { return count_lines(out) == 2001 && count_lines(out + ".dead") == 1; }));
  const std::string text = read_file(out);
  // The first event: 2025-06-24 20:30:00.020 in Shanghai is 12:30:00.020 UTC.
  CHECK(text.find(R"({"timestamp":"2025-06-24T12:30:00.020000000Z")") == 0);
  CHECK(text.find(R"("game_id":"g3","server_id":"s41","uid":148950274})") != std::string::npos);
  CHECK(count(text, "\"role\"") == 0);
  const std::string dead = read_file(out + ".dead");
  CHECK(dead.find(R"("parse_error":"json_syntax")") != std::string::npos);
  CHECK(dead.find(R"("body":"{truncated")") != std::string::npos);
  const std::string labels = R"(component="tail",type="taildir")";
  CHECK(agent.metric("sluice_source_parse_errors_total{" + labels + R"(,reason="json_syntax"})") ==
        1.0);
  CHECK(agent.metric("sluice_source_timestamp_errors_total{" + labels + "}") == 1.0);
  CHECK(agent.terminate() == 0);
  CHECK(agent.stderr_text().find("did not parse (json_syntax at offset 266137)") !=
        std::string::npos);
}

TEST_CASE("parse: combined access logs with a regex, filtered, with headers",
          "[integration][parse]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs"), out = tmp.file("out.json");
  fs::create_directories(logs);
  std::string lines;
  for (int i = 0; i < 100; ++i) {
    lines += "10.0.0." + std::to_string(i % 7) + " - - [24/Jun/2025:14:30:" + (i < 10 ? "0" : "") +
             std::to_string(i % 60) + " +0200] \"GET /p/" + std::to_string(i) + " HTTP/1.1\" " +
             (i % 10 == 0 ? "500" : "200") + " 123 \"-\" \"curl/7.88\"\n";
  }
  lines += "garbage line\n";
  write_file(logs + "/access.log", lines);
  AgentProcess agent("taildir_parse.toml", parse_options("[\"" + logs + "/*.log\"]", out, R"(
format = "regex"
pattern = "combined"
on_parse_error = "dead_letter"
timestamp = { field = "time", format = "%d/%b/%Y:%H:%M:%S %z" }
[[sources.tail.interceptors]]
type = "regex_filter"
regex = "^5"
field = "status"
[[sources.tail.interceptors]]
type = "static"
headers = { tier = "web" }
)"));
  REQUIRE(agent.wait_ready());
  REQUIRE(
      eventually(10s, [&] { return count_lines(out) == 10 && count_lines(out + ".dead") == 1; }));
  const std::string text = read_file(out);
  CHECK(count(text, R"("status":"500")") == 10);
  CHECK(count(text, R"("tier":"web")") == 10);
  CHECK(text.find(R"({"timestamp":"2025-06-24T12:30:00.000000000Z")") == 0);
  CHECK(
      agent.metric(
          R"(sluice_source_dropped_total{component="tail",type="taildir",reason="interceptor"})") ==
      90.0);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("parse: Java traces from interleaved files are joined per file", "[integration][parse]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs"), out = tmp.file("out.json");
  fs::create_directories(logs);
  write_file(logs + "/a.log", "");
  write_file(logs + "/b.log", "");
  AgentProcess agent("taildir_parse.toml", parse_options("[\"" + logs + "/*.log\"]", out, R"(
on_parse_error = "dead_letter"
file_header = ""
multiline = { mode = "java", timeout = "300ms" }
)"));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(5s, [&] {
    return agent.metric(
               R"(sluice_taildir_files{component="tail",type="taildir",group="default"})") == 2.0;
  }));
  for (int i = 0; i < 20; ++i) {
    for (const char* f : {"a", "b"}) {
      const std::string n = std::string(f) + std::to_string(i);
      append(logs + "/" + f + ".log", "ERROR " + n + " failed\n");
      append(logs + "/" + f + ".log", "java.lang.IllegalStateException: " + n + "\n");
      append(logs + "/" + f + ".log", "\tat x.Y.z(Y.java:" + std::to_string(i) + ")\n");
      std::this_thread::sleep_for(2ms);
    }
  }
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 40; }));
  const std::string text = read_file(out);
  for (int i = 0; i < 20; ++i) {
    for (const char* f : {"a", "b"}) {
      const std::string n = std::string(f) + std::to_string(i);
      INFO(n);
      CHECK(text.find("\"body\":\"ERROR " + n + " failed\\njava.lang.IllegalStateException: " + n +
                      "\\n\\tat x.Y.z(Y.java:" + std::to_string(i) + ")\"") != std::string::npos);
    }
  }
  CHECK(agent.terminate() == 0);
}

TEST_CASE("parse: a trace held by multiline survives kill -9 (its lines are read again)",
          "[integration][parse]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs"), out = tmp.file("out.json"), state = tmp.file("state");
  fs::create_directories(logs);
  fs::create_directories(state);
  const std::string extra = R"(
on_parse_error = "dead_letter"
multiline = { mode = "java", timeout = "1h" }
)";
  AgentProcess::Options o = parse_options("[\"" + logs + "/*.log\"]", out, extra);
  o.dir = state;
  write_file(logs + "/app.log", "INFO one\nERROR two\njava.lang.Error: x\n");
  {
    AgentProcess agent("taildir_parse.toml", o);
    REQUIRE(agent.wait_ready());
    REQUIRE(eventually(10s, [&] { return count_lines(out) == 1; }));
    // "ERROR two" and its trace are held back (no next line, timeout 1h); the saved offset is
    // before them.
    // The saved offset is the end of "INFO one\n": never past the lines multiline still holds.
    REQUIRE(eventually(5s, [&] {
      return read_file(state + "/data/tail.positions.json").find("\"offset\":9}") !=
             std::string::npos;
    }));
    CHECK(agent.signal_and_wait(SIGKILL) == -SIGKILL);
  }
  append(logs + "/app.log", "\tat a.B.c(B.java:1)\nINFO three\n");
  AgentProcess again("taildir_parse.toml", o);
  REQUIRE(again.wait_ready());
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 2; }));
  const std::string text = read_file(out);
  CHECK(text.find(R"x("body":"ERROR two\njava.lang.Error: x\n\tat a.B.c(B.java:1)")x") !=
        std::string::npos);
  CHECK(count(text, R"("body":"INFO one")") == 1);
  CHECK(again.terminate() == 0);
}

TEST_CASE("parse: CRI container logs, partial lines joined, JSON inside", "[integration][parse]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs"), out = tmp.file("out.json");
  fs::create_directories(logs);
  write_file(logs + "/pod.log",
             "2025-06-24T12:30:09.000000001Z stdout P {\"level\":\"info\",\n"
             "2025-06-24T12:30:09.1Z stderr F plain error\n"
             "2025-06-24T12:30:09.2Z stdout F \"msg\":\"hi\"}\n");
  AgentProcess agent("taildir_parse.toml", parse_options("[\"" + logs + "/*.log\"]", out, R"(
format = "json"
on_parse_error = "dead_letter"
multiline = { container = "cri" }
)"));
  REQUIRE(agent.wait_ready());
  REQUIRE(
      eventually(10s, [&] { return count_lines(out) == 1 && count_lines(out + ".dead") == 1; }));
  const std::string text = read_file(out);
  CHECK(text.find(R"({"timestamp":"2025-06-24T12:30:09.000000001Z")") == 0);
  CHECK(text.find(R"("stream":"stdout")") != std::string::npos);
  CHECK(text.find(R"("fields":{"level":"info","msg":"hi"})") != std::string::npos);
  CHECK(read_file(out + ".dead").find(R"("body":"plain error")") != std::string::npos);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("parse: stdin with logfmt and sampling drops what does not parse",
          "[integration][parse]") {
  TempDir tmp;
  std::string input;
  for (int i = 0; i < 1000; ++i)
    input += "uid=" + std::to_string(i % 100) + " n=" + std::to_string(i) + "\n";
  input += "broken=\"\n";
  write_file(tmp.file("in.log"), input);
  const std::string conf = tmp.file("s.toml");
  write_file(conf, "[agent]\ndata_dir = \"" + tmp.file("data") + "\"\nadmin = \"127.0.0.1:0\"\n" +
                       R"(
[sources.in]
type = "stdin"
channel = "buf"
format = "logfmt"
on_parse_error = "drop"
[[sources.in.interceptors]]
type = "sample"
rate = 4
field = "uid"
[channels.buf]
type = "memory"
[sinks.out]
type = "file"
channel = "buf"
format = "json"
path = ")" + tmp.file("out.json") +
                       "\"\n");
  AgentProcess::Options o;
  o.config_file = conf;
  o.stdin_file = tmp.file("in.log");
  AgentProcess agent("", o);
  CHECK(agent.wait_exit(15s) == 0);
  const auto kept = count_lines(tmp.file("out.json"));
  // Whole uids are kept or dropped: 10 lines per uid.
  CHECK(kept % 10 == 0);
  CHECK(kept > 100);
  CHECK(kept < 500);
  CHECK(agent.stderr_text().find("did not parse (logfmt_syntax") != std::string::npos);
}

TEST_CASE("parse: check names bad parse settings and exits 2", "[integration][parse]") {
  TempDir tmp;
  const std::string conf = tmp.file("bad.toml");
  write_file(conf, R"([agent]
data_dir = "/tmp/x"
[sources.in]
type = "stdin"
channel = "buf"
format = "regex"
pattern = "(?<a>["
on_parse_error = "dead_letter"
timestamp = { field = "t", timezone = "Mars/Base" }
[channels.buf]
type = "memory"
[sinks.out]
type = "stdout"
channel = "buf"
)");
  const auto [code, text] = run_sluice({"check", "-c", conf});
  CHECK(code == 2);
  INFO(text);
  CHECK(text.find("bad.toml:7:11: sources.in.pattern: regex /(?<a>[/ does not compile at offset") !=
        std::string::npos);
  CHECK(text.find("sources.in.on_parse_error: \"dead_letter\" needs dead_letter_channel") !=
        std::string::npos);
  CHECK(text.find("sources.in.timestamp.timezone: unknown time zone \"Mars/Base\"") !=
        std::string::npos);
}

TEST_CASE("parse: stdin joins Python tracebacks and flushes the last one at end of input",
          "[integration][parse]") {
  TempDir tmp;
  write_file(tmp.file("in.log"),
             "INFO:root:start\nERROR:root:failed\nTraceback (most recent call last):\n"
             "  File \"a.py\", line 3, in <module>\n    f()\nValueError: bad\nINFO:root:next\n"
             "ERROR:root:again\nTraceback (most recent call last):\n  File \"b.py\", line 1\n"
             "KeyError: 'k'\n");
  const std::string conf = tmp.file("s.toml");
  write_file(conf, R"([agent]
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"
[sources.in]
type = "stdin"
channel = "buf"
multiline = { mode = "python" }
[channels.buf]
type = "memory"
[sinks.out]
type = "file"
channel = "buf"
format = "json"
path = ")" + tmp.file("out.json") +
                       "\"\n");
  AgentProcess::Options o;
  o.config_file = conf;
  o.stdin_file = tmp.file("in.log");
  AgentProcess agent("", o);
  CHECK(agent.wait_exit(15s) == 0);
  const auto lines = read_lines(tmp.file("out.json"));
  REQUIRE(lines.size() == 4);
  CHECK(
      lines[1].find(
          R"("body":"ERROR:root:failed\nTraceback (most recent call last):\n  File \"a.py\", line 3, in <module>\n    f()\nValueError: bad")") !=
      std::string::npos);
  CHECK(lines[3].find(R"(KeyError: 'k'")") != std::string::npos);  // flushed at EOF
}

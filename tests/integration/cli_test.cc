#include <catch2/catch.hpp>
#include <chrono>

#include "tests/support/agent_process.h"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// A small valid agent; `extra` goes into [agent].
std::string config_text(const std::string& agent_keys, const std::string& channels) {
  return "[agent]\n" + agent_keys + "\n[sources.in]\ntype = \"stdin\"\nchannels = " + channels +
         "\n\n[channels.buf]\ntype = \"memory\"\n\n[sinks.out]\ntype = \"null\"\nchannel = "
         "\"buf\"\n";
}

}  // namespace

TEST_CASE("cli: check and run without -c are usage errors (exit 2)", "[integration][cli]") {
  for (const char* cmd : {"check", "run"}) {
    auto [code, text] = run_sluice({cmd});
    INFO(cmd << ": " << text);
    CHECK(code == 2);
    CHECK(text.find("--config is required") != std::string::npos);
  }
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{}, {"chek"}, {"check", "-c", "x.toml", "--frobnicate"}}) {
    auto [rc, out] = run_sluice(args);
    INFO(out);
    CHECK(rc == 2);
  }
  auto [code, text] = run_sluice({"check", "--help"});
  CHECK(code == 0);
  CHECK(text.find("--config") != std::string::npos);
}

TEST_CASE("cli: a directory and an empty file and /dev/zero are refused (exit 2)",
          "[integration][cli]") {
  TempDir dir;
  write_file(dir.file("empty.toml"), "");
  for (const char* cmd : {"check", "run"}) {
    auto [code, text] = run_sluice({cmd, "-c", dir.path()});
    INFO(cmd << ": " << text);
    CHECK(code == 2);
    CHECK(text == dir.path() +
                      ": is a directory, not a configuration file\n"
                      "sluice: 1 configuration error, nothing started\n");
  }
  for (const char* cmd : {"check", "run"}) {
    auto [code, text] = run_sluice({cmd, "-c", dir.file("empty.toml")});
    INFO(cmd << ": " << text);
    CHECK(code == 2);
    CHECK(text == dir.file("empty.toml") +
                      ": the configuration defines no sources, channels or sinks; nothing would "
                      "run\nsluice: 1 configuration error, nothing started\n");
  }
  const auto start = std::chrono::steady_clock::now();
  auto [code, text] = run_sluice({"check", "-c", "/dev/zero"});
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(code == 2);
  CHECK(text ==
        "/dev/zero: is larger than 1MiB, the limit for a configuration file\n"
        "sluice: 1 configuration error, nothing started\n");
  CHECK(took < 5s);
}

TEST_CASE("cli: a channel listed twice and a bad listen address fail check (exit 2)",
          "[integration][cli]") {
  TempDir dir;
  const std::string conf = dir.file("sluice.toml");
  write_file(conf, config_text("data_dir = \"" + dir.path() + "\"", "[\"buf\", \"buf\"]"));
  auto [code, text] = run_sluice({"check", "-c", conf});
  CHECK(code == 2);
  CHECK(text == conf +
                    ":5:20: sources.in.channels[1]: channel 'buf' is listed twice; every event "
                    "would be put into it twice\nsluice: 1 configuration error, nothing started\n");

  write_file(conf, "[agent]\ndata_dir = \"" + dir.path() +
                       "\"\n[sources.in]\ntype = \"avro\"\nlisten = \"256.1.1.1:80\"\nchannel = "
                       "\"buf\"\n[channels.buf]\ntype = \"memory\"\n[sinks.out]\ntype = "
                       "\"null\"\nchannel = \"buf\"\n");
  for (const char* cmd : {"check", "run"}) {
    auto [rc, out] = run_sluice({cmd, "-c", conf});
    INFO(cmd << ": " << out);
    CHECK(rc == 2);
    CHECK(out == conf +
                     ":5:10: sources.in.listen: \"256.1.1.1:80\": '256.1.1.1' is not an IPv4 or "
                     "IPv6 address (host names are not resolved)\n"
                     "sluice: 1 configuration error, nothing started\n");
  }
}

TEST_CASE("cli: an admin endpoint on all interfaces is a warning and not an error",
          "[integration][cli]") {
  TempDir dir;
  const std::string conf = dir.file("sluice.toml");
  write_file(conf, config_text("admin = \"0.0.0.0:0\"", "[\"buf\"]"));
  auto [code, text] = run_sluice({"check", "-c", conf});
  CHECK(code == 0);
  CHECK(text == "sluice: warning: " + conf +
                    ":2:9: agent.admin: \"0.0.0.0:0\" is not a loopback address: anyone who can "
                    "reach it can read /metrics, /healthz and /api/v1/status (there is no "
                    "authentication)\n" +
                    conf + ": ok (1 sources, 1 channels, 1 sinks, 1 sink groups)\n");
}

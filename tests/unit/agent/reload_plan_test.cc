#include <catch2/catch.hpp>
#include <string>

#include "agent/agent_config.h"
#include "agent/registry.h"
#include "agent/reload.h"

using namespace sluice;

namespace {

AgentConfig parse_text(const std::string& text) {
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  auto cfg = parse_config(text, "inline.toml", registry, errors);
  for (const auto& e : errors) FAIL(e.str());
  REQUIRE(cfg.has_value());
  return std::move(*cfg);
}

// What reloading from `before` to `after` does, as Plan::summary() says it.
std::string summary(const std::string& before, const std::string& after) {
  const AgentConfig a = parse_text(before), b = parse_text(after);
  auto single = [](std::string_view type) { return type == "memory"; };
  return reload::plan(a, reload::fingerprints(a), b, reload::fingerprints(b), single).summary();
}

const std::string kHead = R"(
[agent]
name = "t"
data_dir = "/tmp/x"
)";

const std::string kTail = R"(
[sources.app]
type = "exec"
command = ["seq", "1", "10"]
channel = "buf"
)";

std::string memory(int max_events) {
  return "\n[channels.buf]\ntype = \"memory\"\nmax_events = " + std::to_string(max_events) + "\n";
}

const std::string kSinkA = R"(
[sinks.a]
type = "file"
path = "/tmp/x/a.log"
channel = "buf"
)";

const std::string kGroupAB = R"(
[sinks.a]
type = "file"
path = "/tmp/x/a.log"
[sinks.b]
type = "file"
path = "/tmp/x/b.log"
[sink_groups.g]
channel = "buf"
processor = "load_balance"
sinks = ["a", "b"]
)";

}  // namespace

TEST_CASE("reload plan: the same file changes nothing", "[unit][agent][reload]") {
  const std::string c = kHead + kTail + memory(100) + kSinkA;
  CHECK(summary(c, c) == "no component changed");
}

TEST_CASE("reload plan: comments and key order do not count as changes", "[unit][agent][reload]") {
  const std::string a = kHead + kTail + memory(100) + kSinkA;
  const std::string b = kHead + "# a comment\n" + kTail + memory(100) +
                        "\n[sinks.a]\nchannel = \"buf\"   # moved\ntype = \"file\"\npath = "
                        "\"/tmp/x/a.log\"\n";
  CHECK(summary(a, b) == "no component changed");
}

TEST_CASE("reload plan: a changed sink replaces only its group of one", "[unit][agent][reload]") {
  const std::string a = kHead + kTail + memory(100) + kSinkA;
  std::string b = a;
  b.replace(b.find("a.log"), 5, "z.log");
  CHECK(summary(a, b) == "sinks ~a; sink_groups ~a");
}

TEST_CASE("reload plan: adding a sink to a group keeps the source and channel",
          "[unit][agent][reload]") {
  const std::string a = kHead + kTail + memory(100) + kSinkA;
  const std::string b = kHead + kTail + memory(100) + kGroupAB;
  CHECK(summary(a, b) == "sinks ~a +b; sink_groups +g -a");
  CHECK(summary(b, a) == "sinks ~a -b; sink_groups +a -g");
}

TEST_CASE("reload plan: a memory channel's new bounds replace its writers and readers",
          "[unit][agent][reload]") {
  const std::string a = kHead + kTail + memory(100) + kSinkA;
  const std::string b = kHead + kTail + memory(200) + kSinkA;
  CHECK(summary(a, b) == "sources ~app; channels ~buf; sinks ~a; sink_groups ~a");
}

TEST_CASE("reload plan: an unrelated pipeline of components stays", "[unit][agent][reload]") {
  const std::string other = R"(
[sources.other]
type = "exec"
command = ["seq", "1", "5"]
channel = "c2"
[channels.c2]
type = "memory"
[sinks.o]
type = "file"
path = "/tmp/x/o.log"
channel = "c2"
)";
  const std::string a = kHead + kTail + memory(100) + kSinkA + other;
  const std::string b = kHead + kTail + memory(200) + kSinkA + other;
  CHECK(summary(a, b) == "sources ~app; channels ~buf; sinks ~a; sink_groups ~a");
  CHECK(summary(a, kHead + kTail + memory(100) + kSinkA) ==
        "sources -other; channels -c2; "
        "sinks -o; sink_groups -o");
}

TEST_CASE("reload plan: an lmdb channel losing a reader is replaced with its writers",
          "[unit][agent][reload]") {
  const std::string lmdb = R"(
[channels.buf]
type = "lmdb"
)";
  const std::string two = R"(
[sinks.a]
type = "file"
path = "/tmp/x/a.log"
channel = "buf"
[sinks.b]
type = "file"
path = "/tmp/x/b.log"
channel = "buf"
)";
  const std::string one = R"(
[sinks.a]
type = "file"
path = "/tmp/x/a.log"
channel = "buf"
)";
  // Adding a reader keeps the channel; removing one would leave its cursor holding records.
  CHECK(summary(kHead + kTail + lmdb + one, kHead + kTail + lmdb + two) ==
        "sinks +b; sink_groups +b");
  CHECK(summary(kHead + kTail + lmdb + two, kHead + kTail + lmdb + one) ==
        "sources ~app; channels ~buf; sinks ~a -b; sink_groups ~a -b");
}

TEST_CASE("reload plan: data_dir and admin cannot change", "[unit][agent][reload]") {
  const AgentConfig a = parse_text(kHead + kTail + memory(100) + kSinkA);
  std::string text = kHead + kTail + memory(100) + kSinkA;
  text.replace(text.find("/tmp/x\""), 7, "/tmp/y\"");
  text += "";
  AgentConfig b = parse_text(text);
  b.agent.admin = "127.0.0.1:1";
  const auto errs = reload::unchangeable(a, b);
  REQUIRE(errs.size() == 2);
  CHECK(errs[0] ==
        "agent.data_dir: cannot change on reload (running with \"/tmp/x\", the file says "
        "\"/tmp/y\"); restart sluice to use it");
  CHECK(errs[1] ==
        "agent.admin: cannot change on reload (running with \"127.0.0.1:24280\", the file says "
        "\"127.0.0.1:1\"); restart sluice to use it");
}

TEST_CASE("reload plan: a new agent name replaces the pipelines whose PARTIAL rows carry it",
          "[unit][agent][reload]") {
  const std::string body = R"toml(
[sources.access]
type = "taildir"
paths = ["/tmp/x/*.log"]
format = "json"
channel = "raw"
[channels.raw]
type = "lmdb"
[sinks.n]
type = "null"
channel = "raw"
[channels.rows]
type = "memory"
[sinks.o]
type = "null"
channel = "rows"
[pipelines.pv]
sql = "INSERT INTO rows SELECT COUNT(*) AS n FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND)"
)toml";
  const std::string a = kHead + body;
  std::string b = a;
  b.replace(b.find("name = \"t\""), 10, "name = \"u\"");
  const AgentConfig ca = parse_text(a), cb = parse_text(b);
  REQUIRE(cb.agent.name == "u");
  auto single = [](std::string_view type) { return type == "memory"; };
  const reload::Plan plan =
      reload::plan(ca, reload::fingerprints(ca), cb, reload::fingerprints(cb), single);
  CHECK(plan.retire_pipelines.count("pv") == 1);
  CHECK(plan.build_pipelines.count("pv") == 1);
}

#include "agent/agent_config.h"

#include <catch2/catch.hpp>

#include "agent/processor_config.h"
#include "agent/registry.h"
#include "channels/memory/memory_channel.h"
#include "sinks/group/processors.h"
#include "sinks/kafka/kafka_sink.h"
#include "tests/support/test_support.h"
#include "tests/unit/agent/config_errors.h"

using namespace sluice;

namespace {

std::vector<std::string> errors_of(std::string_view text) { return test::config_errors_of(text); }

constexpr std::string_view kValid = R"(
[agent]
name = "t"
data_dir = "/tmp/x"

[sources.app]
type = "exec"
command = ["seq", "1", "10"]
channel = "buf"

[channels.buf]
type = "memory"
max_events = 100

[sinks.out]
type = "file"
path = "/tmp/x/out.log"
channel = "buf"
)";

}  // namespace

TEST_CASE("a valid configuration parses with defaults", "[unit][config]") {
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  auto cfg = parse_config(kValid, "inline.toml", registry, errors);
  REQUIRE(errors.empty());
  REQUIRE(cfg.has_value());
  CHECK(cfg->agent.name == "t");
  CHECK(cfg->agent.admin == "127.0.0.1:24280");
  CHECK(cfg->agent.shutdown_timeout == std::chrono::seconds(10));
  REQUIRE(cfg->sources.size() == 1);
  CHECK(cfg->sources[0].channels == std::vector<std::string>{"buf"});
  REQUIRE(cfg->groups.size() == 1);
  CHECK(cfg->groups[0].implicit);
  CHECK(cfg->groups[0].channel == "buf");
  CHECK(cfg->groups[0].config.max_in_flight == 4);
  CHECK(cfg->sinks[0].delivery_timeout == std::chrono::seconds(5));
}

TEST_CASE("config: every error at once, with file, line, column, key path and a suggestion",
          "[unit][config]") {
  const auto errors = errors_of(R"(
[agent]
admin = "localhost"
shutdown_timeout = "5 sec"

[sources.app]
type = "exec"
comand = ["seq", "1"]
channel = "bufer"
max_line_bytes = "1 MiB"

[channels.buf]
type = "memory"
max_events = 0

[sinks.out]
type = "file"
channel = "buf"
fsync = "always"
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:3:9: agent.admin: "localhost" is not HOST:PORT (e.g. "127.0.0.1:24280"))",
      R"(inline.toml:4:20: agent.shutdown_timeout: "5 sec" is not a duration (e.g. "250ms", "5s"))",
      R"(inline.toml:6:1: sources.app: missing required key 'command')",
      R"(inline.toml:8:1: sources.app.comand: unknown key (did you mean 'command'?))",
      R"(inline.toml:9:1: sources.app.channel: unknown channel 'bufer' (did you mean 'buf'?))",
      R"(inline.toml:10:18: sources.app.max_line_bytes: "1 MiB" is not a size (e.g. "64MiB", "512KiB"))",
      R"(inline.toml:14:14: channels.buf.max_events: must be in [1, 100000000], got 0)",
      R"(inline.toml:16:1: sinks.out: missing required key 'path')",
      R"(inline.toml:19:9: sinks.out.fsync: must be one of "none", "batch", "roll", got "always")",
  };
  CHECK(errors == expected);
}

TEST_CASE("config: syntax errors name the position", "[unit][config]") {
  const auto errors = errors_of("[agent]\nname = \n");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].rfind("inline.toml:2:", 0) == 0);
  CHECK(errors[0].find("syntax error") != std::string::npos);
}

TEST_CASE("config: the agent name is not empty and at most 255 bytes", "[unit][config]") {
  std::string text(kValid);
  const std::string empty = std::string(text).replace(text.find("name = \"t\""), 10, "name = \"\"");
  auto errors = errors_of(empty);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] == "inline.toml:3:8: agent.name: must not be empty");
  const std::string longer = std::string(text).replace(text.find("name = \"t\""), 10,
                                                       "name = \"" + std::string(256, 'a') + "\"");
  errors = errors_of(longer);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] == "inline.toml:3:8: agent.name: 256 bytes; at most 255");
  const std::string max = std::string(text).replace(text.find("name = \"t\""), 10,
                                                    "name = \"" + std::string(255, 'a') + "\"");
  CHECK(errors_of(max).empty());
}

TEST_CASE("config: unknown types and top-level keys", "[unit][config]") {
  const auto errors = errors_of(R"(
[sources.a]
type = "execc"
channel = "c"

[channels.c]
type = "sqlite"

[sinks.k]
type = "mqtt"
channel = "c"

[pipelinez.p]
sql = "x"
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:3:8: sources.a.type: unknown source type 'execc' (did you mean 'exec'?))",
      R"(inline.toml:7:8: channels.c.type: unknown channel type 'sqlite'; available: lmdb, memory)",
      R"(inline.toml:10:8: sinks.k.type: unknown sink type 'mqtt'; available: avro, datahub, file, http, ilp, kafka, null, stdout, tcp)",
      R"(inline.toml:13:2: pipelinez: unknown key (did you mean 'pipelines'?))",
  };
  CHECK(errors == expected);
}

TEST_CASE("config: cross-component checks", "[unit][config]") {
  const auto errors = errors_of(R"(
[sources.a]
type = "stdin"
channel = "c1"

[channels.c1]
type = "memory"

[channels.c2]
type = "memory"

[channels.c3]
type = "memory"
max_events = 10
transaction_events = 20

[sinks.k1]
type = "null"

[sinks.k2]
type = "null"
channel = "c1"

[sinks.k3]
type = "null"

[sink_groups.g1]
channel = "c1"
sinks = ["k1"]

[sink_groups.g2]
channel = "c3"
sinks = ["k1", "k3"]

[sink_groups.g3]
channel = "c3"
processor = "fail_over"
sinks = ["k9"]
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:6:1: channels.c1: a memory channel can be drained by one sink group; 2 read it: g1, k2)",
      R"(inline.toml:9:1: channels.c2: no sink or sink group drains this channel)",
      R"(inline.toml:12:1: channels.c3: a memory channel can be drained by one sink group; 2 read it: g2, g3)",
      R"(inline.toml:15:22: channels.c3.transaction_events: must not exceed max_events (10), got 20)",
      R"(inline.toml:33:1: sink_groups.g2.sinks: sink 'k1' is already in sink group 'g1')",
      R"(inline.toml:33:9: sink_groups.g2.sinks: processor 'default' takes exactly one sink, got 2)",
      R"(inline.toml:37:13: sink_groups.g3.processor: must be one of "default", "failover", "load_balance", got "fail_over" (did you mean 'failover'?))",
      R"(inline.toml:38:1: sink_groups.g3.sinks: unknown sink 'k9' (did you mean 'k1'?))",
  };
  CHECK(errors == expected);
}

TEST_CASE("config: a sink outside any group needs a channel", "[unit][config]") {
  const auto errors = errors_of(R"(
[channels.c]
type = "memory"

[sinks.k]
type = "null"

[sinks.j]
type = "null"
channel = "c"
max_in_flight = 0
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:5:1: sinks.k: missing required key 'channel' (or list this sink in a [sink_groups] table))",
      R"(inline.toml:11:17: sinks.j.max_in_flight: must be in [1, 64], got 0)",
  };
  CHECK(errors == expected);
}

TEST_CASE("config: exec needs an argv unless shell = true", "[unit][config]") {
  const auto errors = errors_of(R"(
[sources.a]
type = "exec"
command = "tail -F /var/log/x"
channel = "c"

[channels.c]
type = "memory"

[sinks.k]
type = "null"
channel = "c"
)");
  REQUIRE(errors.size() == 1);
  CHECK(
      errors[0] ==
      R"(inline.toml:4:11: sources.a.command: expected an array of strings (argv); set shell = true to run a string through /bin/sh)");
}

TEST_CASE("config: a listen address used twice", "[unit][config]") {
  const auto errors = errors_of(R"(
[agent]
admin = "127.0.0.1:4141"

[sources.a]
type = "stdin"
channel = "c"
listen = "127.0.0.1:4141"

[channels.c]
type = "memory"

[sinks.k]
type = "null"
channel = "c"
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:8:1: sources.a.listen: unknown key)",
      R"(inline.toml:8:10: sources.a.listen: address 127.0.0.1:4141 is already used by agent.admin)",
  };
  CHECK(errors == expected);
}

TEST_CASE("config: failover by priority, load balancing, dead letters", "[unit][config]") {
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  auto cfg = parse_config(R"(
[channels.c]
type = "memory"
[channels.d]
type = "memory"
[sinks.a]
type = "null"
[sinks.b]
type = "null"
[sinks.x]
type = "null"
[sinks.y]
type = "null"
[sinks.dl]
type = "file"
path = "/tmp/dl"
[sink_groups.up]
channel = "c"
processor = "failover"
priority = { a = 5, b = 10 }
dead_letter = "dl"
max_penalty = "10s"
[sink_groups.lb]
channel = "d"
processor = "load_balance"
selector = "random"
sinks = ["x", "y"]
)",
                          "inline.toml", registry, errors);
  for (const auto& e : errors) INFO(e.str());
  REQUIRE(errors.empty());
  REQUIRE(cfg->groups.size() == 2);
  const GroupSpec& lb = cfg->groups[0].name == "lb" ? cfg->groups[0] : cfg->groups[1];
  const GroupSpec& up = cfg->groups[0].name == "up" ? cfg->groups[0] : cfg->groups[1];
  CHECK(up.sinks == std::vector<std::string>{"b", "a"});  // the larger priority first
  CHECK(up.dead_letter == std::optional<std::string>("dl"));
  CHECK(up.config.max_penalty == std::chrono::seconds(10));
  CHECK(lb.processor == "load_balance");
  CHECK(std::any_cast<const LoadBalanceProcessorConfig&>(lb.processor_config).selector ==
        sinks::Selector::random);
  CHECK(up.processor == "failover");
  CHECK(lb.sinks == std::vector<std::string>{"x", "y"});
}

TEST_CASE("config: group mistakes", "[unit][config]") {
  const auto errors = errors_of(R"(
[channels.c]
type = "memory"
[channels.d]
type = "memory"
[sinks.a]
type = "null"
[sinks.b]
type = "null"
[sinks.dl]
type = "null"
channel = "d"
[sink_groups.g]
channel = "c"
processor = "failover"
priority = { a = 1, b = 1 }
selector = "random"
dead_letter = "dl"
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:4:1: channels.d: no sink or sink group drains this channel)",
      R"(inline.toml:12:1: sinks.dl.channel: this sink is the dead_letter of sink group 'g' and reads no channel)",
      R"(inline.toml:16:25: sink_groups.g.priority.b: sinks 'a' and 'b' have the same priority 1)",
      R"(inline.toml:17:1: sink_groups.g.selector: only a load_balance group has a selector)",
  };
  CHECK(errors == expected);
}

TEST_CASE("config: kafka keys and librdkafka properties are checked up front", "[unit][config]") {
  const auto errors = errors_of(R"(
[channels.c]
type = "memory"

[sinks.k]
type = "kafka"
channel = "c"
brokers = ["127.0.0.1:9092"]
topic = "logs-{heder.app}"
key = "uid"
compression = "brotli"
idempotence = true
acks = "1"

[sinks.k.librdkafka]
"linger.mss" = 5
"queue.buffering.max.messages" = "lots"
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:9:9: sinks.k.topic: unknown placeholder '{heder.app}' in "logs-{heder.app}" (use {header.NAME} or {field.NAME}))",
      R"(inline.toml:10:7: sinks.k.key: "uid" is not "header.NAME" or "field.NAME")",
      R"(inline.toml:11:15: sinks.k.compression: must be one of "none", "gzip", "snappy", "lz4", "zstd", got "brotli")",
      R"(inline.toml:13:8: sinks.k.acks: idempotence = true needs acks = "all")",
      R"(inline.toml:16:16: sinks.k.librdkafka.linger.mss: No such configuration property: "linger.mss")",
      R"(inline.toml:17:34: sinks.k.librdkafka.queue.buffering.max.messages: Invalid value for configuration property "queue.buffering.max.messages")",
  };
  CHECK(errors == expected);
}

TEST_CASE("config: a kafka sink with brokers as one string", "[unit][config]") {
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  auto cfg = parse_config(R"(
[channels.c]
type = "memory"
[sinks.k]
type = "kafka"
channel = "c"
brokers = "h1:9092, h2:9092"
topic = "t-{header.app}"
key = "field.uid"
)",
                          "inline.toml", registry, errors);
  REQUIRE(errors.empty());
  const auto& k = std::any_cast<const sinks::KafkaConfig&>(cfg->sinks[0].config);
  CHECK(k.brokers == std::vector<std::string>{"h1:9092", "h2:9092"});
  CHECK(k.compression == "zstd");
  CHECK(k.idempotence);
  CHECK(k.key_name == "uid");
  CHECK_FALSE(k.topic.fixed());
}

namespace {

// The warnings of a configuration that must parse without errors.
std::vector<std::string> warnings_of(std::string_view text) {
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  auto cfg = parse_config(text, "inline.toml", registry, errors);
  for (const auto& e : errors) INFO(e.str());
  REQUIRE(errors.empty());
  REQUIRE(cfg.has_value());
  std::vector<std::string> out;
  for (const auto& w : errors.warnings()) out.push_back(w.str());
  return out;
}

std::vector<std::string> load_errors(const std::string& path) {
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  auto cfg = load_config(path, registry, errors);
  std::vector<std::string> out;
  for (const auto& e : errors) out.push_back(e.str());
  if (!errors.empty()) REQUIRE_FALSE(cfg.has_value());
  return out;
}

}  // namespace

TEST_CASE("config: a file that defines nothing to run is an error", "[unit][config]") {
  const std::vector<std::string> expected = {
      "inline.toml: the configuration defines no sources, channels or sinks; nothing would run"};
  CHECK(errors_of("") == expected);
  CHECK(errors_of("# only a comment\n[agent]\nname = \"x\"\n") == expected);
}

TEST_CASE("config: a source that lists a channel twice", "[unit][config]") {
  const auto errors = errors_of(R"(
[sources.a]
type = "stdin"
channels = ["buf", "buf"]

[channels.buf]
type = "memory"

[sinks.k]
type = "null"
channel = "buf"
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:4:20: sources.a.channels[1]: channel 'buf' is listed twice; every event would be put into it twice)",
  };
  CHECK(errors == expected);
}

TEST_CASE("config: listen and admin addresses are checked with their position", "[unit][config]") {
  const auto errors = errors_of(R"(
[agent]
admin = "localhost:24280"

[sources.a]
type = "avro"
listen = "127.0.0.1:-1"
channel = "c"

[sources.b]
type = "http"
listen = "256.1.1.1:80"
channel = "c"

[sources.d]
type = "avro"
listen = "::1:4141"
channel = "c"

[sources.e]
type = "http"
listen = "127.0.0.1:65536"
channel = "c"

[channels.c]
type = "lmdb"

[sinks.k]
type = "null"
channel = "c"
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:3:9: agent.admin: "localhost:24280": 'localhost' is not an IPv4 or IPv6 address (host names are not resolved))",
      R"(inline.toml:7:10: sources.a.listen: "127.0.0.1:-1": the port must be a number in [0, 65535], got "-1")",
      R"(inline.toml:12:10: sources.b.listen: "256.1.1.1:80": '256.1.1.1' is not an IPv4 or IPv6 address (host names are not resolved))",
      R"(inline.toml:17:10: sources.d.listen: "::1:4141": an IPv6 address needs brackets (e.g. "[::1]:4141"))",
      R"(inline.toml:22:10: sources.e.listen: "127.0.0.1:65536": the port must be a number in [0, 65535], got "65536")",
  };
  CHECK(errors == expected);
}

TEST_CASE("config: good listen addresses pass", "[unit][config]") {
  const auto warnings = warnings_of(R"(
[agent]
admin = "[::1]:0"

[sources.a]
type = "avro"
listen = "[::]:0"
channel = "c"

[sources.b]
type = "http"
listen = "0.0.0.0:8080"
channel = "c"

[channels.c]
type = "memory"

[sinks.k]
type = "null"
channel = "c"
)");
  CHECK(warnings.empty());
}

TEST_CASE("config: an admin endpoint on a non-loopback address is a warning", "[unit][config]") {
  const std::string rest = R"(
[sources.app]
type = "stdin"
channel = "buf"

[channels.buf]
type = "memory"

[sinks.out]
type = "null"
channel = "buf"
)";
  const std::vector<std::string> expected = {
      R"(inline.toml:3:9: agent.admin: "0.0.0.0:24280" is not a loopback address: anyone who can reach it can read /metrics, /healthz and /api/v1/status (there is no authentication))",
  };
  CHECK(warnings_of("\n[agent]\nadmin = \"0.0.0.0:24280\"\n" + rest) == expected);
  CHECK(warnings_of("\n[agent]\nadmin = \"127.0.0.2:24280\"\n" + rest).empty());
  CHECK(warnings_of(rest).empty());  // the default, 127.0.0.1:24280
}

TEST_CASE("config: every bad allow entry of an avro source is reported", "[unit][config]") {
  const auto errors = errors_of(R"(
[sources.a]
type = "avro"
listen = "127.0.0.1:0"
channel = "c"
allow = ["10.0.0.0/8", "10.0.0.300", "::1", "fd00::/129"]

[channels.c]
type = "memory"

[sinks.k]
type = "null"
channel = "c"
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:6:24: sources.a.allow[1]: "10.0.0.300" is not an address or CIDR range)",
      R"(inline.toml:6:45: sources.a.allow[3]: "fd00::/129" has a bad prefix length)",
  };
  CHECK(errors == expected);
}

TEST_CASE("config: load_config refuses a directory and an endless file", "[unit][config]") {
  test::TempDir dir;
  CHECK(load_errors(dir.path()) ==
        std::vector<std::string>{dir.path() + ": is a directory, not a configuration file"});
  CHECK(load_errors("/dev/zero") ==
        std::vector<std::string>{
            "/dev/zero: is larger than 1MiB, the limit for a configuration file"});
  CHECK(
      load_errors(dir.file("missing.toml")) ==
      std::vector<std::string>{dir.file("missing.toml") +
                               ": cannot read the configuration file: No such file or directory"});
}

namespace {

// A processor that needs two sinks, registered only by the test below.
struct PairConfig {
  std::string mode = "a";
  static std::optional<PairConfig> parse(const ConfigNode& node, ConfigErrors& errors) {
    PairConfig c;
    node.optional("mode", c.mode, errors);
    return c;
  }
};
struct PairProcessor {
  static Result<std::unique_ptr<Processor>> create(const PairConfig&, ProcessorContext&) {
    return Status(Errc::config, "not built in this test");
  }
};

std::vector<std::string> errors_with(const Registry& registry, std::string_view text) {
  ConfigErrors errors;
  auto cfg = parse_config(text, "inline.toml", registry, errors);
  std::vector<std::string> out;
  for (const auto& e : errors) out.push_back(e.str());
  if (!errors.empty()) REQUIRE_FALSE(cfg.has_value());
  return out;
}

}  // namespace

TEST_CASE("config: a channel type's max_cursors trait bounds its sink groups", "[unit][config]") {
  Registry registry;
  register_builtin_components(registry);
  registry.add_channel<channels::MemoryConfig, channels::MemoryChannel>("pair", {.max_cursors = 2});
  const std::string sinks = R"(
[sinks.a]
type = "null"
channel = "c"
[sinks.b]
type = "null"
channel = "c"
[sinks.d]
type = "null"
channel = "c"
)";
  CHECK(errors_with(registry, "[channels.c]\ntype = \"pair\"\n" + sinks) ==
        std::vector<std::string>{
            "inline.toml:1:1: channels.c: a pair channel can be drained by 2 sink groups; 3 read "
            "it: a, b, d"});
  CHECK(errors_with(registry, "[channels.c]\ntype = \"lmdb\"\n" + sinks).empty());
}

TEST_CASE("config: processors are registered components with traits", "[unit][config]") {
  Registry registry;
  register_builtin_components(registry);
  CHECK(registry.processor_types() ==
        std::vector<std::string_view>{"default", "failover", "load_balance"});
  registry.add_processor<PairConfig, PairProcessor>("pair", {.min_sinks = 2});
  const auto errors = errors_with(registry, R"(
[channels.c]
type = "lmdb"
[sinks.a]
type = "null"
[sinks.b]
type = "null"
[sink_groups.g]
channel = "c"
processor = "pair"
sinks = ["a"]
selector = "random"
[sink_groups.h]
channel = "c"
processor = "load_balance"
sinks = ["b"]
mode = "b"
selector = "randon"
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:11:9: sink_groups.g.sinks: processor 'pair' needs at least 2 sinks, got 1)",
      R"(inline.toml:12:1: sink_groups.g.selector: only a load_balance group has a selector)",
      R"(inline.toml:17:1: sink_groups.h.mode: only a pair group has a mode)",
      R"(inline.toml:18:12: sink_groups.h.selector: must be one of "round_robin", "random", got "randon" (did you mean 'random'?))",
  };
  CHECK(errors == expected);
}

TEST_CASE("config: named values list what is allowed and suggest the closest", "[unit][config]") {
  const auto errors = errors_of(R"(
[sources.t]
type = "taildir"
paths = ["/var/log/*.log"]
channel = "c"
read_from = "tial"
line_overflow = 3
on_parse_error = "dead-letter"

[sources.a]
type = "avro"
listen = "127.0.0.1:0"
channel = "c"
compression = "zlib"
layering = "zlib_inside"

[channels.c]
type = "lmdb"
sync = "periodc"
when_full = "drop"

[sinks.f]
type = "file"
path = "/tmp/x"
channel = "c"
format = "jsno"
lagging = "detached"

[sinks.o]
type = "stdout"
channel = "c"
format = "text"
)");
  const std::vector<std::string> expected = {
      R"(inline.toml:6:13: sources.t.read_from: must be one of "head", "tail", got "tial" (did you mean 'tail'?))",
      R"(inline.toml:7:17: sources.t.line_overflow: expected a string, got an integer)",
      R"(inline.toml:8:18: sources.t.on_parse_error: must be one of "pass", "drop", "dead_letter", got "dead-letter" (did you mean 'dead_letter'?))",
      R"(inline.toml:14:15: sources.a.compression: must be one of "none", "deflate", got "zlib")",
      R"(inline.toml:15:12: sources.a.layering: must be one of "tls_outside", "zlib_outside", got "zlib_inside" (did you mean 'zlib_outside'?))",
      R"(inline.toml:19:8: channels.c.sync: must be one of "full", "periodic", "none", got "periodc" (did you mean 'periodic'?))",
      R"(inline.toml:20:13: channels.c.when_full: must be one of "block", "drop_oldest", got "drop")",
      R"(inline.toml:26:10: sinks.f.format: must be one of "body", "json", got "jsno" (did you mean 'json'?))",
      R"(inline.toml:27:11: sinks.f.lagging: must be one of "block", "detach", got "detached" (did you mean 'detach'?))",
      R"(inline.toml:32:10: sinks.o.format: must be one of "body", "json", got "text")",
  };
  CHECK(errors == expected);
}

namespace {

struct IdleSink final : Sink {
  void deliver(const Batch&, DeliveryId, DeliveryListener&) override {}
  void stop(StopCallback) override {}
};

}  // namespace

TEST_CASE("config: the registered processors build what the group asked for", "[unit][config]") {
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  auto cfg = parse_config(R"(
[channels.c]
type = "lmdb"
[sinks.a]
type = "null"
[sinks.b]
type = "null"
[sinks.x]
type = "null"
[sinks.y]
type = "null"
[sink_groups.fo]
channel = "c"
processor = "failover"
sinks = ["a", "b"]
[sink_groups.rr]
channel = "c"
processor = "load_balance"
sinks = ["x", "y"]
)",
                          "inline.toml", registry, errors);
  REQUIRE(errors.empty());
  IdleSink s1, s2;
  const TimePoint now{};
  for (const auto& g : cfg->groups) {
    ProcessorContext ctx{{&s1, &s2}, std::chrono::seconds(1), std::chrono::seconds(30)};
    auto p = registry.processor(g.processor)->create(g.processor_config, ctx);
    REQUIRE(p);
    if (g.name == "fo") {  // the first sink while it is healthy, the second once it is penalised
      CHECK((*p)->pick(now) == &s1);
      (*p)->penalize(s1, now);
      CHECK((*p)->pick(now) == &s2);
    } else {  // round_robin, the default selector
      CHECK((*p)->pick(now) == &s1);
      CHECK((*p)->pick(now) == &s2);
      CHECK((*p)->pick(now) == &s1);
    }
  }
  ProcessorContext one{{&s2}, std::chrono::seconds(1), std::chrono::seconds(30)};
  auto single = registry.processor("default")->create(std::any(DefaultProcessorConfig{}), one);
  REQUIRE(single);
  CHECK((*single)->pick(now) == &s2);
}

#include "agent/pipeline_config.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "agent/agent_config.h"
#include "agent/registry.h"
#include "tests/unit/agent/config_errors.h"

using namespace sluice;

namespace {

std::vector<std::string> errors_of(std::string_view text) { return test::config_errors_of(text); }

// A source "access" writing to the lmdb channel "raw", and a channel "rows" for the pipelines:
// 22 lines, so the pipelines below start at line 23.
const std::string kBase = R"toml([agent]
data_dir = "/tmp/x"

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
)toml";

std::pair<std::uint32_t, std::uint32_t> pos(const std::string& file, std::uint32_t line,
                                            std::uint32_t column, std::size_t offset) {
  return TomlStringMap(file, line, column).position(offset);
}

using P = std::pair<std::uint32_t, std::uint32_t>;

}  // namespace

TEST_CASE("pipeline config: a valid pipeline reads its source's lmdb channel",
          "[unit][config][sql]") {
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  auto cfg = parse_config(kBase + R"toml(
[pipelines.pv]
sql = """
INSERT INTO rows
SELECT COUNT(*) AS n FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND)
"""
event_time = { field = "ts", format = "epoch_ms", watermark_delay = "3s" }
allowed_lateness = "1s"
idle_timeout = "10s"
on_stop = "keep"
max_state_bytes = "8MiB"
distinct_exact_limit = 100
)toml",
                          "inline.toml", registry, errors);
  for (const auto& e : errors) INFO(e.str());
  REQUIRE(errors.empty());
  REQUIRE(cfg->pipelines.size() == 1);
  const PipelineSpec& p = cfg->pipelines[0];
  CHECK(p.source == "access");
  CHECK(p.channel == "rows");
  CHECK(p.input_channel == "raw");
  CHECK(p.input_durable);
  CHECK(p.event_time_field == "ts");
  CHECK(p.watermark_delay == std::chrono::seconds(3));
  CHECK(p.allowed_lateness == std::chrono::seconds(1));
  CHECK(p.idle_timeout == std::chrono::seconds(10));
  CHECK(p.on_stop == OnStop::keep);
  CHECK(p.max_state_bytes == 8u << 20);
  CHECK(p.distinct_exact_limit == 100);
  CHECK_FALSE(p.processing_time);
  const sql::RunnerOptions o = runner_options(p);
  CHECK(o.time_source == sql::TimeSource::field);
  CHECK(o.watermark_delay_ns == 3'000'000'000);
}

TEST_CASE("pipeline config: a pipeline may read a memory channel without checkpoints",
          "[unit][config][sql]") {
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  std::string text = kBase;
  text.replace(text.find("type = \"lmdb\""), 13, "type = \"memory\"");
  auto cfg = parse_config(text + R"toml(
[pipelines.pv]
sql = "INSERT INTO rows SELECT COUNT(*) AS n FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND)"
)toml",
                          "inline.toml", registry, errors);
  for (const auto& e : errors) INFO(e.str());
  REQUIRE(errors.empty());
  REQUIRE(cfg->pipelines.size() == 1);
  CHECK(cfg->pipelines[0].input_channel == "raw");
  CHECK_FALSE(cfg->pipelines[0].input_durable);
  CHECK(cfg->pipelines[0].on_stop == OnStop::emit);
}

TEST_CASE("pipeline config: SQL errors point into the SQL text in the file",
          "[unit][config][sql]") {
  const auto errors = errors_of(kBase + R"toml(
[pipelines.bad_from]
sql = """
INSERT INTO rows
SELECT COUNT(*) AS n
FROM acess
GROUP BY TUMBLE(INTERVAL '5' SECOND)
"""

[pipelines.bad_into]
sql = "INSERT INTO rowz SELECT COUNT(*) AS n FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND)"

[pipelines.bad_syntax]
sql = '''
INSERT INTO rows
SELECT COUNT(*) AS n, SUM(uid +) AS s
FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND)'''

[pipelines.bad_agg]
sql = """INSERT INTO rows SELECT \
  uid, COUNT(*) AS n FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND)"""

[pipelines.no_into]
sql = "SELECT COUNT(*) AS n FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND)"
on_stop = "flush"
late = "nope"
event_time = { field = "ts", format = "%Q" }
)toml");
  CHECK(errors ==
        std::vector<std::string>{
            "inline.toml:28:6: pipelines.bad_from.sql: unknown source 'acess' (did you mean "
            "'access'?)",
            "inline.toml:33:20: pipelines.bad_into.sql: unknown channel 'rowz' (did you mean "
            "'rows'?)",
            "inline.toml:38:32: pipelines.bad_syntax.sql: expected an expression, got ')'",
            "inline.toml:43:3: pipelines.bad_agg.sql: column 'uid' must appear in GROUP BY or in "
            "an aggregate",
            "inline.toml:46:8: pipelines.no_into.sql: the query has no INSERT INTO <channel>; add "
            "one or set channel = \"NAME\"",
            "inline.toml:47:11: pipelines.no_into.on_stop: must be one of \"emit\", \"keep\", got "
            "\"flush\"",
            "inline.toml:48:1: pipelines.no_into.late: unknown channel 'nope'",
            "inline.toml:49:39: pipelines.no_into.event_time.format: time format \"%Q\": "
            "unsupported directive %Q",
        });
}

TEST_CASE("pipeline config: the source's input channel must be its own and keep needs lmdb",
          "[unit][config][sql]") {
  const auto errors = errors_of(R"toml([agent]
data_dir = "/tmp/x"

[sources.a]
type = "taildir"
paths = ["/tmp/x/*.log"]
channel = "mem"

[sources.b]
type = "taildir"
paths = ["/tmp/y/*.log"]
channels = ["shared", "mem2"]

[sources.c]
type = "taildir"
paths = ["/tmp/z/*.log"]
channel = "shared"

[channels.mem]
type = "memory"
[channels.mem2]
type = "memory"
[channels.shared]
type = "lmdb"
[sinks.n1]
type = "null"
channel = "mem"
[sinks.n2]
type = "null"
channel = "shared"
[sinks.n3]
type = "null"
channel = "mem2"

[pipelines.p1]
sql = "INSERT INTO mem2 SELECT COUNT(*) AS n FROM a GROUP BY TUMBLE(INTERVAL '5' SECOND)"
on_stop = "keep"

[pipelines.p2]
source = "b"
channel = "mem"
sql = "SELECT COUNT(*) AS n FROM t GROUP BY TUMBLE(INTERVAL '5' SECOND)"

[pipelines.p3]
sql = "INSERT INTO shared SELECT COUNT(*) AS n FROM c GROUP BY TUMBLE(INTERVAL '5' SECOND)"
)toml");
  CHECK(errors ==
        std::vector<std::string>{
            "inline.toml:37:11: pipelines.p1.on_stop: \"keep\" needs a durable input, and source "
            "'a' writes to no lmdb channel (its memory channel 'mem' keeps nothing across a "
            "restart); use \"emit\" or add an lmdb channel to sources.a.channels",
            "inline.toml:40:10: pipelines.p2.source: channel 'shared' of source 'b' is also "
            "written by sources.c; a pipeline's input channel must hold only its source's events",
            "inline.toml:45:20: pipelines.p3.sql: channel 'shared' is also a channel of source "
            "'c': the pipeline would read its own rows",
            "inline.toml:45:53: pipelines.p3.sql: channel 'shared' of source 'c' is also "
            "written by sources.b; a pipeline's input channel must hold only its source's events",
        });
}

TEST_CASE("pipeline config: a string's offsets map to file positions", "[unit][config][sql]") {
  // Basic string on line 1: the SQL starts after `sql = "`.
  CHECK(pos("sql = \"SELECT x\"\n", 1, 7, 0) == P{1, 8});
  CHECK(pos("sql = \"SELECT x\"\n", 1, 7, 7) == P{1, 15});
  // Escapes take more characters in the file than in the string.
  CHECK(pos("s = \"a\\\"b\\u00e9c\"", 1, 5, 2) == P{1, 9});   // b
  CHECK(pos("s = \"a\\\"b\\u00e9c\"", 1, 5, 5) == P{1, 16});  // c, after the 2 bytes of é
  // A multi-line string: the newline after the opening quotes is not part of it.
  const std::string ml = "x = 1\nsql = \"\"\"\nSELECT\n  a\"\"\"\n";
  CHECK(pos(ml, 2, 7, 0) == P{3, 1});
  CHECK(pos(ml, 2, 7, 9) == P{4, 3});
  // A literal string keeps backslashes; CRLF line breaks count once.
  const std::string lit = "sql = '''\r\nA\\n\r\nB'''";
  CHECK(pos(lit, 1, 7, 0) == P{2, 1});
  CHECK(pos(lit, 1, 7, 4) == P{3, 1});
  // Characters before the string count once each, as toml++ counts columns.
  CHECK(pos("é = \"ab\"", 1, 5, 1) == P{1, 7});
  // Past the end: the closing quote.
  CHECK(pos("s = 'ab'", 1, 5, 10) == P{1, 8});
}

TEST_CASE("pipeline config: event_time keys are checked", "[unit][config][sql]") {
  const auto errors = errors_of(kBase + R"toml(
[pipelines.p]
sql = "INSERT INTO rows SELECT COUNT(*) AS n FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND)"
event_time = { field = "t", timezone = "Mars/Olympus", watermark = "5s" }
allowed_lateness = "-1s"
late = "raw"
)toml");
  REQUIRE(errors.size() == 4);
  CHECK(
      errors[0] ==
      "inline.toml:26:40: pipelines.p.event_time.timezone: unknown time zone \"Mars/Olympus\" (no "
      "/usr/share/zoneinfo/Mars/Olympus; is the tzdata package installed?)");
  CHECK(errors[1] == "inline.toml:26:56: pipelines.p.event_time.watermark: unknown key");
  CHECK(errors[2] ==
        "inline.toml:27:20: pipelines.p.allowed_lateness: \"-1s\" is not a duration (e.g. "
        "\"250ms\", \"5s\")");
  CHECK(errors[3] ==
        "inline.toml:28:8: pipelines.p.late: channel 'raw' is also a channel of source 'access': "
        "the pipeline would read its late events again");
}

TEST_CASE("pipeline config: event_time without a field delays the source's timestamp",
          "[unit][config][sql]") {
  Registry registry;
  register_builtin_components(registry);
  std::string text = kBase;
  text.replace(text.find("format = \"json\""), 15,
               "format = \"json\"\ntimestamp = { field = \"ts\", format = \"epoch_ms\" }");
  ConfigErrors errors;
  auto cfg = parse_config(text + R"toml(
[pipelines.pv]
sql = "INSERT INTO rows SELECT COUNT(*) AS n FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND)"
event_time = { watermark_delay = "4s" }
)toml",
                          "inline.toml", registry, errors);
  for (const auto& e : errors) INFO(e.str());
  REQUIRE(errors.empty());
  REQUIRE(cfg->pipelines.size() == 1);
  const PipelineSpec& p = cfg->pipelines[0];
  CHECK(p.event_time_field.empty());
  CHECK_FALSE(p.processing_time);
  const sql::RunnerOptions o = runner_options(p);
  CHECK(o.time_source == sql::TimeSource::event_timestamp);
  CHECK(o.watermark_delay_ns == 4'000'000'000);
  // A format or time zone is the field's; without the source's timestamp there is no event time
  // to delay.
  const auto bad = errors_of(kBase + R"toml(
[pipelines.p]
sql = "INSERT INTO rows SELECT COUNT(*) AS n FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND)"
event_time = { format = "epoch_ms" }

[pipelines.q]
sql = "INSERT INTO rows SELECT COUNT(*) AS m FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND)"
event_time = { watermark_delay = "4s" }
)toml");
  REQUIRE(bad.size() == 2);
  CHECK(bad[0] ==
        "inline.toml:26:14: pipelines.p.event_time: format and timezone are those of `field`, "
        "which is missing (without a field, event time is the source's timestamp)");
  CHECK(bad[1] ==
        "inline.toml:30:14: pipelines.q.event_time: no field, and source 'access' has no "
        "`timestamp`: name the field that holds the event time");
}

TEST_CASE("pipeline config: names are checked against a regex source's fields",
          "[unit][config][sql]") {
  std::string text = kBase;
  text.replace(text.find("format = \"json\""), 15,
               "format = \"regex\"\npattern = \"combined\"\n"
               "interceptors = [{ type = \"set\", fields = { dc = \"eu\" } },\n"
               "                { type = \"rename\", fields = { agent = \"ua\" } }]");
  // kBase has 22 lines, these 3 more: the first pipeline is on line 27, GROUP BY checked first.
  const auto errors = errors_of(text + R"toml(
[pipelines.typo]
sql = "INSERT INTO rows SELECT pth, COUNT(*) AS n FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND), pth"

[pipelines.fine]
sql = """INSERT INTO rows SELECT path, dc, ua, COUNT(*) AS n, SUM(size) AS b, MAX(LENGTH(body)) AS l
FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND), path, dc, ua"""
)toml");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] ==
        "inline.toml:28:101: pipelines.typo.sql: unknown column 'pth' (did you mean 'path'?) "
        "(source 'access' has the named groups of its regex, the fields its `set` and `rename` "
        "interceptors add, and body)");
  // A json source's fields are not known before run time: any name is read.
  CHECK(errors_of(kBase + R"toml(
[pipelines.any]
sql = "INSERT INTO rows SELECT pth, COUNT(*) AS n FROM access GROUP BY TUMBLE(INTERVAL '5' SECOND), pth"
)toml")
            .empty());
}

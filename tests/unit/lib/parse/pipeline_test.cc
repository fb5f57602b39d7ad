#include "lib/parse/pipeline.h"

#include <catch2/catch.hpp>

#include "tests/unit/lib/parse/parse_helpers.h"

using namespace sluice;
using namespace sluice::parse;
using sluice::parse::testing::pipeline_config;
using sluice::parse::testing::PipelineFixture;
using Outcome = EventPipeline::Outcome;

TEST_CASE("pipeline: an unparsable record passes raw with a header, counted", "[parse]") {
  PipelineFixture p(R"(format = "json")");
  CHECK(p.feed(R"({"a":1})") == Outcome::kept);
  CHECK(p.feed("{broken") == Outcome::kept);
  REQUIRE(p.out.size() == 2);
  CHECK(p.out[1].body() == "{broken");
  CHECK(p.out[1].header("parse_error") == "json_syntax");
  CHECK(p.out[1].field_count() == 0);
  CHECK(p.counter("sluice_source_parse_errors_total", {{"reason", "json_syntax"}}) == 1);
  CHECK(p.counter("sluice_source_parse_errors_total", {{"reason", "json_utf8"}}) == 0);
}

TEST_CASE("pipeline: on_parse_error drop and dead_letter", "[parse]") {
  PipelineFixture drop(R"(
format = "logfmt"
on_parse_error = "drop")");
  CHECK(drop.feed("a=\"x") == Outcome::dropped);
  CHECK(drop.out.empty());
  CHECK(drop.counter("sluice_source_dropped_total", {{"reason", "parse_error"}}) == 1);

  PipelineFixture dead(R"(
format = "regex"
pattern = "^(?<n>\\d+)$"
on_parse_error = "dead_letter"
parse_error_header = "err")");
  CHECK(dead.feed("12") == Outcome::kept);
  CHECK(dead.feed("x") == Outcome::dead_letter);
  REQUIRE(dead.out.size() == 2);
  CHECK((dead.out[0].flags() & Batch::kDeadLetter) == 0);
  CHECK((dead.out[1].flags() & Batch::kDeadLetter) != 0);
  CHECK(dead.out[1].header("err") == "regex_no_match");
}

TEST_CASE("pipeline: event time from a field, unparsable times keep arrival time", "[parse]") {
  PipelineFixture p(R"(
format = "json"
timestamp = { field = "create_time", format = "%Y-%m-%d %H:%M:%S.%f", timezone = "Asia/Shanghai" })");
  p.feed(R"({"create_time":"2025-06-24 20:30:09.903","uid":1})", 5);
  p.feed(R"({"create_time":"yesterday"})", 6);
  p.feed(R"({"uid":2})", 7);
  REQUIRE(p.out.size() == 3);
  CHECK(p.out[0].timestamp_ns() == 1750768209903000000);
  CHECK(p.out[1].timestamp_ns() == 6);
  CHECK(p.out[2].timestamp_ns() == 7);
  CHECK(p.counter("sluice_source_timestamp_errors_total") == 2);
}

TEST_CASE("pipeline: Flume's interceptors, in order", "[parse]") {
  PipelineFixture p(R"toml(
format = "json"
[[interceptors]]
type = "static"
headers = { dc = "eu1", env = "prod" }
[[interceptors]]
type = "static"
key = "dc"
value = "ignored: preserve_existing is the default"
[[interceptors]]
type = "host"
header = "hostname"
[[interceptors]]
type = "timestamp"
[[interceptors]]
type = "regex_filter"
regex = "\"level\":\"debug\""
exclude = true
[[interceptors]]
type = "regex_extract"
regex = "user=(?<user>\\w+)"
field = "msg"
[[interceptors]]
type = "regex_extract"
regex = "^(\\w+) (\\w+)"
field = "msg"
headers = ["w1", "w2"]
)toml");
  p.feed(R"({"level":"info","msg":"login user=ann ok"})", 1'750'768'209'903'000'000);
  CHECK(p.feed(R"({"level":"debug","msg":"noise"})") == Outcome::dropped);
  REQUIRE(p.out.size() == 1);
  const auto e = p.out[0];
  CHECK(e.header("dc") == "eu1");
  CHECK(e.header("env") == "prod");
  CHECK(e.header("hostname").has_value());
  CHECK(e.header("timestamp") == "1750768209903");
  CHECK(e.header("user") == "ann");
  CHECK(e.header("w1") == "login");
  CHECK(e.header("w2") == "user");
  CHECK(p.counter("sluice_source_dropped_total", {{"reason", "interceptor"}}) == 1);
}

TEST_CASE("pipeline: regex_filter includes only matching events by default", "[parse]") {
  PipelineFixture p(R"(
[[interceptors]]
type = "regex_filter"
regex = "^keep"
)");
  CHECK(p.feed("keep me") == Outcome::kept);
  CHECK(p.feed("drop me") == Outcome::dropped);
}

TEST_CASE("pipeline: drop_fields, rename and set edit parsed fields", "[parse]") {
  PipelineFixture p(R"(
format = "logfmt"
[[interceptors]]
type = "drop_fields"
fields = ["secret"]
[[interceptors]]
type = "rename"
fields = { lvl = "level" }
[[interceptors]]
type = "set"
fields = { app = "shop", level = "overridden" }
)");
  p.feed("lvl=info secret=hunter2 msg=hi");
  REQUIRE(p.out.size() == 1);
  CHECK(p.field(0, "secret") == "<absent>");
  CHECK(p.field(0, "lvl") == "<absent>");
  CHECK(p.field(0, "level") == "overridden");
  CHECK(p.field(0, "app") == "shop");
  CHECK(p.field(0, "msg") == "hi");
}

TEST_CASE("pipeline: sample keeps 1 in N, deterministically by field", "[parse]") {
  PipelineFixture p(R"(
format = "logfmt"
[[interceptors]]
type = "sample"
rate = 10
field = "uid"
)");
  std::size_t kept = 0;
  for (int i = 0; i < 10000; ++i) {
    if (p.feed("uid=" + std::to_string(i % 1000)) == Outcome::kept) ++kept;
  }
  // Each uid is kept always or never: a multiple of 10 (its 10 occurrences), about 1000.
  CHECK(kept % 10 == 0);
  CHECK(kept > 700);
  CHECK(kept < 1300);
  PipelineFixture again(R"(
format = "logfmt"
[[interceptors]]
type = "sample"
rate = 10
field = "uid"
)");
  std::size_t kept_again = 0;
  for (int i = 0; i < 10000; ++i) {
    if (again.feed("uid=" + std::to_string(i % 1000)) == Outcome::kept) ++kept_again;
  }
  CHECK(kept_again == kept);
}

TEST_CASE("pipeline: configuration errors name the key", "[parse]") {
  const auto err = [](std::string_view toml) {
    PipelineConfig cfg;
    return pipeline_config(toml, cfg);
  };
  CHECK_THAT(err(R"(format = "xml")"), Catch::Contains("sources.s.format"));
  CHECK_THAT(err(R"(format = "regex")"), Catch::Contains("missing required key 'pattern'"));
  CHECK_THAT(err(R"(format = "regex"
pattern = "nope")"),
             Catch::Contains("no named groups"));
  CHECK_THAT(err(R"(pattern = "combined")"), Catch::Contains("only applies to format = \"regex\""));
  CHECK_THAT(err(R"(fields = ["a"])"), Catch::Contains("only applies to format = \"json\""));
  CHECK_THAT(err(R"(timestamp = { field = "t" })"), Catch::Contains("needs fields"));
  CHECK_THAT(err(R"(format = "json"
timestamp = { field = "t", format = "%Q" })"),
             Catch::Contains("sources.s.timestamp.format"));
  CHECK_THAT(err(R"(format = "json"
timestamp = { field = "t", timezone = "Nowhere/City" })"),
             Catch::Contains("unknown time zone"));
  CHECK_THAT(err(R"(on_parse_error = "ignore")"), Catch::Contains("sources.s.on_parse_error"));
  CHECK_THAT(err(R"([[interceptors]]
type = "regex_filter"
regex = "(")"),
             Catch::Contains("sources.s.interceptors[0].regex"));
  CHECK_THAT(err(R"([[interceptors]]
type = "sample")"),
             Catch::Contains("missing required key 'rate'"));
  CHECK_THAT(err(R"([[interceptors]]
type = "statik")"),
             Catch::Contains("sources.s.interceptors[0].type"));
  CHECK_THAT(err(R"([[interceptors]]
type = "host"
hedaer = "h")"),
             Catch::Contains("did you mean 'header'"));
  CHECK_THAT(err(R"(interceptors = "host")"), Catch::Contains("expected an array of tables"));
  CHECK(err(R"(format = "regex"
pattern = "combined")")
            .empty());
}

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "lib/parse/pipeline.h"
#include "tests/support/allocation_check.h"
#include "tests/unit/lib/parse/parse_helpers.h"

using namespace sluice;
using sluice::parse::EventPipeline;
using sluice::parse::testing::PipelineFixture;

TEST_CASE("pipeline: a warm json pipeline with event time allocates nothing per event", "[parse]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  PipelineFixture p(
      "format = \"json\"\n"
      "timestamp = { field = \"create_time\", format = \"%Y-%m-%d %H:%M:%S.%f\", "
      "timezone = \"Asia/Shanghai\" }\n");
  // The bench's lines, with an escaped string and a nested object added.
  std::vector<std::string> lines;
  for (int i = 0; i < 200; ++i) {
    lines.push_back("{\"create_time\":\"2025-06-24 20:30:" + std::to_string(10 + i % 50) +
                    ".020\",\"event\":\"login\",\"game_id\":\"g" + std::to_string(i % 7) +
                    "\",\"uid\":" + std::to_string(148950000 + i) +
                    ",\"x\":1.5,\"esc\":\"a\\\"b\",\"o\":{\"k\":[1,2]},\"msg\":\"" +
                    std::string(90, 'x') + "\"}");
  }
  for (const auto& l : lines) REQUIRE(p.feed(l) == EventPipeline::Outcome::kept);
  p.out.clear();
  test::AllocationCounter allocs;
  for (int round = 0; round < 5; ++round) {
    for (const auto& l : lines) p.feed(l);
    p.out.clear();
  }
  CHECK(allocs.count() == 0);
  for (const auto& l : lines) p.feed(l);
  REQUIRE(p.out.size() == lines.size());
  CHECK(p.field(0, "esc") == "a\"b");
  CHECK(p.field(0, "o") == R"({"k":[1,2]})");
  CHECK(p.field(199, "uid") == "148950199");
  // 2025-06-24 20:30:10.020 in Shanghai (UTC+8) is 12:30:10.020 UTC.
  CHECK(p.out[0].timestamp_ns() == 1750768210020000000);
}

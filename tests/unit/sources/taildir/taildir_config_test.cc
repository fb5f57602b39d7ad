#include <toml++/toml.h>

#include <catch2/catch.hpp>

#include "sources/taildir/taildir_source.h"

using namespace sluice;
using namespace sluice::sources;

namespace {

std::optional<TaildirConfig> parse_taildir(std::string_view text, std::vector<std::string>& out) {
  static toml::table doc;  // the node refers into it
  doc = toml::parse(text, std::string_view("inline.toml"));
  ConfigNode node(*doc["sources"]["t"].as_table(), "sources.t", "inline.toml");
  ConfigErrors errors;
  auto c = TaildirConfig::parse(node, errors);
  for (const auto& e : errors) out.push_back(e.str());
  return c;
}

}  // namespace

TEST_CASE("taildir config: checkpoint_bytes defaults to 4 MiB and is checked",
          "[unit][taildir][config]") {
  std::vector<std::string> errors;
  auto c = parse_taildir(R"([sources.t]
paths = ["/var/log/*.log"]
)",
                         errors);
  REQUIRE(c.has_value());
  CHECK(c->checkpoint_bytes.bytes == 4ULL << 20);
  errors.clear();
  c = parse_taildir(R"([sources.t]
paths = ["/var/log/*.log"]
checkpoint_bytes = "1KiB"
)",
                    errors);
  CHECK_FALSE(c.has_value());
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] ==
        "inline.toml:3:20: sources.t.checkpoint_bytes: must be in [64KiB, 1TiB], got 1KiB");
}

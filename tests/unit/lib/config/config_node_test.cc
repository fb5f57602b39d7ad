#include "lib/config/config_node.h"

#include <catch2/catch.hpp>

using namespace sluice;

namespace {

enum class Fruit : std::uint8_t { apple, banana, cherry };

struct Read {
  Fruit fruit = Fruit::banana;
  bool ok = false;
  std::vector<std::string> errors;
};

Read read_fruit(std::string_view text) {
  toml::table table = toml::parse(text, std::string_view("inline.toml"));
  ConfigNode node(table, "sources.s", "inline.toml");
  ConfigErrors errors;
  Read r;
  r.ok = node.optional_enum(
      "fruit", r.fruit, errors,
      {{"apple", Fruit::apple}, {"banana", Fruit::banana}, {"cherry", Fruit::cherry}});
  node.reject_unknown_keys(errors);
  for (const auto& e : errors) r.errors.push_back(e.str());
  return r;
}

}  // namespace

TEST_CASE("optional_enum maps a name to its value", "[unit][config]") {
  const Read r = read_fruit("fruit = \"cherry\"\n");
  CHECK(r.ok);
  CHECK(r.fruit == Fruit::cherry);
  CHECK(r.errors.empty());
}

TEST_CASE("optional_enum keeps the default when the key is absent", "[unit][config]") {
  const Read r = read_fruit("");
  CHECK(r.ok);
  CHECK(r.fruit == Fruit::banana);
  CHECK(r.errors.empty());
}

TEST_CASE("optional_enum lists the allowed names and suggests one", "[unit][config]") {
  const Read r = read_fruit("fruit = \"chery\"\n");
  CHECK_FALSE(r.ok);
  CHECK(r.fruit == Fruit::banana);
  CHECK(
      r.errors ==
      std::vector<std::string>{
          R"(inline.toml:1:9: sources.s.fruit: must be one of "apple", "banana", "cherry", got "chery" (did you mean 'cherry'?))"});
}

TEST_CASE("optional_enum names the wrong type", "[unit][config]") {
  const Read r = read_fruit("fruit = 3\n");
  CHECK_FALSE(r.ok);
  CHECK(r.errors == std::vector<std::string>{
                        "inline.toml:1:9: sources.s.fruit: expected a string, got an integer"});
}

TEST_CASE("optional_enum maps to a bool", "[unit][config]") {
  toml::table table = toml::parse("compression = \"deflate\"\n", std::string_view("inline.toml"));
  ConfigNode node(table, "sinks.k", "inline.toml");
  ConfigErrors errors;
  bool deflate = false;
  CHECK(node.optional_enum("compression", deflate, errors, {{"none", false}, {"deflate", true}}));
  CHECK(deflate);
  CHECK(errors.empty());
}

TEST_CASE("error_at_element points at the element and names its index", "[unit][config]") {
  toml::table table =
      toml::parse("allow = [\"a\", \"bb\", \"c\"]\n", std::string_view("inline.toml"));
  ConfigNode node(table, "sources.s", "inline.toml");
  ConfigErrors errors;
  node.error_at_element("allow", 1, errors, "is bad");
  node.warning_at("allow", errors, "is odd");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].str() == "inline.toml:1:15: sources.s.allow[1]: is bad");
  REQUIRE(errors.warnings().size() == 1);
  CHECK(errors.warnings()[0].str() == "inline.toml:1:9: sources.s.allow: is odd");
}

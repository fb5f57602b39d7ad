#include "lib/config/secret.h"

#include <sys/stat.h>
#include <toml++/toml.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <optional>
#include <sstream>

#include "tests/support/test_support.h"

using namespace sluice;

namespace {

struct Read {
  bool ok = false;
  Secret secret;
  std::vector<std::string> errors;
};

Read read_key(std::string_view text, bool required = false) {
  static toml::table doc;  // the node refers into it
  doc = toml::parse(text, std::string_view("inline.toml"));
  ConfigNode node(*doc["sinks"]["s"].as_table(), "sinks.s", "inline.toml");
  ConfigErrors errors;
  Read r;
  r.ok = read_secret(node, "token", r.secret, errors, required);
  node.reject_unknown_keys(errors);
  for (const auto& e : errors) r.errors.push_back(e.str());
  return r;
}

}  // namespace

TEST_CASE("secret: inline env and file forms", "[unit][config][secret]") {
  Read r = read_key("[sinks.s]\ntoken = \"abc\"\n");
  CHECK(r.ok);
  CHECK(r.errors.empty());
  CHECK(r.secret.reveal() == "abc");
  CHECK(r.secret.origin() == "inline");

  ::setenv("SLUICE_TEST_SECRET", "from-env", 1);
  r = read_key("[sinks.s]\ntoken = { env = \"SLUICE_TEST_SECRET\" }\n");
  CHECK(r.ok);
  CHECK(r.secret.reveal() == "from-env");
  CHECK(r.secret.origin() == "env SLUICE_TEST_SECRET");

  test::TempDir dir;
  test::write_file(dir.file("key"), "from-file\n");
  r = read_key("[sinks.s]\ntoken = { file = \"" + dir.file("key") + "\" }\n");
  CHECK(r.ok);
  CHECK(r.secret.reveal() == "from-file");  // the trailing newline is not part of it
  CHECK(r.secret.origin() == "file " + dir.file("key"));

  r = read_key("[sinks.s]\n");
  CHECK(r.ok);
  CHECK(r.secret.empty());
}

TEST_CASE("secret: errors name the position and never the value", "[unit][config][secret]") {
  Read r = read_key("[sinks.s]\n", /*required=*/true);
  CHECK_FALSE(r.ok);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == "inline.toml:1:1: sinks.s: missing required key 'token'");

  r = read_key("[sinks.s]\ntoken = 5\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] ==
        "inline.toml:2:9: sinks.s.token: expected a string, { env = \"NAME\" } or { file = "
        "\"/path\" }");

  r = read_key("[sinks.s]\ntoken = \"\"\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == "inline.toml:2:9: sinks.s.token: is empty");

  r = read_key("[sinks.s]\ntoken = { env = \"A\", file = \"/b\" }\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] ==
        "inline.toml:2:9: sinks.s.token: give exactly one of env = \"NAME\" or file = \"/path\"");

  r = read_key("[sinks.s]\ntoken = { evn = \"A\" }\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == "inline.toml:2:11: sinks.s.token.evn: unknown key (did you mean 'env'?)");

  ::setenv("SLUICE_TEST_EMPTY", "", 1);
  r = read_key("[sinks.s]\ntoken = { env = \"SLUICE_TEST_EMPTY\" }\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] ==
        "inline.toml:2:17: sinks.s.token.env: environment variable 'SLUICE_TEST_EMPTY' is empty");

  test::TempDir dir;
  test::write_file(dir.file("empty"), "\n");
  r = read_key("[sinks.s]\ntoken = { file = \"" + dir.file("empty") + "\" }\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] ==
        "inline.toml:2:18: sinks.s.token.file: secret file '" + dir.file("empty") + "' is empty");

  // Too large, and not a regular file: a FIFO with no writer must not hang the configuration load.
  test::write_file(dir.file("huge"), std::string(65 * 1024, 'k'));
  r = read_key("[sinks.s]\ntoken = { file = \"" + dir.file("huge") + "\" }\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == "inline.toml:2:18: sinks.s.token.file: secret file '" + dir.file("huge") +
                           "' is larger than 64 KiB");
  REQUIRE(::mkfifo(dir.file("fifo").c_str(), 0600) == 0);
  r = read_key("[sinks.s]\ntoken = { file = \"" + dir.file("fifo") + "\" }\n");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == "inline.toml:2:18: sinks.s.token.file: secret file '" + dir.file("fifo") +
                           "' is not a regular file");
}

TEST_CASE("secret: formatting shows no value", "[unit][config][secret]") {
  const Secret s("hunter2", "inline");
  CHECK(fmt::format("{}", s) == "<redacted>");
  CHECK(fmt::format("token={:>12}", s) == "token=  <redacted>");
}

#include "lib/config/units.h"

#include <catch2/catch.hpp>

using namespace sluice;
using namespace std::chrono_literals;

TEST_CASE("durations parse and print", "[unit][config]") {
  CHECK(parse_duration("250ms") == std::optional<std::chrono::nanoseconds>(250ms));
  CHECK(parse_duration("5s") == std::optional<std::chrono::nanoseconds>(5s));
  CHECK(parse_duration("1.5m") == std::optional<std::chrono::nanoseconds>(90s));
  CHECK(parse_duration("2h") == std::optional<std::chrono::nanoseconds>(7200s));
  CHECK(parse_duration("10us") == std::optional<std::chrono::nanoseconds>(10us));
  CHECK_FALSE(parse_duration("5 sec"));
  CHECK_FALSE(parse_duration("5"));
  CHECK_FALSE(parse_duration("-5s"));
  CHECK_FALSE(parse_duration(""));
  CHECK_FALSE(parse_duration("s"));
  CHECK(format_duration(250ms) == "250ms");
  CHECK(format_duration(90s) == "90s");
  CHECK(format_duration(2min) == "2m");
}

TEST_CASE("sizes parse and print", "[unit][config]") {
  CHECK(parse_size("64MiB")->bytes == 64ULL << 20);
  CHECK(parse_size("10MB")->bytes == 10'000'000);
  CHECK(parse_size("512KiB")->bytes == 512 * 1024);
  CHECK(parse_size("4096")->bytes == 4096);
  CHECK(parse_size("1.5KiB")->bytes == 1536);
  CHECK_FALSE(parse_size("1.3B"));
  CHECK_FALSE(parse_size("64 MiB"));
  CHECK_FALSE(parse_size("64mb"));
  CHECK(format_size({64ULL << 20}) == "64MiB");
  CHECK(format_size({1000}) == "1000");
}

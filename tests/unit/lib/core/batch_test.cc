#include "lib/core/batch.h"

#include <catch2/catch.hpp>

#include "tests/support/allocation_check.h"
#include "tests/support/test_support.h"

using namespace sluice;

TEST_CASE("batch keeps bodies, headers, fields, timestamp and id", "[unit][core]") {
  Batch b;
  b.add("hello", 42, 7);
  b.add_field("level", "info", FieldType::string);
  b.add_header("host", "web01");  // a header after a field still lands among the headers
  b.add_header("path", "/var/log/a.log");
  b.add("", 43, 8);
  b.add("world", 44, 9);
  REQUIRE(b.size() == 3);
  CHECK(b[0].body() == "hello");
  CHECK(b[0].timestamp_ns() == 42);
  CHECK(b[0].id() == 7);
  REQUIRE(b[0].header_count() == 2);
  CHECK(b[0].header(0).key == "host");
  CHECK(b[0].header(1).value == "/var/log/a.log");
  CHECK(b[0].header("path") == std::optional<std::string_view>("/var/log/a.log"));
  CHECK_FALSE(b[0].header("nope").has_value());
  REQUIRE(b[0].field_count() == 1);
  CHECK(b[0].field(0).key == "level");
  CHECK(b[0].field(0).text == "info");
  CHECK(b[1].body().empty());
  CHECK(b[1].header_count() == 0);
  CHECK(b[2].body() == "world");
  CHECK(b.bytes() == 5 + 4 + 5 + 4 + 5 + 4 + 14 + 5);
}

TEST_CASE("batch append_range copies events with their headers", "[unit][core]") {
  Batch a;
  for (int i = 0; i < 5; ++i) {
    a.add("body" + std::to_string(i), i, static_cast<std::uint64_t>(i));
    a.add_header("n", std::to_string(i));
  }
  Batch b;
  b.add("first", 0, 0);
  b.append_range(a, 2, 4);
  REQUIRE(b.size() == 3);
  CHECK(b[1].body() == "body2");
  CHECK(b[1].header("n") == std::optional<std::string_view>("2"));
  CHECK(b[2].body() == "body3");
  CHECK(b[2].header("n") == std::optional<std::string_view>("3"));
  CHECK(b[2].timestamp_ns() == 3);
  CHECK(b.bytes() == 5 + a.bytes(2, 4));
}

TEST_CASE("a warm batch does not allocate", "[unit][core]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  Batch b;
  for (int i = 0; i < 100; ++i) b.add("0123456789abcdef0123456789abcdef", i, 1);
  b.clear();
  test::AllocationCounter allocs;
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < 100; ++i) b.add("0123456789abcdef0123456789abcdef", i, 1);
    b.clear();
  }
  CHECK(allocs.count() == 0);
}

TEST_CASE("common headers are stored once and seen by every event", "[unit][core]") {
  Batch a;
  a.set_common_header("file", "/var/log/a.log");
  a.add("one", 1, 1);
  a.add_header("own", "x");
  a.add("two", 2, 2);
  REQUIRE(a[0].header_count() == 2);
  CHECK(a[0].header(0).key == "own");
  CHECK(a[0].header(1).value == "/var/log/a.log");
  CHECK(a[1].header("file") == std::optional<std::string_view>("/var/log/a.log"));
  Batch copy;
  copy.append_range(a, 1, 2);  // an empty batch takes the common headers along
  CHECK(copy[0].header("file") == std::optional<std::string_view>("/var/log/a.log"));
  CHECK(copy.same_common_headers(a));
  Batch other;
  other.set_common_header("file", "/var/log/b.log");
  CHECK_FALSE(other.same_common_headers(a));
  copy.clear();
  CHECK(copy.common_header_count() == 0);
}

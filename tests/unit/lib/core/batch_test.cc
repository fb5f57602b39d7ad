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

TEST_CASE("add_event stores what add add_header and add_field store", "[unit][core]") {
  const Header headers[] = {{"host", "web01"}, {"", ""}, {"path", "/var/log/a.log"}};
  const Field fields[] = {{"level", "info", FieldType::string},
                          {"n", "-12", FieldType::integer},
                          {"", "", FieldType::null},
                          {"o", R"({"k":[1]})", FieldType::json}};
  Batch one, each;
  for (int i = 0; i < 3; ++i) {
    const std::string body = i == 1 ? std::string() : "body" + std::to_string(i);
    one.add_event(body, 40 + i, static_cast<std::uint64_t>(i), headers, 3, fields, 4);
    one.add_event(body, 50 + i, 9, nullptr, 0, nullptr, 0);  // an empty event: nothing to copy
    each.add(body, 40 + i, static_cast<std::uint64_t>(i));
    for (const auto& h : headers) each.add_header(h.key, h.value);
    for (const auto& f : fields) each.add_field(f.key, f.text, f.type);
    each.add(body, 50 + i, 9);
  }
  REQUIRE(one.size() == each.size());
  CHECK(one.bytes() == each.bytes());
  CHECK(one.bytes() == 3 * (5 + 4 + 5 + 4 + 14 + 5 + 4 + 1 + 3 + 1 + 9) - 5 + 2 * 5);
  for (std::size_t i = 0; i < one.size(); ++i) {
    INFO(i);
    const EventView a = one[i], b = each[i];
    CHECK(a.body() == b.body());
    CHECK(a.timestamp_ns() == b.timestamp_ns());
    CHECK(a.id() == b.id());
    CHECK(a.bytes() == b.bytes());
    REQUIRE(a.header_count() == b.header_count());
    for (std::size_t h = 0; h < a.header_count(); ++h) {
      CHECK(a.header(h).key == b.header(h).key);
      CHECK(a.header(h).value == b.header(h).value);
    }
    REQUIRE(a.field_count() == b.field_count());
    for (std::size_t f = 0; f < a.field_count(); ++f) {
      CHECK(a.field(f).key == b.field(f).key);
      CHECK(a.field(f).text == b.field(f).text);
      CHECK(a.field(f).type == b.field(f).type);
    }
  }
  // Copies of events made with add_event keep their fields.
  Batch copy;
  copy.append_range(one, 2, 4);
  REQUIRE(copy.size() == 2);
  CHECK(copy[0].field(3).text == R"({"k":[1]})");
  CHECK(copy[0].header("path") == std::optional<std::string_view>("/var/log/a.log"));
  CHECK(copy.bytes() == one.bytes(2, 4));
}

TEST_CASE("add_event keeps field keys and values that are parts of the body uncopied",
          "[unit][core]") {
  const std::string storage = R"({"level":"info","n":-12})"
                              "XYZ";
  const std::string_view body(storage.data(), storage.size() - 3), b = body;
  const std::string elsewhere = "unescaped";
  // Views into the body (as a parser gives them), one value from elsewhere, one that starts
  // inside the body and runs past its end (copied), and an empty one.
  const Field fields[] = {
      {b.substr(2, 5), b.substr(10, 4), FieldType::string},
      {b.substr(17, 1), b.substr(20, 3), FieldType::integer},
      {b.substr(2, 5), elsewhere, FieldType::string},
      {"tail", std::string_view(body.data() + body.size() - 2, 3), FieldType::string},
      {"", "", FieldType::null}};
  Batch batch;
  batch.add_event(body, 1, 2, nullptr, 0, fields, 5);
  batch.add_event(body, 1, 3, nullptr, 0, fields, 2);
  // Only what is not wholly inside the body is stored: "unescaped", "tail" and "2}X".
  CHECK(batch[0].bytes() == body.size() + 9 + 4 + 3);
  CHECK(batch[1].bytes() == body.size());
  CHECK(batch.bytes() == 2 * body.size() + 16);
  auto check = [&](const Batch& in, std::size_t i, std::size_t n) {
    INFO("event " << i);
    const EventView e = in[i];
    CHECK(e.body() == body);
    REQUIRE(e.field_count() == n);
    const char* const keys[] = {"level", "n", "level", "tail", ""};
    const char* const texts[] = {"info", "-12", "unescaped", "2}X", ""};
    for (std::size_t f = 0; f < n; ++f) {
      CHECK(e.field(f).key == keys[f]);
      CHECK(e.field(f).text == texts[f]);
      CHECK(e.field(f).type == fields[f].type);
    }
  };
  check(batch, 0, 5);
  check(batch, 1, 2);
  // A copy keeps them as parts of the copied body.
  Batch copy;
  copy.append_range(batch, 0, 2);
  check(copy, 0, 5);
  check(copy, 1, 2);
  CHECK(copy.bytes() == batch.bytes());
}

TEST_CASE("a batch arena grows past its first buffer and copies keep every byte", "[unit][core]") {
  Batch b;
  std::string expect;
  for (int i = 0; i < 2000; ++i) {
    const std::string body(static_cast<std::size_t>(i % 97), static_cast<char>('a' + i % 26));
    b.add(body, i, 1);
    b.add_field("k", std::to_string(i), FieldType::integer);
  }
  const Batch copy = b;  // NOLINT(performance-unnecessary-copy-initialization): the copy is tested
  Batch tmp = b;
  Batch moved = std::move(tmp);
  b.clear();
  b.add("after clear", 1, 1);
  const Batch* const both[] = {&copy, &moved};
  for (const Batch* x : both) {
    REQUIRE(x->size() == 2000);
    for (int i = 0; i < 2000; i += 7) {
      const auto e = (*x)[static_cast<std::size_t>(i)];
      CHECK(e.body() ==
            std::string(static_cast<std::size_t>(i % 97), static_cast<char>('a' + i % 26)));
      CHECK(e.field(0).text == std::to_string(i));
    }
  }
  CHECK(b[0].body() == "after clear");
  b.release();
  CHECK(b.capacity_bytes() == 0);
  b.add("after release", 2, 2);
  CHECK(b[0].body() == "after release");
}

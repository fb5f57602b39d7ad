#include "lib/codec/json.h"

#include <catch2/catch.hpp>

using namespace sluice;
using namespace sluice::codec;

TEST_CASE("json strings are escaped and invalid UTF-8 replaced", "[unit][sink]") {
  std::string out;
  append_json_string(out, "a\"b\\c\nd\te\x01 caf\xc3\xa9 \xff");
  CHECK(out == "a\\\"b\\\\c\\nd\\te\\u0001 caf\xc3\xa9 \xef\xbf\xbd");
}

TEST_CASE("rfc3339 with nanoseconds", "[unit][sink]") {
  std::string out;
  append_rfc3339(out, 1'750'797'009'903'000'001);
  CHECK(out == "2025-06-24T20:30:09.903000001Z");
}

TEST_CASE("batches encode as body lines or json lines", "[unit][sink]") {
  Batch b;
  b.add("line one", 1'000'000'000, 0xabc);
  b.add_header("host", "web\"01");
  b.add_field("n", "42", FieldType::integer);
  b.add_field("s", "x", FieldType::string);
  b.add("two", 2'000'000'000, 1);
  std::string body;
  encode_batch(b, OutputFormat::body, body);
  CHECK(body == "line one\ntwo\n");
  std::string json;
  encode_batch(b, OutputFormat::json, json);
  CHECK(json ==
        "{\"timestamp\":\"1970-01-01T00:00:01.000000000Z\",\"id\":\"0000000000000abc\",\"headers\":"
        "{\"host\":\"web\\\"01\"},"
        "\"fields\":{\"n\":42,\"s\":\"x\"},\"body\":\"line one\"}\n"
        "{\"timestamp\":\"1970-01-01T00:00:02.000000000Z\",\"id\":\"0000000000000001\",\"headers\":"
        "{},\"fields\":{},"
        "\"body\":\"two\"}\n");
}

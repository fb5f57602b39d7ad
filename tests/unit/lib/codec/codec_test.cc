#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "lib/codec/atomic_file.h"
#include "lib/codec/hash.h"
#include "lib/codec/json.h"
#include "lib/codec/zstream.h"

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

TEST_CASE("fnv1a64 never changes", "[unit][codec]") {
  // Stored fingerprints (taildir positions), event ids and sampling depend on these values.
  STATIC_REQUIRE(fnv1a64("") == 0x14650fb0739d0383ULL);
  CHECK(fnv1a64("a") == 0x44bd8ad473cd9906ULL);
  CHECK(fnv1a64("foobar") == 0x88fad7c0a8ff07f2ULL);
  // Continued over pieces, it is the hash of the whole; with another basis, the published FNV-1a.
  CHECK(fnv1a64("bar", fnv1a64("foo")) == fnv1a64("foobar"));
  CHECK(fnv1a64("a", 0xcbf29ce484222325ULL) == 0xaf63dc4c8601ec8cULL);
}

TEST_CASE("write_file_atomic replaces a file whole and says what failed", "[unit][codec]") {
  char dir_template[] = "/tmp/sluice-atomic-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string path = dir + "/state.json";
  REQUIRE(write_file_atomic(path, "first").ok());
  const std::string big(1 << 20, 'x');
  REQUIRE(write_file_atomic(path, big).ok());
  std::ifstream in(path, std::ios::binary);
  const std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(got == big);
  CHECK(::access((path + ".tmp").c_str(), F_OK) != 0);  // nothing left behind
  const Status missing = write_file_atomic(dir + "/no/such/dir/file", "x");
  CHECK_FALSE(missing.ok());
  CHECK(missing.message().find("open " + dir + "/no/such/dir/file.tmp") != std::string::npos);
  std::filesystem::remove_all(dir);
}

namespace {
std::string gzip_of(const std::string& in) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, in.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}
std::string zstd_of(const std::string& in) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  const std::size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
  REQUIRE_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}
}  // namespace

TEST_CASE("gzip bodies decode whole and a bomb or a cut body is an error", "[unit][codec]") {
  const std::string text(300'000, 'a');
  const std::string packed = gzip_of(text);
  {
    codec::Inflater z(1 << 20, codec::Inflater::Wrapper::gzip);
    std::string out;
    REQUIRE(z.write(packed, out).ok());
    CHECK(z.ended());
    CHECK(out == text);
  }
  {
    codec::Inflater z(100'000, codec::Inflater::Wrapper::gzip);
    std::string out;
    const Status st = z.write(packed, out);
    CHECK(st.message() == "compressed data expands beyond 100000 bytes");
    CHECK(z.exceeded());
    CHECK(out.size() <= 100'001);
  }
  {
    codec::Inflater z(1 << 20, codec::Inflater::Wrapper::gzip);
    std::string out;
    CHECK(z.write(packed.substr(0, packed.size() / 2), out).ok());
    CHECK_FALSE(z.ended());  // the caller says "truncated"
  }
  {
    codec::Inflater z(1 << 20, codec::Inflater::Wrapper::gzip);
    std::string out;
    CHECK(z.write("not gzip at all", out).message().find("not valid gzip: ") == 0);
    CHECK_FALSE(z.exceeded());
  }
}

TEST_CASE("zstd bodies decode whole and a bomb or a cut body is an error", "[unit][codec]") {
  const std::string text(300'000, 'b');
  const std::string packed = zstd_of(text);
  codec::ZstdDecoder d;
  bool exceeded = true;
  std::string out;
  REQUIRE(d.decode(packed, 1 << 20, out, exceeded).ok());
  CHECK_FALSE(exceeded);
  CHECK(out == text);
  out.clear();
  CHECK(d.decode(packed, 100'000, out, exceeded).message() ==
        "compressed data expands beyond 100000 bytes");
  CHECK(exceeded);
  out.clear();
  CHECK(d.decode(packed.substr(0, packed.size() - 3), 1 << 20, out, exceeded).message() ==
        "truncated zstd body");
  CHECK_FALSE(exceeded);
  out.clear();
  CHECK(d.decode("garbage!", 1 << 20, out, exceeded).message().find("not valid zstd: ") == 0);
  out.clear();
  REQUIRE(d.decode(packed, 1 << 20, out, exceeded).ok());  // the context is reused after errors
  CHECK(out == text);
}

// The encoder copies plain ASCII eight bytes at a time: a byte that needs care at any position of
// a long run must still be seen.
TEST_CASE("json strings escape a special byte at any position of a long run", "[unit][codec]") {
  const std::string specials[] = {"\"", "\\", "\n", "\x01", "\x1f", "\xc3\xa9", "\xff", "\x7f"};
  for (const std::string& sp : specials) {
    std::string expected_sp;
    append_json_string(expected_sp, sp);  // a string of one special: the byte-by-byte path
    for (std::size_t pos = 0; pos < 41; ++pos) {
      std::string in(41, 'a');
      in.replace(pos, 1, sp);
      std::string out;
      append_json_string(out, in);
      CHECK(out == std::string(pos, 'a') + expected_sp + std::string(40 - pos, 'a'));
    }
  }
  std::string out;
  append_rfc3339(out, 1'750'797'009'000'000'000);
  append_rfc3339(out, 1'750'797'009'000'000'007);  // the same second, from the cache
  append_rfc3339(out, -1);
  CHECK(out ==
        "2025-06-24T20:30:09.000000000Z2025-06-24T20:30:09.000000007Z"
        "1969-12-31T23:59:59.999999999Z");
}

#include "sources/taildir/positions.h"

#include <catch2/catch.hpp>

#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::sources;
using namespace sluice::test;

namespace {
SavedPosition pos(std::string path, dev_t dev, ino_t ino, std::uint64_t offset) {
  return SavedPosition{std::move(path), FileIdentity{dev, ino, 256, 0xfeedface12345678ULL}, offset};
}
}  // namespace

TEST_CASE("positions: the JSON text round-trips, paths with quotes and control bytes too",
          "[unit][taildir]") {
  const std::vector<SavedPosition> in = {
      pos("/var/log/a.log", 2049, 12, 100), pos("/var/log/\"odd\"\\name\n\x01.log", 2049, 13, 0),
      pos("/var/log/\xc3\xa9t\xc3\xa9.log", 1, UINT32_MAX, 1ULL << 40)};
  const std::string text = encode_positions(in);
  CHECK(text.rfind("[\n{\"path\":\"/var/log/a.log\",\"dev\":2049,\"ino\":12,\"fp_len\":256,", 0) ==
        0);
  auto out = decode_positions(text, "p.json");
  REQUIRE(out.has_value());
  CHECK(*out == in);
  auto empty = decode_positions(encode_positions({}), "p.json");
  REQUIRE(empty.has_value());
  CHECK(empty->empty());
}

TEST_CASE("positions: malformed text is a clear error that names the file", "[unit][taildir]") {
  auto error_of = [](std::string_view text) {
    auto r = decode_positions(text, "/d/p.json");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code() == Errc::invalid_data);
    return r.error().message();
  };
  CHECK(error_of("{}") ==
        "positions file /d/p.json is malformed (not an array); move it away to start over");
  CHECK(error_of("[1]") ==
        "positions file /d/p.json is malformed (an entry is not an object); "
        "move it away to start over");
  CHECK(error_of(R"([{"path":"/x","dev":1,"ino":2,"fp_len":0,"fp_hash":0}])") ==
        "positions file /d/p.json is malformed (an entry lacks path, dev, ino, fp_len, fp_hash or "
        "offset); move it away to start over");
  CHECK(error_of(R"([{"path":"/x","dev":-1,"ino":2,"fp_len":0,"fp_hash":0,"offset":0}])")
            .find("an entry lacks") != std::string::npos);
  CHECK(error_of("[{\"path\":\"/x\",\"dev\":1").find("is malformed") != std::string::npos);
}

TEST_CASE("positions: saved atomically, a missing file is a first start", "[unit][taildir]") {
  TempDir dir;
  const std::string path = dir.file("p.json");
  auto none = load_positions(path);
  REQUIRE(none.has_value());
  CHECK(none->empty());
  const std::vector<SavedPosition> in = {pos("/a", 1, 2, 3)};
  REQUIRE(save_positions(path, in).ok());
  auto back = load_positions(path);
  REQUIRE(back.has_value());
  CHECK(*back == in);
  CHECK(read_file(path) == encode_positions(in));
  CHECK_FALSE(save_positions(dir.file("missing/p.json"), in).ok());
}

TEST_CASE("positions: the channel's position codec round-trips and wins over the file's",
          "[unit][taildir]") {
  const SavedPosition p = pos("/var/log/with space.log", 2049, 77, 4096);
  CHECK(channel_position_key(p.id) == "2049:77");
  const std::string value = encode_channel_position(p);
  CHECK(value == "2049 77 256 18369614218089748088 4096 /var/log/with space.log");
  CHECK(decode_channel_position(value) == p);
  CHECK_FALSE(decode_channel_position("2049 77 256").has_value());
  CHECK_FALSE(decode_channel_position("").has_value());

  std::vector<std::pair<std::string, std::string>> malformed;
  const auto merged =
      merge_positions({pos("/var/log/old name.log", 2049, 77, 100), pos("/b", 1, 5, 9)},
                      {{"2049:77", value}, {"1:6", "garbage"}}, malformed);
  REQUIRE(merged.size() == 2);
  CHECK(merged[0] == pos("/b", 1, 5, 9));
  CHECK(merged[1] == p);  // the channel's exact position replaces the file's
  REQUIRE(malformed.size() == 1);
  CHECK(malformed[0].first == "1:6");
}

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "lib/avro/codec.h"

using namespace sluice;

namespace {

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// A frame of `serial` whose payload is split into buffers of at most `piece` bytes (as Avro's
// Java clients send 8 KiB buffers).
std::string frame_of(std::int32_t serial, const std::string& payload, std::size_t piece) {
  std::vector<std::string> parts;
  for (std::size_t at = 0; at < payload.size(); at += piece)
    parts.push_back(payload.substr(at, piece));
  std::string out =
      be32(static_cast<std::uint32_t>(serial)) + be32(static_cast<std::uint32_t>(parts.size()));
  for (const auto& p : parts) out += be32(static_cast<std::uint32_t>(p.size())) + p;
  return out;
}

}  // namespace

TEST_CASE("avro frames: buffers and reads in any split give the payload back", "[unit][avro]") {
  std::string payload;
  for (int i = 0; payload.size() < 100'000; ++i) payload += std::to_string(i) + ",";
  const std::string wire = frame_of(7, payload, 8192) + frame_of(8, "tail", 8192);
  for (std::size_t step : {std::size_t{1}, std::size_t{3}, std::size_t{4096}, wire.size()}) {
    avro::FrameDecoder d;
    std::vector<std::pair<std::int32_t, std::string>> got;
    for (std::size_t at = 0; at < wire.size(); at += step) {
      const Status st = d.feed(std::string_view(wire).substr(at, step),
                               [&](std::int32_t s, std::string_view p) { got.emplace_back(s, p); });
      REQUIRE(st.ok());
    }
    REQUIRE(got.size() == 2);
    CHECK(got[0].first == 7);
    CHECK(got[0].second == payload);
    CHECK(got[1].first == 8);
    CHECK(got[1].second == "tail");
    CHECK(d.buffered() == 0);
  }
}

TEST_CASE("avro frames: a large frame's buffer is freed, a small one's kept for the next",
          "[unit][avro]") {
  avro::FrameDecoder d;
  const std::string big(avro::FrameDecoder::kKeepBytes + 1, 'b');
  std::size_t seen = 0;
  REQUIRE(d.feed(frame_of(1, big, 65536), [&](std::int32_t, std::string_view p) {
             seen = p.size();
           }).ok());
  CHECK(seen == big.size());
  // A connection that sent one large frame does not hold its size while it stays open.
  CHECK(d.frame_buffer().capacity() == 0);
  REQUIRE(d.feed(frame_of(2, "small", 8192), [](std::int32_t, std::string_view) {}).ok());
  CHECK(d.frame_buffer().capacity() > 0);
  CHECK(d.frame_buffer().size() == 0);
}

TEST_CASE("avro frames: a callback that takes the buffer keeps the frame without a copy",
          "[unit][avro]") {
  avro::FrameDecoder d;
  const std::string payload(300'000, 'x');
  const std::string wire = frame_of(1, payload, 8192) + frame_of(2, "next", 8192);
  std::vector<avro::FrameBuffer> kept;
  std::vector<const char*> seen_at;
  REQUIRE(d.feed(wire, [&](std::int32_t, std::string_view p) {
             seen_at.push_back(p.data());
             kept.push_back(std::move(d.frame_buffer()));
           }).ok());
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].view() == payload);
  CHECK(kept[0].view().data() == seen_at[0]);  // the same bytes the callback saw: not copied
  CHECK(kept[1].view() == "next");
  CHECK(d.buffered() == 0);
}

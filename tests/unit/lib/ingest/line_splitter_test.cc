#include "lib/ingest/line_splitter.h"

#include <catch2/catch.hpp>

using namespace sluice;
using namespace sluice::sources;

namespace {
std::vector<std::string> split(std::vector<std::string_view> reads, std::uint64_t max = 1 << 20,
                               LineOverflow mode = LineOverflow::split,
                               std::uint64_t* overflows = nullptr) {
  LineConfig cfg;
  cfg.max_line_bytes = ByteSize{max};
  cfg.overflow = mode;
  LineSplitter s(cfg);
  std::vector<std::string> lines;
  auto add = [&](std::string_view l) { lines.emplace_back(l); };
  for (auto r : reads) s.feed(r, add);
  s.finish(add);
  if (overflows != nullptr) *overflows = s.overflows();
  return lines;
}
using V = std::vector<std::string>;
}  // namespace

TEST_CASE("lines: LF, CRLF, empty lines and an unterminated last line", "[unit][lines]") {
  CHECK(split({"a\nb\r\n\nc"}) == V{"a", "b", "", "c"});
  CHECK(split({"a\n"}) == V{"a"});
  CHECK(split({""}).empty());
  CHECK(split({"\r\n"}) == V{""});
}

TEST_CASE("lines: a line spanning reads is joined, CR split from LF across reads",
          "[unit][lines]") {
  CHECK(split({"hel", "lo\nwor", "ld\n"}) == V{"hello", "world"});
  CHECK(split({"abc\r", "\ndef\n"}) == V{"abc", "def"});
  CHECK(split({"x", "", "y\n"}) == V{"xy"});
}

TEST_CASE("lines: bytes that are not UTF-8 pass through unchanged", "[unit][lines]") {
  const std::string bad = "caf\xc3\xa9 \xff\xfe\x80 end";
  CHECK(split({bad + "\n"}) == V{bad});
  const std::string nul("a\0b", 3);
  CHECK(split({nul + "\n"}) == V{nul});
}

TEST_CASE("lines: overlong lines are split into max_line_bytes pieces and counted",
          "[unit][lines]") {
  std::uint64_t overflows = 0;
  CHECK(split({"0123456789abc\nok\n"}, 5, LineOverflow::split, &overflows) ==
        V{"01234", "56789", "abc", "ok"});
  CHECK(overflows == 1);
  // The same across many small reads: memory stays bounded, pieces come out as they fill.
  CHECK(split({"0123", "4567", "89ab", "c\n"}, 5, LineOverflow::split, &overflows) ==
        V{"01234", "56789", "abc"});
  CHECK(overflows == 1);
  CHECK(split({"12345\n"}, 5, LineOverflow::split, &overflows) == V{"12345"});
  CHECK(overflows == 0);
  CHECK(split({"12345\r\n"}, 5, LineOverflow::split, &overflows) == V{"12345"});
  CHECK(overflows == 0);
}

TEST_CASE("lines: overlong lines are truncated and the rest skipped", "[unit][lines]") {
  std::uint64_t overflows = 0;
  CHECK(split({"0123456789abc\nok\n"}, 5, LineOverflow::truncate, &overflows) == V{"01234", "ok"});
  CHECK(overflows == 1);
  CHECK(split({"0123", "4567", "89ab", "c\nnext\n"}, 5, LineOverflow::truncate, &overflows) ==
        V{"01234", "next"});
  CHECK(overflows == 1);
}

TEST_CASE("lines: a 1 MiB line passes whole under the default limit", "[unit][lines]") {
  const std::string big(1 << 20, 'q');
  std::vector<std::string_view> reads;
  for (std::size_t off = 0; off < big.size(); off += 65536)
    reads.push_back(std::string_view(big).substr(off, 65536));
  reads.push_back("\n");
  const auto lines = split(reads);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] == big);
}

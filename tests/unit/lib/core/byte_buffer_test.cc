#include "lib/core/byte_buffer.h"

#include <catch2/catch.hpp>
#include <string>
#include <utility>

using namespace sluice;

TEST_CASE("byte buffer: pieces appended past the mmap threshold read back in order",
          "[unit][core]") {
  ByteBuffer b;
  CHECK(b.empty());
  std::string want;
  for (int i = 0; want.size() < (3u << 20); ++i) {
    const std::string piece = std::to_string(i) + std::string(i % 97, 'x') + "\n";
    b.append(piece);
    want += piece;
  }
  CHECK(b.size() == want.size());
  CHECK(b.capacity() >= b.size());
  CHECK(b.view() == want);
  b.append(nullptr, 0);  // nothing to add: no change
  CHECK(b.size() == want.size());
}

TEST_CASE("byte buffer: a move hands the bytes over, clear keeps the memory, release frees it",
          "[unit][core]") {
  ByteBuffer a;
  a.append("hello ");
  a.append("world");
  const char* at = a.data();
  ByteBuffer b(std::move(a));
  CHECK(b.view() == "hello world");
  CHECK(b.data() == at);  // not copied
  CHECK(a.empty());       // NOLINT(bugprone-use-after-move): a moved-from buffer is empty
  CHECK(a.capacity() == 0);
  ByteBuffer c;
  c.append("old");
  c = std::move(b);
  CHECK(c.view() == "hello world");
  const std::size_t cap = c.capacity();
  c.clear();
  CHECK(c.empty());
  CHECK(c.capacity() == cap);
  c.append("again");
  CHECK(c.view() == "again");
  c.release();
  CHECK(c.capacity() == 0);
  CHECK(c.view().empty());
}

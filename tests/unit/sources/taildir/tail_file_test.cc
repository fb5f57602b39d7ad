#include "sources/taildir/tail_file.h"

#include <catch2/catch.hpp>
#include <string>

#include "lib/ingest/line_source.h"

using namespace sluice;
using namespace sluice::sources;

namespace {

FileIdentity identity(std::string_view first) {
  FileIdentity id{7, 42, static_cast<std::uint32_t>(first.size()), 0};
  id.fp_hash = first.empty() ? 0 : hash_name(first);
  return id;
}

}  // namespace

TEST_CASE("tail file: a read at 0 sets the first bytes and the fingerprint", "[unit][taildir]") {
  TailFile f(1, "/x.log", 0, identity(""), 0, 0);
  f.learn_head("abc\ndef\n", 16);
  CHECK(f.head == "abc\ndef\n");
  CHECK(f.id == identity("abc\ndef\n"));
  // Longer than fingerprint_bytes: the first fingerprint_bytes only.
  f.learn_head(std::string(40, 'z'), 16);
  CHECK(f.head == std::string(16, 'z'));
  CHECK(f.id == identity(std::string(16, 'z')));
  // An empty read says nothing about the content.
  f.learn_head("", 16);
  CHECK(f.head.empty());
  CHECK(f.id == identity(std::string(16, 'z')));
}

TEST_CASE("tail file: first bytes still being written are compared as far as known",
          "[unit][taildir]") {
  TailFile f(1, "/x.log", 0, identity(""), 0, 0);
  f.learn_head("1", 16);
  // The file grew: what was known is still its start, and more of it is known now.
  CHECK(f.same_head("12\n3", 16));
  CHECK(f.head == "12\n3");
  CHECK(f.id == identity("12\n3"));
  CHECK(f.same_head("12\n34\n5\n6\n7\n8\n9\n10\n11\n", 16));
  CHECK(f.head == "12\n34\n5\n6\n7\n8\n9\n");  // up to fingerprint_bytes
  CHECK(f.id == identity("12\n34\n5\n6\n7\n8\n9\n"));
  CHECK(f.same_head("12\n34\n5\n6\n7\n8\n9\n10\n11\n12\n", 16));
  CHECK(f.id == identity("12\n34\n5\n6\n7\n8\n9\n"));
}

TEST_CASE("tail file: other first bytes or a shorter file are a rewritten file",
          "[unit][taildir]") {
  TailFile f(1, "/x.log", 0, identity(""), 0, 0);
  f.learn_head("1\n2\n3\n", 256);
  const FileIdentity before = f.id;
  CHECK_FALSE(f.same_head("1001\n1002\n1003\n", 256));
  CHECK_FALSE(f.same_head("1\n2\n", 256));  // shorter than the bytes read: truncated
  CHECK_FALSE(f.same_head("", 256));
  CHECK(f.head == "1\n2\n3\n");  // a failed comparison learns nothing
  CHECK(f.id == before);
}

TEST_CASE("tail file: without bytes read the scan's fingerprint is compared", "[unit][taildir]") {
  // Resumed at a saved offset: the fingerprint comes from the scan, no byte was read from 0.
  TailFile f(1, "/x.log", 0, identity("2026-01-01 a\n"), 13, 0);
  CHECK_FALSE(f.same_head("2026-01-01 b\n2026-01-01 c\n", 64));
  CHECK_FALSE(f.same_head("2026-01-01", 64));
  CHECK(f.same_head("2026-01-01 a\n2026-01-01 c\n", 64));
  CHECK(f.head == "2026-01-01 a\n2026-01-01 c\n");
  CHECK(f.id == identity("2026-01-01 a\n2026-01-01 c\n"));
  // Nothing known at all (found empty): any content is this file's, and is learnt.
  TailFile g(2, "/y.log", 0, identity(""), 0, 0);
  CHECK(g.same_head("x\n", 64));
  CHECK(g.id == identity("x\n"));
}

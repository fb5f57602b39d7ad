#include "sources/taildir/reconcile.h"

#include <catch2/catch.hpp>

using namespace sluice;
using namespace sluice::sources;
using Kind = ScanAction::Kind;

namespace {

constexpr std::uint64_t kHash = 0xabcdef;

Candidate found(std::string path, ino_t ino, std::uint64_t size, std::uint64_t known_hash = kHash) {
  Candidate c;
  c.path = std::move(path);
  c.size = size;
  c.mtime_s = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  c.id =
      FileIdentity{1, ino, static_cast<std::uint32_t>(std::min<std::uint64_t>(size, 256)), kHash};
  c.known_hash = known_hash;
  c.known_hash_valid = true;
  return c;
}

KnownFile known(std::uint64_t key, std::string path, ino_t ino, std::uint32_t fp_len = 256) {
  return KnownFile{key, std::move(path), FileIdentity{1, ino, fp_len, kHash}};
}

struct Run {
  std::vector<Candidate> found;
  std::vector<KnownFile> known;
  std::map<std::pair<dev_t, ino_t>, SavedPosition> saved;
  ReconcileOptions options;
  std::uint64_t next_key = 100;
  std::vector<ScanAction> go() { return reconcile(found, known, saved, options, next_key); }
};

}  // namespace

TEST_CASE("reconcile: a new file is opened from its head, or its end with read_from tail",
          "[unit][taildir]") {
  Run r;
  r.found = {found("/l/a.log", 10, 500), found("/l/b.log", 11, 0)};
  auto actions = r.go();
  REQUIRE(actions.size() == 2);
  CHECK(actions[0] == ScanAction{.kind = Kind::open, .key = 101, .candidate = 0, .start = 0});
  CHECK(actions[1] == ScanAction{.kind = Kind::open, .key = 102, .candidate = 1, .start = 0});
  CHECK(r.next_key == 102);

  r.options.read_from_tail = true;
  r.options.first_scan = true;
  actions = r.go();
  REQUIRE(actions.size() == 2);
  CHECK(actions[0].start == 500);  // present at the first scan: from its end
  r.options.first_scan = false;
  CHECK(r.go()[0].start == 0);  // created later: from its head
}

TEST_CASE("reconcile: a saved position wins when the first bytes match", "[unit][taildir]") {
  Run r;
  r.options.read_from_tail = true;
  r.options.first_scan = true;
  r.found = {found("/l/a.log", 10, 500), found("/l/b.log", 11, 500),
             found("/l/c.log", 12, 500, /*known_hash=*/999)};
  r.saved[{1, 10}] = SavedPosition{"/l/old-name.log", FileIdentity{1, 10, 256, kHash}, 123};
  r.saved[{1, 11}] = SavedPosition{"/l/b.log", FileIdentity{1, 11, 256, kHash}, 900};
  r.saved[{1, 12}] = SavedPosition{"/l/c.log", FileIdentity{1, 12, 256, kHash}, 42};
  auto actions = r.go();
  REQUIRE(actions.size() == 3);
  CHECK(actions[0].kind == Kind::open);
  CHECK(actions[0].start == 123);  // renamed while stopped: same file, same offset
  CHECK(actions[0].from_saved);
  CHECK(actions[1].start == 0);  // shorter than its saved offset: truncated while stopped
  CHECK(actions[1].from_saved);
  // The inode holds another file now: written while the agent was stopped, so read from its
  // head; read_from = "tail" would skip what was written meanwhile.
  CHECK(actions[2].start == 0);
  CHECK_FALSE(actions[2].from_saved);
}

TEST_CASE("reconcile: read_from tail never skips a file that replaced a followed one",
          "[unit][taildir]") {
  Run r;
  r.options.read_from_tail = true;
  r.options.first_scan = true;
  // a.log was rotated away while the agent was stopped (a.log.1 keeps inode 10 and its offset);
  // the new a.log (inode 20) was written meanwhile. b.log is a file never followed before.
  r.found = {found("/l/a.log.1", 10, 500), found("/l/a.log", 20, 300), found("/l/b.log", 21, 700)};
  r.saved[{1, 10}] = SavedPosition{"/l/a.log", FileIdentity{1, 10, 256, kHash}, 400};
  auto actions = r.go();
  REQUIRE(actions.size() == 3);
  CHECK(actions[0].start == 400);
  CHECK(actions[0].from_saved);
  CHECK(actions[1].start == 0);    // under a path the agent followed: new since it stopped
  CHECK(actions[2].start == 700);  // unknown before: read_from tail applies
}

TEST_CASE("reconcile: a followed file renamed, rewritten, grown or gone", "[unit][taildir]") {
  Run r;
  r.known = {known(1, "/l/a.log", 10), known(2, "/l/b.log", 11), known(3, "/l/c.log", 12, 16),
             known(4, "/l/d.log", 13)};
  r.found = {found("/l/a.log.1", 10, 500), found("/l/b.log", 11, 500, /*known_hash=*/7),
             found("/l/c.log", 12, 500)};
  const auto actions = r.go();
  REQUIRE(actions.size() == 4);
  CHECK(actions[0] == ScanAction{.kind = Kind::follow, .key = 1, .candidate = 0, .renamed = true});
  CHECK(actions[1] == ScanAction{.kind = Kind::replaced, .key = 2, .candidate = 1});
  // Known from its first 16 bytes only, now 500 long: the identity grows to 256 bytes.
  CHECK(actions[2] ==
        ScanAction{.kind = Kind::follow, .key = 3, .candidate = 2, .longer_fingerprint = true});
  CHECK(actions[3] == ScanAction{.kind = Kind::gone, .key = 4});
  CHECK(r.next_key == 100);
}

TEST_CASE("reconcile: binary files are skipped, old files ignored unless saved",
          "[unit][taildir]") {
  Run r;
  r.options.ignore_older = std::chrono::hours(1);
  r.options.now = std::chrono::system_clock::now();
  Candidate bin = found("/l/bin.log", 10, 100);
  bin.binary = true;
  Candidate old = found("/l/old.log", 11, 100);
  old.mtime_s -= 2 * 3600;
  Candidate old_saved = found("/l/old2.log", 12, 100);
  old_saved.mtime_s -= 2 * 3600;
  Candidate fresh = found("/l/new.log", 13, 100);
  r.found = {bin, old, old_saved, fresh};
  r.saved[{1, 12}] = SavedPosition{"/l/old2.log", FileIdentity{1, 12, 100, kHash}, 50};
  const auto actions = r.go();
  REQUIRE(actions.size() == 3);
  CHECK(actions[0] == ScanAction{.kind = Kind::skip_binary, .candidate = 0});
  CHECK(
      actions[1] ==
      ScanAction{.kind = Kind::open, .key = 101, .candidate = 2, .start = 50, .from_saved = true});
  CHECK(actions[2] == ScanAction{.kind = Kind::open, .key = 102, .candidate = 3});
}

TEST_CASE("reconcile: a file opened by this scan is followed under its second name",
          "[unit][taildir]") {
  Run r;
  // An empty file (no fingerprint yet) found under two names, e.g. through a symlink.
  r.found = {found("/l/a.log", 10, 0), found("/l/b.log", 10, 0)};
  const auto actions = r.go();
  REQUIRE(actions.size() == 2);
  CHECK(actions[0].kind == Kind::open);
  CHECK(actions[1] ==
        ScanAction{.kind = Kind::follow, .key = actions[0].key, .candidate = 1, .renamed = true});
}

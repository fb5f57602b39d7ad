#include "sources/taildir/scan.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>

#include "lib/ingest/line_source.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::sources;
using namespace sluice::test;
namespace fs = std::filesystem;

TEST_CASE("scan: found files with fingerprints, binary files, and the directories to watch",
          "[unit][taildir]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs");
  fs::create_directories(logs + "/sub");
  write_file(logs + "/a.log", std::string(300, 'a') + "\n");
  write_file(logs + "/short.log", "hi\n");
  write_file(logs + "/bin.log", std::string("\x7f"
                                            "ELF\0\0",
                                            6));
  write_file(logs + "/sub/c.log", "c\n");
  write_file(logs + "/skip.txt", "not matched\n");
  struct stat st {};
  REQUIRE(::stat((logs + "/a.log").c_str(), &st) == 0);
  ScanRequest r;
  r.groups = {TaildirGroup{"default", {logs + "/**/*.log", tmp.file("later/x/*.log")}, {}}};
  r.fingerprint_bytes = 256;
  r.known[{st.st_dev, st.st_ino}] = 16;  // followed, known by its first 16 bytes
  const ScanResult res = discover(r);

  std::vector<std::string> paths;
  for (const auto& c : res.found) paths.push_back(c.path);
  std::sort(paths.begin(), paths.end());
  CHECK(paths == std::vector<std::string>{logs + "/a.log", logs + "/bin.log", logs + "/short.log",
                                          logs + "/sub/c.log"});
  for (const auto& c : res.found) {
    if (c.path == logs + "/a.log") {
      CHECK(c.size == 301);
      CHECK(c.id.fp_len == 256);
      CHECK(c.known_hash_valid);  // the first 16 bytes, to compare with the followed file
      CHECK(c.known_hash == hash_name(std::string(16, 'a')));
      CHECK(c.id.fp_hash == hash_name(std::string(256, 'a')));
      CHECK_FALSE(c.binary);
    } else if (c.path == logs + "/short.log") {
      CHECK(c.id.fp_len == 3);  // shorter than fingerprint_bytes: all of it
      CHECK_FALSE(c.known_hash_valid);
    } else if (c.path == logs + "/bin.log") {
      CHECK(c.binary);
    }
  }
  CHECK(res.unreadable.empty());
  std::vector<std::pair<std::string, bool>> dirs;
  for (const auto& d : res.dirs) dirs.emplace_back(d.path, d.ancestor);
  std::sort(dirs.begin(), dirs.end());
  // Every directory the walk read, and for the root that does not exist yet its nearest
  // existing ancestor.
  CHECK(dirs == std::vector<std::pair<std::string, bool>>{
                    {tmp.path(), true}, {logs, false}, {logs + "/sub", false}});
}

TEST_CASE("scan: a closed file renamed out of the globs is found in its directory by its inode",
          "[unit][taildir]") {
  TempDir tmp;
  const std::string logs = tmp.file("logs");
  fs::create_directories(logs);
  write_file(logs + "/a.log", std::string(300, 'a') + "\n");
  write_file(logs + "/b.log", std::string(300, 'b') + "\n");
  write_file(logs + "/c.log", "c\n");
  auto identity = [&](const std::string& path, std::uint32_t fp_len, char fill) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return FileIdentity{st.st_dev, st.st_ino, fp_len, hash_name(std::string(fp_len, fill))};
  };
  const FileIdentity a = identity(logs + "/a.log", 256, 'a');
  FileIdentity b = identity(logs + "/b.log", 256, 'b');
  const FileIdentity c = identity(logs + "/c.log", 0, 'c');
  // a.log is rotated to a.log.1 (not matched); b.log's name goes too and its inode is taken for
  // other content (what it held is gone); c.log is still found by the walk.
  fs::rename(logs + "/a.log", logs + "/a.log.1");
  fs::rename(logs + "/b.log", logs + "/b.log.1");
  write_file(logs + "/b.log.1", std::string(300, 'x') + "\n");  // same inode, other first bytes
  ScanRequest r;
  r.groups = {TaildirGroup{"default", {logs + "/*.log"}, {}}};
  r.closed = {{1, logs, a}, {2, logs, b}, {3, logs, c}};
  ScanResult res = discover(r);
  REQUIRE(res.relocated.size() == 1);
  CHECK(res.relocated[0].key == 1);
  CHECK(res.relocated[0].path == logs + "/a.log.1");
  struct stat st {};
  REQUIRE(res.relocated[0].fd >= 0);
  REQUIRE(::fstat(res.relocated[0].fd, &st) == 0);
  CHECK(st.st_ino == a.ino);
  ::close(res.relocated[0].fd);
  // Unknown first bytes (fp_len 0): the inode alone decides.
  b.fp_len = 0;
  r.closed = {{2, logs, b}};
  res = discover(r);
  REQUIRE(res.relocated.size() == 1);
  CHECK(res.relocated[0].path == logs + "/b.log.1");
  ::close(res.relocated[0].fd);
}

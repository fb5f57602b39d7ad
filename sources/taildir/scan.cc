#include "sources/taildir/scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "lib/ingest/line_source.h"

namespace sluice::sources {

namespace {

// Hash of the first `len` bytes of an open file; false if it has fewer.
bool hash_prefix(int fd, std::uint32_t len, std::uint64_t& out) {
  std::string buf(len, '\0');
  std::size_t got = 0;
  while (got < len) {
    const ssize_t n = ::pread(fd, buf.data() + got, len - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  out = hash_name(std::string_view(buf.data(), len));
  return true;
}

// Looks in each closed file's directory for its inode under another name, when the walk did not
// find it: renamed away in place, as a rotation does. The entry must still be the same file
// (device, inode, first bytes), or the inode was reused and the old file is gone.
void relocate(const ScanRequest& request, ScanResult& result) {
  std::set<std::pair<dev_t, ino_t>> found;
  for (const Candidate& c : result.found) found.insert({c.id.dev, c.id.ino});
  for (const ClosedFile& f : request.closed) {
    if (found.count({f.id.dev, f.id.ino}) != 0) continue;
    DIR* d = ::opendir(f.dir.c_str());
    if (d == nullptr) continue;
    while (const dirent* e = ::readdir(d)) {
      if (e->d_ino != f.id.ino) continue;
      const std::string path = (f.dir == "/" ? "" : f.dir) + "/" + e->d_name;
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
      if (fd < 0) continue;
      struct stat st {};
      std::uint64_t hash = 0;
      if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == f.id.dev &&
          st.st_ino == f.id.ino &&
          (f.id.fp_len == 0 || (hash_prefix(fd, f.id.fp_len, hash) && hash == f.id.fp_hash))) {
        result.relocated.push_back({f.key, path, fd});
        break;
      }
      ::close(fd);
    }
    ::closedir(d);
  }
}

}  // namespace

ScanResult discover(const ScanRequest& request) {
  ScanResult result;
  for (std::size_t g = 0; g < request.groups.size(); ++g) {
    glob_walk(
        request.groups[g].paths, request.exclude, request.limits,
        [&](const std::string& path, const struct stat& /*walked*/) {
          // The name may point to another file by now (a rotation between the walk's stat and
          // this open): describe the file that was opened and hashed, never a mix of the two,
          // or the old file would look rewritten and be read again. O_NONBLOCK: a FIFO put there
          // meanwhile must not block the scan.
          const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
          if (fd < 0) {
            result.unreadable.emplace_back(path, errno);
            return;
          }
          struct stat st {};
          if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            return;
          }
          Candidate c;
          c.path = path;
          c.group = g;
          c.size = static_cast<std::uint64_t>(st.st_size);
          c.mtime_s = static_cast<std::int64_t>(st.st_mtim.tv_sec);
          c.id.dev = st.st_dev;
          c.id.ino = st.st_ino;
          const auto size = static_cast<std::uint64_t>(st.st_size);
          c.id.fp_len =
              static_cast<std::uint32_t>(std::min<std::uint64_t>(size, request.fingerprint_bytes));
          if (!hash_prefix(fd, c.id.fp_len, c.id.fp_hash)) c.id.fp_len = 0;
          auto known = request.known.find({st.st_dev, st.st_ino});
          if (known != request.known.end() && known->second <= size) {
            c.known_hash_valid = hash_prefix(fd, known->second, c.known_hash);
          }
          char probe[kBinaryProbeBytes];
          const ssize_t n = ::pread(fd, probe, sizeof probe, 0);
          c.binary = n > 0 && std::memchr(probe, '\0', static_cast<std::size_t>(n)) != nullptr;
          ::close(fd);
          result.found.push_back(std::move(c));
        },
        [&](const std::string& dir, int err) { result.unreadable.emplace_back(dir, err); },
        [&](const std::string& dir, const struct stat& st) {
          result.dirs.push_back({dir, st.st_dev, st.st_ino, false});
        });
    // A root that does not exist yet: watch the nearest ancestor that does, so that its
    // creation is seen at once.
    for (const auto& p : request.groups[g].paths) {
      const std::string root = glob_root(p);
      struct stat st {};
      if (::stat(root.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
      const std::string up = existing_ancestor(root);
      if (::stat(up.c_str(), &st) == 0) result.dirs.push_back({up, st.st_dev, st.st_ino, true});
    }
  }
  relocate(request, result);
  return result;
}

}  // namespace sluice::sources

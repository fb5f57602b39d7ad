#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "sources/taildir/glob.h"
#include "sources/taildir/reconcile.h"
#include "sources/taildir/taildir_config.h"

namespace sluice::sources {

/// Files whose first KiB holds a NUL byte are taken for binary and not read.
inline constexpr std::size_t kBinaryProbeBytes = 1024;

/// A followed file whose descriptor is closed (for max_open_files): if the walk does not find its
/// inode, discover() looks for it in `dir`, where a rotation renames it out of the globs.
struct ClosedFile {
  std::uint64_t key = 0;
  std::string dir;
  FileIdentity id;
};

/// What a scan looks for: the groups' globs, and the fingerprint length already known per device
/// and inode (followed and saved files), so that the scan hashes the same prefix to compare.
struct ScanRequest {
  std::vector<TaildirGroup> groups;
  std::vector<std::string> exclude;
  WalkLimits limits;
  std::uint32_t fingerprint_bytes = 256;
  std::map<std::pair<dev_t, ino_t>, std::uint32_t> known;
  std::vector<ClosedFile> closed;
};

/// A closed file found under another name in its directory (same device, inode and first
/// bytes), opened: whoever receives it owns `fd`.
struct RelocatedFile {
  std::uint64_t key = 0;
  std::string path;
  int fd = -1;
};

/// A directory to watch with inotify: one the scan read (a new match may appear in it), or the
/// nearest existing ancestor of a glob root that does not exist yet (it may be created later).
struct WatchedDir {
  std::string path;
  dev_t dev = 0;
  ino_t ino = 0;
  bool ancestor = false;
};

struct ScanResult {
  std::vector<Candidate> found;
  std::vector<std::pair<std::string, int>> unreadable;  // path, errno
  std::vector<WatchedDir> dirs;
  std::vector<RelocatedFile> relocated;
};

/// Walks the globs and describes every matching file (identity, fingerprints, binary or not) and
/// the directories to watch. Blocking (readdir, stat, reads of the first bytes): call it on the
/// threadpool; reconcile() then decides on the loop thread what the found files mean.
ScanResult discover(const ScanRequest& request);

}  // namespace sluice::sources

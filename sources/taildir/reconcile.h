#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sources/taildir/positions.h"

namespace sluice::sources {

/// A file found by a scan (on the threadpool): what the scan's stat and reads told about it.
struct Candidate {
  std::string path;
  std::size_t group = 0;
  std::uint64_t size = 0;
  std::int64_t mtime_s = 0;
  FileIdentity id;  // fingerprint over min(size, fingerprint_bytes)
  /// The hash over the fingerprint length known for this device and inode (a tracked or saved
  /// file), when the file is that long: equal to the known fp_hash if the first bytes are the same.
  std::uint64_t known_hash = 0;
  bool known_hash_valid = false;
  bool binary = false;  // a NUL byte in its first KiB
};

/// A file the source follows, as the reconcile step sees it.
struct KnownFile {
  std::uint64_t key = 0;
  std::string path;
  FileIdentity id;
};

struct ReconcileOptions {
  bool first_scan = false;      // read_from tail applies to files found by the first scan only
  bool read_from_tail = false;  // start new files found by the first scan at their end
  std::optional<std::chrono::nanoseconds> ignore_older;
  std::chrono::system_clock::time_point now{};
  std::uint32_t fingerprint_bytes = 256;
};

/// What the source does with one found or known file.
struct ScanAction {
  enum class Kind : std::uint8_t {
    follow,       // the same file (same inode and first bytes); maybe under a new name
    replaced,     // same inode, other first bytes: truncated and rewritten, read from 0
    open,         // a new file: follow it from `start` (its saved position, 0, or its end)
    skip_binary,  // a new file that looks binary: not read
    gone,         // a followed file the scan did not find: renamed away or deleted
  };
  Kind kind = Kind::follow;
  std::uint64_t key = 0;             // the known file; for `open`, the key to give the new one
  std::size_t candidate = SIZE_MAX;  // index into the found files; none for `gone`
  std::uint64_t start = 0;           // open: where to start reading
  bool renamed = false;              // follow: found under another name than before
  bool longer_fingerprint = false;   // follow: the found identity covers more first bytes
  bool from_saved = false;           // open: `start` is a saved position
  bool operator==(const ScanAction&) const = default;
};

/// Matches the files a scan found against the followed files and the saved positions, and says
/// what to do with each, in order: one action per found file that is followed, replaced, opened
/// or skipped (files ignored as too old get none), then one `gone` per followed file not found.
/// Pure: no file system, no loop. Files opened by earlier actions count as followed for later
/// ones (two names of one inode); new files get keys from `next_key` upwards.
std::vector<ScanAction> reconcile(const std::vector<Candidate>& found,
                                  const std::vector<KnownFile>& known,
                                  const std::map<std::pair<dev_t, ino_t>, SavedPosition>& saved,
                                  const ReconcileOptions& options, std::uint64_t& next_key);

}  // namespace sluice::sources

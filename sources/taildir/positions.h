#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/core/result.h"

namespace sluice::sources {

/// A file's identity: device and inode, plus a hash of its first bytes, so that a reused inode
/// or a file replaced under the same name is told apart from the file that was there before.
struct FileIdentity {
  dev_t dev = 0;
  ino_t ino = 0;
  std::uint32_t fp_len = 0;
  std::uint64_t fp_hash = 0;
  bool operator==(const FileIdentity&) const = default;
};

/// A saved position: where to resume a file, keyed by its identity.
struct SavedPosition {
  std::string path;
  FileIdentity id;
  std::uint64_t offset = 0;
  bool operator==(const SavedPosition&) const = default;
};

/// The positions file's text: a JSON array of {path, dev, ino, fp_len, fp_hash, offset}.
std::string encode_positions(const std::vector<SavedPosition>& positions);
/// Parses encode_positions()'s text; `name` (the file) is cited in the error.
Result<std::vector<SavedPosition>> decode_positions(std::string_view json, const std::string& name);

/// Writes the positions file atomically: temporary file, fsync, rename, fsync of the directory.
/// Blocking: call it on the threadpool (or at shutdown).
Status save_positions(const std::string& path, const std::vector<SavedPosition>& positions);
/// Reads the positions file; a missing file is an empty list (first start).
Result<std::vector<SavedPosition>> load_positions(const std::string& path);

/// A durable channel stores each batch's position with the batch, under the key "DEV:INO" (one
/// entry per file) with the value "DEV INO FP_LEN FP_HASH OFFSET PATH".
std::string channel_position_key(const FileIdentity& id);
std::string encode_channel_position(const SavedPosition& p);
std::optional<SavedPosition> decode_channel_position(std::string_view value);

/// The positions to resume from: those of the positions file, replaced by the channel's for the
/// same device and inode (the channel's are exact; the file may lag them by a checkpoint). Values
/// that do not decode are left out and returned in `malformed`.
std::vector<SavedPosition> merge_positions(
    std::vector<SavedPosition> from_file,
    const std::vector<std::pair<std::string, std::string>>& from_channel,
    std::vector<std::pair<std::string, std::string>>& malformed);

}  // namespace sluice::sources

#pragma once

#include <lmdb.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::channels {

/// What can still be trusted in a damaged LMDB file (data.mdb), read without LMDB: LMDB follows
/// its tree pages blindly, so a truncated or damaged file makes it read anywhere. The reader here
/// checks every page number, offset and length against the image, and keeps:
///   - the channels' records (keys of 8 bytes in "c:NAME", values "SLR1" records whose checksum
///     and payload verify), found by walking the newest intact tree and then by scanning every
///     leaf page (stale pages included: a record is immutable under its key, so a copy is as good
///     as the original). A record found outside every tree is given to the only channel the
///     environment names, or left out (counted) when it names several;
///   - each channel's cursor positions and next sequence number ("c:NAME:cursor:GROUP",
///     "c:NAME:next" in "meta"): the largest value seen, since they only grow;
///   - the sources' checkpoints ("src:..." in "meta") only as the newest intact tree holds them.
/// Records below every cursor of their channel were delivered already and are left out.
struct SalvagedChannel {
  std::map<std::uint64_t, std::string_view> records;  // seq -> record, views into the image
  std::map<std::string, std::uint64_t> positions;     // meta key -> value (cursor, next)
  std::uint64_t events = 0;
  std::uint64_t below_cursor = 0;  // found, but every cursor had passed them
};

struct Salvage {
  std::map<std::string, SalvagedChannel> channels;               // by channel name
  std::vector<std::pair<std::string, std::string>> checkpoints;  // "src:..." -> position
  std::size_t page_size = 0;
  std::uint64_t pages = 0;         // whole pages in the image
  std::uint64_t tree_pages = 0;    // reached from the newest usable meta page
  std::uint64_t damaged = 0;       // "SLR1" values that failed their check
  std::uint64_t unattributed = 0;  // valid records outside every tree, several channels named
  bool meta_found = false;         // a meta page with LMDB's magic
  /// One line for the log and /healthz: what was found and kept.
  std::string summary() const;
};

/// Reads `image` (the bytes of a data.mdb, possibly truncated or damaged). Never reads outside
/// it; the views in the result point into it.
Salvage salvage_image(std::string_view image);

/// Writes what `salvage` kept into `env` (a new, empty environment): each channel's records into
/// "c:NAME" and its positions and totals into "meta", the checkpoints into "meta". Grows the map
/// as needed. Returns an MDB error code (0 on success).
int restore_salvage(MDB_env* env, const Salvage& salvage);

}  // namespace sluice::channels

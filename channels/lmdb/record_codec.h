#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lib/core/batch.h"
#include "lib/core/status.h"

namespace sluice::channels {

/// The on-disk form of one put batch in the lmdb channel:
///   magic "SLR1" | u32 crc32 of the rest | u8 flags (1 = zstd, 2 = body ranges) | u32 events |
///   u32 raw length | payload
/// where the payload (zstd-compressed when flag 1) holds the batch's common headers and then each
/// event: timestamp, id, body, headers, fields. Integers are little-endian. With flag 2 (every
/// record written since it exists) a field is its type byte, whose bit 0x80 says that the key is
/// a range of the event's body (offset and length, LEB128 varints) rather than its bytes (u32
/// length, bytes),
/// and bit 0x40 the same for its text; records without it (type after the key, both as bytes)
/// are still read.
struct RecordInfo {
  std::uint32_t events = 0;
  std::uint32_t raw_bytes = 0;
};

/// Appends events [begin, end) of `batch` to `out`, uncompressed (the loop thread's cheap part).
void serialize_batch(const Batch& batch, std::string& out);
/// Wraps a serialized payload into a record: compresses at `level` (0: store) and checksums.
/// Runs on the writer thread.
void seal_record(std::string_view payload, std::uint32_t events, int level, std::string& out);
/// Verifies the checksum and decompresses into `out` (cleared first). A record that fails its
/// checksum or does not parse returns Errc::invalid_data and leaves `out` empty.
Status decode_record(std::string_view record, Batch& out, std::string& scratch);
/// Reads the header only (events, raw size) without verifying or decompressing.
bool peek_record(std::string_view record, RecordInfo& info);

/// A record's key in its channel's database: the sequence number, big-endian, so that LMDB's
/// byte order is numeric order.
inline std::string record_key(std::uint64_t seq) {
  std::string k(8, '\0');
  for (int i = 7; i >= 0; --i, seq >>= 8)
    k[static_cast<std::size_t>(i)] = static_cast<char>(seq & 0xff);
  return k;
}
/// The sequence number of a record key (its first 8 bytes).
inline std::uint64_t record_seq(std::string_view key) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < key.size() && i < 8; ++i)
    v = (v << 8) | static_cast<unsigned char>(key[i]);
  return v;
}

}  // namespace sluice::channels

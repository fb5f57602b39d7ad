// libFuzzer target: the lmdb channel's record decoder. First byte 0: the rest is a record as read
// from disk. 1 and 2: the rest is a payload (with body ranges, and in the older form without
// them) under a valid checksum, so that the parser itself meets damaged payloads, which a
// checksum the fuzzer cannot forge would otherwise turn away. 3, 7, 11...: the rest becomes a
// batch, serialized, one payload byte flipped and sealed again (a valid checksum over a damaged
// payload). Otherwise the rest becomes a batch, sealed into a record (stored or zstd), and the
// byte the first byte points at is flipped: a damaged record must fail its check (and be
// quarantined by the channel), never crash or decode to other events.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "channels/lmdb/record_codec.h"
#include "lib/core/batch.h"

namespace {

// A record around `payload` with the given flags and a checksum that matches.
std::string record_of(std::string_view payload, std::uint8_t flags, std::uint32_t events) {
  std::string r = "SLR1";
  r.append(4, '\0');
  r.push_back(static_cast<char>(flags));
  const auto raw = static_cast<std::uint32_t>(payload.size());
  r.append(reinterpret_cast<const char*>(&events), 4);
  r.append(reinterpret_cast<const char*>(&raw), 4);
  r.append(payload);
  const auto crc = static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(r.data() + 8), static_cast<uInt>(r.size() - 8)));
  std::memcpy(r.data() + 4, &crc, 4);
  return r;
}

void touch(const sluice::Batch& b) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const auto e = b[i];
    n += e.body().size();
    for (std::size_t h = 0; h < e.header_count(); ++h) n += e.header(h).key.size();
    for (std::size_t f = 0; f < e.field_count(); ++f) n += e.field(f).text.size();
  }
  if (n == SIZE_MAX) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice;
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  Batch out;
  std::string scratch;
  channels::RecordInfo info;
  if (data[0] == 0) {
    (void)channels::peek_record(rest, info);
    if (channels::decode_record(rest, out, scratch).ok()) touch(out);
    return 0;
  }
  if (data[0] == 1 || data[0] == 2) {
    const std::string record = record_of(rest, data[0] == 1 ? 2 : 0, 1);
    if (channels::decode_record(record, out, scratch).ok()) {
      touch(out);
    } else if (out.size() != 0) {
      std::abort();  // a refused record leaves nothing behind
    }
    return 0;
  }
  Batch in;
  for (std::size_t off = 0; off < rest.size(); off += 97) {
    const auto piece = rest.substr(off, 97);
    // One field copied, one a range of the body (stored as offset and length), as parsers make.
    const Header h{"h", piece.substr(0, 5)};
    const Field fields[] = {{"f", "copy", FieldType::string},
                            {piece.substr(0, 1), piece.substr(1, 9), FieldType::integer}};
    in.add_event(piece, static_cast<std::int64_t>(off), off, &h, 1, fields, 2);
  }
  std::string payload, record;
  channels::serialize_batch(in, payload);
  if (data[0] % 4 == 3) {
    if (payload.empty()) return 0;
    const std::size_t at = (static_cast<std::size_t>(data[0]) * 131 + rest.size()) % payload.size();
    payload[at] ^= static_cast<char>(1 + data[0] / 4 % 255);
    record = record_of(payload, 2, static_cast<std::uint32_t>(in.size()));
    if (channels::decode_record(record, out, scratch).ok()) {
      touch(out);
    } else if (out.size() != 0) {
      std::abort();
    }
    return 0;
  }
  channels::seal_record(payload, static_cast<std::uint32_t>(in.size()), data[0] % 2 ? 1 : 0,
                        record);
  if (!channels::decode_record(record, out, scratch).ok() || out.size() != in.size()) std::abort();
  record[data[0] % record.size()] ^= static_cast<char>(1 + data[0] / 2 % 255);
  (void)channels::peek_record(record, info);
  if (channels::decode_record(record, out, scratch).ok()) {
    // A flip the checksum missed would be a silent change of stored events.
    if (out.size() != in.size()) std::abort();
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (out[i].body() != in[i].body()) std::abort();
      if (out[i].field_count() != in[i].field_count()) std::abort();
      for (std::size_t f = 0; f < in[i].field_count(); ++f) {
        if (out[i].field(f).key != in[i].field(f).key) std::abort();
        if (out[i].field(f).text != in[i].field(f).text) std::abort();
      }
    }
  }
  return 0;
}

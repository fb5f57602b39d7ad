#include "channels/lmdb/record_codec.h"

#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <vector>

namespace sluice::channels {
namespace {

constexpr char kMagic[4] = {'S', 'L', 'R', '1'};
constexpr std::size_t kHeaderSize = 4 + 4 + 1 + 4 + 4;
// Header flags: the payload is zstd-compressed; fields may name ranges of their event's body.
constexpr std::uint8_t kFlagZstd = 1;
constexpr std::uint8_t kFlagBodyRefs = 2;
// In a field's type byte (with kFlagBodyRefs): its key, or its text, is a range of the body,
// written as offset and length (varints) instead of the bytes.
constexpr std::uint8_t kKeyInBody = 0x80;
constexpr std::uint8_t kTextInBody = 0x40;
constexpr std::uint8_t kTypeMask = 0x3f;

void put_u16(std::string& out, std::uint16_t v) {
  out.append(reinterpret_cast<const char*>(&v), 2);
}
void put_u32(std::string& out, std::uint32_t v) {
  out.append(reinterpret_cast<const char*>(&v), 4);
}
void put_u64(std::string& out, std::uint64_t v) {
  out.append(reinterpret_cast<const char*>(&v), 8);
}
// LEB128: 7 bits a byte, low first; at most 5 bytes for a u32.
void put_varint(std::string& out, std::uint32_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_str32(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

// A bounds-checked reader over a payload.
struct Reader {
  const char* p;
  const char* end;
  bool ok = true;
  template <class T>
  T get() {
    T v{};
    if (static_cast<std::size_t>(end - p) < sizeof(T)) {
      ok = false;
      return v;
    }
    std::memcpy(&v, p, sizeof(T));
    p += sizeof(T);
    return v;
  }
  std::uint32_t varint() {
    std::uint32_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
      if (p == end) break;
      const auto b = static_cast<std::uint8_t>(*p++);
      if (shift == 28 && b > 0x0f) break;  // more than 32 bits
      v |= static_cast<std::uint32_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    ok = false;
    return 0;
  }
  std::string_view str32() {
    const auto n = get<std::uint32_t>();
    if (!ok || static_cast<std::size_t>(end - p) < n) {
      ok = false;
      return {};
    }
    std::string_view s(p, n);
    p += n;
    return s;
  }
};

// One compression and one decompression context per thread (the writer thread seals, the loop
// decodes), kept across records: ZSTD_compress / ZSTD_decompress make and free one per call,
// allocating and clearing its tables each time. The output is the same either way.
struct ZstdContexts {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_DCtx* d = ZSTD_createDCtx();
  ZstdContexts() = default;
  ZstdContexts(const ZstdContexts&) = delete;
  ZstdContexts& operator=(const ZstdContexts&) = delete;
  ~ZstdContexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
  }
};
ZstdContexts& zstd_contexts() {
  thread_local ZstdContexts contexts;
  return contexts;
}

}  // namespace

void serialize_batch(const Batch& batch, std::string& out) {
  const EventView first = batch[0];
  const std::size_t common = batch.common_header_count();
  put_u16(out, static_cast<std::uint16_t>(common));
  for (std::size_t i = 0; i < common; ++i) {
    const Header h = first.header(first.header_count() - common + i);
    put_str32(out, h.key);
    put_str32(out, h.value);
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const EventView e = batch[i];
    put_u64(out, static_cast<std::uint64_t>(e.timestamp_ns()));
    put_u64(out, e.id());
    put_str32(out, e.body());
    const std::size_t own = e.header_count() - common;
    put_u16(out, static_cast<std::uint16_t>(own));
    for (std::size_t h = 0; h < own; ++h) {
      put_str32(out, e.header(h).key);
      put_str32(out, e.header(h).value);
    }
    put_u16(out, static_cast<std::uint16_t>(e.field_count()));
    // A parser's fields are mostly ranges of the body (JSON keys and unescaped values): stored
    // as offsets, not copies, they no longer double what zstd compresses and the record holds.
    const std::string_view body = e.body();
    const auto body_at = reinterpret_cast<std::uintptr_t>(body.data());
    auto offset_in_body = [&](std::string_view part, std::uint32_t& offset) {
      const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(part.data()) - body_at;
      if (part.empty() || part.size() > body.size() || at > body.size() - part.size()) {
        return false;  // unsigned wrap-around: before the body fails as past its end does
      }
      offset = static_cast<std::uint32_t>(at);
      return true;
    };
    for (std::size_t f = 0; f < e.field_count(); ++f) {
      const Field fd = e.field(f);
      std::uint32_t key_off = 0, text_off = 0;
      const bool key_in = offset_in_body(fd.key, key_off);
      const bool text_in = offset_in_body(fd.text, text_off);
      out.push_back(static_cast<char>(static_cast<std::uint8_t>(fd.type) |
                                      (key_in ? kKeyInBody : 0) | (text_in ? kTextInBody : 0)));
      if (key_in) {
        put_varint(out, key_off);
        put_varint(out, static_cast<std::uint32_t>(fd.key.size()));
      } else {
        put_str32(out, fd.key);
      }
      if (text_in) {
        put_varint(out, text_off);
        put_varint(out, static_cast<std::uint32_t>(fd.text.size()));
      } else {
        put_str32(out, fd.text);
      }
    }
  }
}

void seal_record(std::string_view payload, std::uint32_t events, int level, std::string& out) {
  out.clear();
  out.append(kMagic, 4);
  put_u32(out, 0);  // checksum, filled below
  std::string body;
  std::uint8_t flags = kFlagBodyRefs;  // serialize_batch()'s field encoding
  if (level > 0) {
    body.resize(ZSTD_compressBound(payload.size()));
    ZSTD_CCtx* cctx = zstd_contexts().c;
    const std::size_t n = cctx != nullptr ? ZSTD_compressCCtx(cctx, body.data(), body.size(),
                                                              payload.data(), payload.size(), level)
                                          : ZSTD_compress(body.data(), body.size(), payload.data(),
                                                          payload.size(), level);
    if (!ZSTD_isError(n) && n < payload.size()) {
      body.resize(n);
      flags |= kFlagZstd;
    }
  }
  out.push_back(static_cast<char>(flags));
  put_u32(out, events);
  put_u32(out, static_cast<std::uint32_t>(payload.size()));
  if ((flags & kFlagZstd) != 0) {
    out.append(body);
  } else {
    out.append(payload);
  }
  const auto crc = static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(out.data() + 8), static_cast<uInt>(out.size() - 8)));
  std::memcpy(out.data() + 4, &crc, 4);
}

bool peek_record(std::string_view record, RecordInfo& info) {
  if (record.size() < kHeaderSize || std::memcmp(record.data(), kMagic, 4) != 0) return false;
  std::memcpy(&info.events, record.data() + 9, 4);
  std::memcpy(&info.raw_bytes, record.data() + 13, 4);
  return true;
}

Status decode_record(std::string_view record, Batch& out, std::string& scratch) {
  out.clear();
  RecordInfo info;
  if (!peek_record(record, info)) return Status(Errc::invalid_data, "not a sluice record");
  std::uint32_t stored = 0;
  std::memcpy(&stored, record.data() + 4, 4);
  const auto crc = static_cast<std::uint32_t>(crc32(
      0, reinterpret_cast<const Bytef*>(record.data() + 8), static_cast<uInt>(record.size() - 8)));
  if (crc != stored) return Status(Errc::invalid_data, "checksum mismatch");
  std::string_view payload = record.substr(kHeaderSize);
  const auto flags = static_cast<std::uint8_t>(record[8]);
  if ((flags & ~(kFlagZstd | kFlagBodyRefs)) != 0) {
    return Status(Errc::invalid_data, "unknown record flags");
  }
  const bool body_refs = (flags & kFlagBodyRefs) != 0;
  if ((flags & kFlagZstd) != 0) {
    scratch.resize(info.raw_bytes);
    ZSTD_DCtx* dctx = zstd_contexts().d;
    const std::size_t n =
        dctx != nullptr
            ? ZSTD_decompressDCtx(dctx, scratch.data(), scratch.size(), payload.data(),
                                  payload.size())
            : ZSTD_decompress(scratch.data(), scratch.size(), payload.data(), payload.size());
    if (ZSTD_isError(n) || n != info.raw_bytes)
      return Status(Errc::invalid_data, "zstd frame does not decode");
    payload = scratch;
  }
  Batch& decoded = out;
  decoded.clear();
  Reader r{payload.data(), payload.data() + payload.size()};
  const auto common = r.get<std::uint16_t>();
  std::vector<std::pair<std::string_view, std::string_view>> commons;
  for (std::uint16_t i = 0; i < common && r.ok; ++i) {
    const auto k = r.str32();
    const auto v = r.str32();
    commons.emplace_back(k, v);
  }
  for (const auto& [k, v] : commons) decoded.set_common_header(k, v);
  // Reused by this thread's decodes: no allocation per event once warm.
  thread_local std::vector<Header> headers;
  thread_local std::vector<Field> fields;
  for (std::uint32_t i = 0; i < info.events && r.ok; ++i) {
    const auto ts = r.get<std::uint64_t>();
    const auto id = r.get<std::uint64_t>();
    const auto body = r.str32();
    if (!r.ok) break;
    headers.clear();
    fields.clear();
    const auto header_count = r.get<std::uint16_t>();
    for (std::uint16_t h = 0; h < header_count && r.ok; ++h) {
      const auto k = r.str32();
      const auto v = r.str32();
      headers.push_back({k, v});
    }
    // A range of the body, checked against it.
    auto body_range = [&]() -> std::string_view {
      const auto off = r.varint();
      const auto len = r.varint();
      if (!r.ok || off > body.size() || len > body.size() - off) {
        r.ok = false;
        return {};
      }
      return body.substr(off, len);
    };
    const auto field_count = r.get<std::uint16_t>();
    for (std::uint16_t f = 0; f < field_count && r.ok; ++f) {
      if (!body_refs) {  // the encoding before body ranges: key, type, text
        const auto k = r.str32();
        const auto type = r.get<std::uint8_t>();
        const auto text = r.str32();
        fields.push_back({k, text, static_cast<FieldType>(type)});
        continue;
      }
      const auto type = r.get<std::uint8_t>();
      if ((type & kTypeMask) > static_cast<std::uint8_t>(FieldType::json)) r.ok = false;
      const auto k = (type & kKeyInBody) != 0 ? body_range() : r.str32();
      const auto text = (type & kTextInBody) != 0 ? body_range() : r.str32();
      fields.push_back({k, text, static_cast<FieldType>(type & kTypeMask)});
    }
    // Fields that are ranges of the body stay ranges of the decoded event's body.
    if (r.ok) {
      decoded.add_event(body, static_cast<std::int64_t>(ts), id, headers.data(), headers.size(),
                        fields.data(), fields.size());
    }
  }
  if (!r.ok || decoded.size() != info.events || r.p != r.end) {
    decoded.clear();
    return Status(Errc::invalid_data, "record payload does not parse");
  }
  return {};
}

}  // namespace sluice::channels

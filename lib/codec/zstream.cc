#include "lib/codec/zstream.h"

#include <algorithm>
#include <string>

namespace sluice::codec {

Deflater::Deflater(int level) { deflateInit(&z_, level); }
Deflater::~Deflater() { deflateEnd(&z_); }

void Deflater::write(std::string_view in, std::string& out) {
  z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z_.avail_in = static_cast<uInt>(in.size());
  do {
    const std::size_t at = out.size();
    const std::size_t room = deflateBound(&z_, z_.avail_in) + 64;
    out.resize(at + room);
    z_.next_out = reinterpret_cast<Bytef*>(out.data() + at);
    z_.avail_out = static_cast<uInt>(room);
    deflate(&z_, Z_SYNC_FLUSH);
    out.resize(at + room - z_.avail_out);
  } while (z_.avail_in > 0 || z_.avail_out == 0);
}

Inflater::Inflater(std::size_t max_out, Wrapper wrapper) : max_out_(max_out), wrapper_(wrapper) {
  inflateInit2(&z_, wrapper == Wrapper::gzip ? 16 + MAX_WBITS : MAX_WBITS);
}
Inflater::~Inflater() { inflateEnd(&z_); }

Status Inflater::write(std::string_view in, std::string& out) {
  if (ended_) return Status(Errc::invalid_data, "data after the end of the compressed stream");
  z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z_.avail_in = static_cast<uInt>(in.size());
  const std::size_t start = out.size();
  while (z_.avail_in > 0) {
    const std::size_t at = out.size();
    if (at - start > max_out_) {
      exceeded_ = true;
      return Status(Errc::invalid_data,
                    "compressed data expands beyond " + std::to_string(max_out_) + " bytes");
    }
    // One byte past the limit is enough to know it is passed.
    const std::size_t room = std::min<std::size_t>(64 * 1024, max_out_ + 1 - (at - start));
    out.resize(at + room);
    z_.next_out = reinterpret_cast<Bytef*>(out.data() + at);
    z_.avail_out = static_cast<uInt>(room);
    const int rc = inflate(&z_, Z_SYNC_FLUSH);
    out.resize(at + room - z_.avail_out);
    if (rc == Z_STREAM_END) {
      ended_ = true;
      break;
    }
    if (rc == Z_BUF_ERROR && z_.avail_out != 0) break;  // needs more input
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      const char* why = z_.msg != nullptr ? z_.msg : "inflate failed";
      return Status(Errc::invalid_data,
                    wrapper_ == Wrapper::gzip
                        ? std::string("not valid gzip: ") + why
                        : std::string("not a zlib stream (compression mismatch?): ") + why);
    }
  }
  if (out.size() - start > max_out_) {
    exceeded_ = true;
    return Status(Errc::invalid_data,
                  "compressed data expands beyond " + std::to_string(max_out_) + " bytes");
  }
  return {};
}

ZstdDecoder::ZstdDecoder() : ctx_(ZSTD_createDCtx()) {}
ZstdDecoder::~ZstdDecoder() { ZSTD_freeDCtx(ctx_); }

Status ZstdDecoder::decode(std::string_view in, std::size_t max_out, std::string& out,
                           bool& exceeded) {
  exceeded = false;
  ZSTD_DCtx_reset(ctx_, ZSTD_reset_session_only);
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  const std::size_t start = out.size();
  std::size_t rc = 1;
  while (ib.pos < ib.size || rc != 0) {
    const std::size_t at = out.size();
    if (at - start > max_out) break;
    const std::size_t room = std::min<std::size_t>(64 * 1024, max_out + 1 - (at - start));
    out.resize(at + room);
    ZSTD_outBuffer ob{out.data() + at, room, 0};
    rc = ZSTD_decompressStream(ctx_, &ob, &ib);
    out.resize(at + ob.pos);
    if (ZSTD_isError(rc))
      return Status(Errc::invalid_data, std::string("not valid zstd: ") + ZSTD_getErrorName(rc));
    if (ib.pos == ib.size && rc != 0 && ob.pos < room)
      return Status(Errc::invalid_data, "truncated zstd body");
  }
  if (out.size() - start > max_out) {
    exceeded = true;
    return Status(Errc::invalid_data,
                  "compressed data expands beyond " + std::to_string(max_out) + " bytes");
  }
  return {};
}

}  // namespace sluice::codec

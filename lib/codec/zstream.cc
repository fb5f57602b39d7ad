#include "lib/codec/zstream.h"

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

Inflater::Inflater(std::size_t max_out) : max_out_(max_out) { inflateInit(&z_); }
Inflater::~Inflater() { inflateEnd(&z_); }

Status Inflater::write(std::string_view in, std::string& out) {
  if (ended_) return Status(Errc::invalid_data, "data after the end of the zlib stream");
  z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z_.avail_in = static_cast<uInt>(in.size());
  const std::size_t start = out.size();
  while (z_.avail_in > 0) {
    const std::size_t at = out.size();
    const std::size_t room = 64 * 1024;
    if (at - start + room > max_out_ + room) {
      return Status(Errc::invalid_data, "a compressed read expands beyond the frame limit");
    }
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
      return Status(Errc::invalid_data, std::string("not a zlib stream (compression mismatch?): ") +
                                            (z_.msg != nullptr ? z_.msg : "inflate failed"));
    }
  }
  return {};
}

}  // namespace sluice::codec

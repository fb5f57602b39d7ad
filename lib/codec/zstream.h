#pragma once

#include <zlib.h>
#include <zstd.h>

#include <string>
#include <string_view>

#include "lib/core/status.h"

namespace sluice::codec {

/// Flume's "deflate": the whole byte stream of one direction of a connection is one zlib stream;
/// every frame written is flushed with Z_SYNC_FLUSH so that the peer can decode it at once.
class Deflater {
 public:
  explicit Deflater(int level = 6);
  ~Deflater();
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;
  /// Appends the compressed form of `in` (sync-flushed) to `out`.
  void write(std::string_view in, std::string& out);

 private:
  z_stream z_{};
};

/// Decompresses a zlib stream (Flume's "deflate", one per connection direction, fed frame by
/// frame) or a gzip member (an HTTP body with Content-Encoding: gzip).
class Inflater {
 public:
  enum class Wrapper { zlib, gzip };
  /// `max_out` bounds what one write() may produce (a zlib bomb is an error, not memory).
  explicit Inflater(std::size_t max_out, Wrapper wrapper = Wrapper::zlib);
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  /// Appends the decompressed bytes of `in` to `out`. Errc::invalid_data for damaged input, or
  /// when the output would pass `max_out` (then exceeded() is true).
  Status write(std::string_view in, std::string& out);
  /// The stream's end was read (a whole gzip member, or the end of a zlib stream).
  bool ended() const noexcept { return ended_; }
  bool exceeded() const noexcept { return exceeded_; }

 private:
  z_stream z_{};
  std::size_t max_out_;
  Wrapper wrapper_;
  bool ended_ = false;
  bool exceeded_ = false;
};

/// Decompresses whole zstd frames (an HTTP body with Content-Encoding: zstd); the context is kept
/// between bodies.
class ZstdDecoder {
 public:
  ZstdDecoder();
  ~ZstdDecoder();
  ZstdDecoder(const ZstdDecoder&) = delete;
  ZstdDecoder& operator=(const ZstdDecoder&) = delete;
  /// Appends the decompressed `in` to `out`; at most `max_out` bytes (else Errc::invalid_data
  /// with exceeded set). A body that ends inside a frame is an error.
  Status decode(std::string_view in, std::size_t max_out, std::string& out, bool& exceeded);

 private:
  ZSTD_DCtx* ctx_;
};

}  // namespace sluice::codec

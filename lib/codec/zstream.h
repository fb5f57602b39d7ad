#pragma once

#include <zlib.h>

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

class Inflater {
 public:
  /// `max_out` bounds what one write() may produce (a zlib bomb is an error, not memory).
  explicit Inflater(std::size_t max_out);
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  /// Appends the decompressed bytes of `in` to `out`.
  Status write(std::string_view in, std::string& out);

 private:
  z_stream z_{};
  std::size_t max_out_;
  bool ended_ = false;
};

}  // namespace sluice::codec

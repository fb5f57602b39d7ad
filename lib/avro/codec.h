#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/avro/protocol.h"
#include "lib/core/batch.h"
#include "lib/core/byte_buffer.h"
#include "lib/core/result.h"

namespace sluice::avro {

/// Appends Avro binary encoding (zigzag varints, length-prefixed bytes) to a string.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void write_long(std::int64_t v);
  void write_bytes(std::string_view b) {
    write_long(static_cast<std::int64_t>(b.size()));
    out_.append(b);
  }
  void write_raw(const void* p, std::size_t n) { out_.append(static_cast<const char*>(p), n); }
  void write_byte(std::uint8_t b) { out_.push_back(static_cast<char>(b)); }
  std::string& out() { return out_; }

 private:
  std::string& out_;
};

/// Reads Avro binary from a byte span; the first error sticks (ok() turns false) and every later
/// read returns empty values. Views point into the span.
class Reader {
 public:
  explicit Reader(std::string_view in) : p_(in.data()), end_(in.data() + in.size()) {}
  std::int64_t read_long();
  std::int32_t read_int();
  std::string_view read_bytes();
  std::string_view read_fixed(std::size_t n);
  /// A map or array block count: handles negative counts (followed by a byte size).
  std::int64_t read_block_count();
  bool ok() const noexcept { return error_ == nullptr; }
  const char* error() const noexcept { return error_; }
  void fail(const char* why) {
    if (error_ == nullptr) error_ = why;
    p_ = end_;
  }
  bool at_end() const noexcept { return p_ == end_; }
  std::size_t left() const noexcept { return static_cast<std::size_t>(end_ - p_); }

 private:
  const char* p_;
  const char* end_;
  const char* error_ = nullptr;
};

/// A frame's payload as it is assembled (see ByteBuffer: growing it does not copy it).
using FrameBuffer = ByteBuffer;

/// Limits a server applies to what a client sends (violations close the connection).
struct FrameLimits {
  std::uint32_t max_buffers = 16384;           // buffers per frame
  std::uint32_t max_buffer_bytes = 64u << 20;  // bytes per buffer
  std::uint32_t max_frame_bytes = 64u << 20;   // bytes per frame (all its buffers)
};

/// Netty's framing: int32 BE serial, int32 BE count, then count x (int32 BE length, bytes).
/// feed() bytes as they arrive; each complete frame's buffers are concatenated into one payload.
class FrameDecoder {
 public:
  explicit FrameDecoder(FrameLimits limits = {}) : limits_(limits) {}
  /// Consumes `data`; calls on_frame(serial, payload) for each complete frame. Returns a
  /// non-ok Status (and stops) on a violation: zero buffers, a negative or oversized length.
  template <class F>
  Status feed(std::string_view data, F&& on_frame);
  /// Bytes of the frame being assembled (bounded by max_frame_bytes plus headers).
  std::size_t buffered() const noexcept { return payload_.size() + head_fill_; }
  /// Inside on_frame: the buffer holding the frame's payload. The callback may move from it, to
  /// keep the frame without copying it; the next frame then starts in a new buffer.
  FrameBuffer& frame_buffer() noexcept { return payload_; }
  /// A buffer grown past this by a large frame is freed once the frame is handed over, so that a
  /// connection does not hold its largest frame's size for as long as it stays open.
  static constexpr std::size_t kKeepBytes = 1 << 20;
  /// True between the first byte of a frame and its last.
  bool in_frame() const noexcept {
    return state_ != State::serial || head_fill_ != 0 || count_ != 0;
  }

 private:
  enum class State : std::uint8_t { serial, count, length, data };
  Status header_done();
  FrameLimits limits_;
  State state_ = State::serial;
  char head_[4];
  std::size_t head_fill_ = 0;
  std::int32_t serial_ = 0;
  std::uint32_t count_ = 0, buffers_left_ = 0, length_left_ = 0;
  FrameBuffer payload_;
};

/// One frame: serial, one buffer holding `payload`.
void encode_frame(std::int32_t serial, std::string_view payload, std::string& out);

struct HandshakeRequest {
  Md5 client_hash{};
  std::optional<std::string_view> client_protocol;
  Md5 server_hash{};
};
struct HandshakeResponse {
  Match match = Match::both;
  std::optional<std::string_view> server_protocol;
  std::optional<Md5> server_hash;
};

void write_handshake_request(Writer& w, const HandshakeRequest& h);
void write_handshake_response(Writer& w, const HandshakeResponse& h);
bool read_handshake_request(Reader& r, HandshakeRequest& h);
bool read_handshake_response(Reader& r, HandshakeResponse& h);

/// Writes the call part of an appendBatch request for events [begin, end) of `batch`: empty
/// metadata, the message name, the array of AvroFlumeEvent (headers, body).
void write_append_batch(Writer& w, const Batch& batch, std::size_t begin, std::size_t end);

/// Limits on one decoded call.
struct CallLimits {
  std::uint32_t max_events = 100000;
  std::uint32_t max_headers = 1024;  // per event
};

/// The decoded call part of a request (after the handshake, if any).
struct Call {
  std::string_view message;  // "append", "appendBatch", or "" (a ping)
  std::size_t events = 0;
};

/// Decodes the call part of a request: metadata, message name and, for append/appendBatch, the
/// events, appended to `out` with `timestamp_ns` and ids from `next_id`. An error names what is
/// wrong ("unknown message 'x'", "truncated", ...); nothing is appended then.
Status read_call(Reader& r, const CallLimits& limits, std::int64_t timestamp_ns,
                 std::uint64_t (*make_id)(void*, std::uint64_t), void* id_ctx, Batch& out,
                 Call& call);

/// Writes a call response: empty metadata, then the Status, or an error string.
void write_response(Writer& w, CallStatus status);
void write_error_response(Writer& w, std::string_view message);

/// Reads a call response; on success `status` is set, else `error` holds the remote error text.
bool read_response(Reader& r, CallStatus& status, std::string& error);

/// MD5 of `text` (OpenSSL).
Md5 md5(std::string_view text);

// ---- implementation of the template ----

template <class F>
Status FrameDecoder::feed(std::string_view data, F&& on_frame) {
  const char* p = data.data();
  const char* end = p + data.size();
  while (p < end) {
    if (state_ != State::data) {
      const std::size_t take =
          std::min<std::size_t>(4 - head_fill_, static_cast<std::size_t>(end - p));
      std::memcpy(head_ + head_fill_, p, take);
      head_fill_ += take;
      p += take;
      if (head_fill_ < 4) break;
      head_fill_ = 0;
      if (Status st = header_done(); !st.ok()) return st;
    } else {
      const std::size_t take =
          std::min<std::size_t>(length_left_, static_cast<std::size_t>(end - p));
      payload_.append(p, take);
      p += take;
      length_left_ -= static_cast<std::uint32_t>(take);
      if (length_left_ == 0) {
        state_ = buffers_left_ > 0 ? State::length : State::serial;
      }
    }
    if (state_ == State::serial && buffers_left_ == 0 && count_ > 0) {
      count_ = 0;
      on_frame(serial_, payload_.view());
      if (payload_.capacity() > kKeepBytes) {
        payload_.release();
      } else {
        payload_.clear();
      }
    }
  }
  return {};
}

}  // namespace sluice::avro

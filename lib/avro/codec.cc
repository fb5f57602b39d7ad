#include "lib/avro/codec.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "lib/core/log.h"

namespace sluice::avro {

namespace {

std::int32_t be32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<std::int32_t>((std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) |
                                   (std::uint32_t{u[2]} << 8) | std::uint32_t{u[3]});
}

void put_be32(std::string& out, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 4);
}

}  // namespace

void Writer::write_long(std::int64_t v) {
  auto z = (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
  char buf[10];
  std::size_t n = 0;
  while (z >= 0x80) {
    buf[n++] = static_cast<char>((z & 0x7f) | 0x80);
    z >>= 7;
  }
  buf[n++] = static_cast<char>(z);
  out_.append(buf, n);
}

std::int64_t Reader::read_long() {
  std::uint64_t z = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (p_ == end_) {
      fail("truncated");
      return 0;
    }
    const auto b = static_cast<unsigned char>(*p_++);
    z |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return static_cast<std::int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  fail("a varint longer than 10 bytes");
  return 0;
}

std::int32_t Reader::read_int() {
  const std::int64_t v = read_long();
  if (v < INT32_MIN || v > INT32_MAX) {
    fail("an int out of range");
    return 0;
  }
  return static_cast<std::int32_t>(v);
}

std::string_view Reader::read_bytes() {
  const std::int64_t n = read_long();
  if (!ok()) return {};
  if (n < 0) {
    fail("a negative length");
    return {};
  }
  if (static_cast<std::uint64_t>(n) > left()) {
    fail("truncated");
    return {};
  }
  std::string_view v(p_, static_cast<std::size_t>(n));
  p_ += n;
  return v;
}

std::string_view Reader::read_fixed(std::size_t n) {
  if (n > left()) {
    fail("truncated");
    return {};
  }
  std::string_view v(p_, n);
  p_ += n;
  return v;
}

std::int64_t Reader::read_block_count() {
  std::int64_t n = read_long();
  if (n < 0) {
    if (n == INT64_MIN) {
      fail("a block count out of range");
      return 0;
    }
    n = -n;
    read_long();  // the block's size in bytes, not needed
  }
  return n;
}

Status FrameDecoder::header_done() {
  const std::int32_t v = be32(head_);
  switch (state_) {
    case State::serial:
      serial_ = v;
      state_ = State::count;
      return {};
    case State::count:
      if (v <= 0)
        return Status(Errc::invalid_data, "a frame with " + std::to_string(v) + " buffers");
      if (static_cast<std::uint32_t>(v) > limits_.max_buffers) {
        return Status(Errc::invalid_data, "a frame with " + std::to_string(v) + " buffers (limit " +
                                              std::to_string(limits_.max_buffers) + ")");
      }
      count_ = static_cast<std::uint32_t>(v);
      buffers_left_ = count_;
      state_ = State::length;
      return {};
    case State::length:
      if (v < 0) return Status(Errc::invalid_data, "a buffer of negative length");
      if (static_cast<std::uint32_t>(v) > limits_.max_buffer_bytes) {
        return Status(Errc::invalid_data, "a buffer of " + std::to_string(v) + " bytes (limit " +
                                              std::to_string(limits_.max_buffer_bytes) + ")");
      }
      if (payload_.size() + static_cast<std::uint32_t>(v) > limits_.max_frame_bytes) {
        return Status(Errc::invalid_data,
                      "a frame over " + std::to_string(limits_.max_frame_bytes) + " bytes");
      }
      --buffers_left_;
      length_left_ = static_cast<std::uint32_t>(v);
      state_ = length_left_ > 0 ? State::data : (buffers_left_ > 0 ? State::length : State::serial);
      return {};
    case State::data:
      break;
  }
  return {};
}

void encode_frame(std::int32_t serial, std::string_view payload, std::string& out) {
  put_be32(out, static_cast<std::uint32_t>(serial));
  put_be32(out, 1);
  put_be32(out, static_cast<std::uint32_t>(payload.size()));
  out.append(payload);
}

void write_handshake_request(Writer& w, const HandshakeRequest& h) {
  w.write_raw(h.client_hash.data(), 16);
  if (h.client_protocol) {
    w.write_long(1);
    w.write_bytes(*h.client_protocol);
  } else {
    w.write_long(0);
  }
  w.write_raw(h.server_hash.data(), 16);
  w.write_long(1);  // meta: an empty map, as Java clients send
  w.write_long(0);
}

void write_handshake_response(Writer& w, const HandshakeResponse& h) {
  w.write_long(static_cast<std::int64_t>(h.match));
  if (h.server_protocol) {
    w.write_long(1);
    w.write_bytes(*h.server_protocol);
  } else {
    w.write_long(0);
  }
  if (h.server_hash) {
    w.write_long(1);
    w.write_raw(h.server_hash->data(), 16);
  } else {
    w.write_long(0);
  }
  w.write_long(0);  // meta: null
}

namespace {

bool read_md5(Reader& r, Md5& out) {
  const std::string_view b = r.read_fixed(16);
  if (!r.ok()) return false;
  std::memcpy(out.data(), b.data(), 16);
  return true;
}

// meta: ["null", map<bytes>]: skipped.
void skip_meta_union(Reader& r) {
  const std::int64_t branch = r.read_long();
  if (branch == 0) return;
  if (branch != 1) return r.fail("a bad union branch in the handshake metadata");
  for (std::int64_t n = r.read_block_count(); r.ok() && n > 0; n = r.read_block_count()) {
    for (std::int64_t i = 0; i < n && r.ok(); ++i) {
      r.read_bytes();
      r.read_bytes();
    }
  }
}

void skip_map_of_bytes(Reader& r) {
  for (std::int64_t n = r.read_block_count(); r.ok() && n > 0; n = r.read_block_count()) {
    for (std::int64_t i = 0; i < n && r.ok(); ++i) {
      r.read_bytes();
      r.read_bytes();
    }
  }
}

}  // namespace

bool read_handshake_request(Reader& r, HandshakeRequest& h) {
  if (!read_md5(r, h.client_hash)) return false;
  const std::int64_t branch = r.read_long();
  if (branch == 1) {
    h.client_protocol = r.read_bytes();
  } else if (branch != 0) {
    r.fail("a bad union branch for clientProtocol");
  }
  if (!read_md5(r, h.server_hash)) return false;
  skip_meta_union(r);
  return r.ok();
}

bool read_handshake_response(Reader& r, HandshakeResponse& h) {
  const std::int64_t m = r.read_long();
  if (m < 0 || m > 2) r.fail("a bad HandshakeMatch");
  h.match = static_cast<Match>(m);
  const std::int64_t p = r.read_long();
  if (p == 1) {
    h.server_protocol = r.read_bytes();
  } else if (p != 0) {
    r.fail("a bad union branch for serverProtocol");
  }
  const std::int64_t s = r.read_long();
  if (s == 1) {
    Md5 hash{};
    if (read_md5(r, hash)) h.server_hash = hash;
  } else if (s != 0) {
    r.fail("a bad union branch for serverHash");
  }
  skip_meta_union(r);
  return r.ok();
}

void write_append_batch(Writer& w, const Batch& batch, std::size_t begin, std::size_t end) {
  w.write_long(0);  // call metadata: empty map
  w.write_bytes("appendBatch");
  if (end > begin) {
    w.write_long(static_cast<std::int64_t>(end - begin));
    for (std::size_t i = begin; i < end; ++i) {
      const EventView e = batch[i];
      const std::size_t headers = e.header_count();
      if (headers > 0) {
        w.write_long(static_cast<std::int64_t>(headers));
        for (std::size_t h = 0; h < headers; ++h) {
          const Header hd = e.header(h);
          w.write_bytes(hd.key);
          w.write_bytes(hd.value);
        }
      }
      w.write_long(0);
      w.write_bytes(e.body());
    }
  }
  w.write_long(0);
}

namespace {

// One AvroFlumeEvent (headers map, body bytes) appended to `out`.
void read_event(Reader& r, const CallLimits& limits, std::int64_t ts, std::uint64_t id,
                Batch& out) {
  // Headers come first in the encoding but the body must be added first: remember them.
  struct Kv {
    std::string_view k, v;
  };
  static thread_local std::vector<Kv> headers;
  headers.clear();
  for (std::int64_t n = r.read_block_count(); r.ok() && n > 0; n = r.read_block_count()) {
    if (headers.size() + static_cast<std::uint64_t>(n) > limits.max_headers) {
      return r.fail("too many headers in an event");
    }
    for (std::int64_t i = 0; i < n && r.ok(); ++i) {
      const std::string_view k = r.read_bytes();
      const std::string_view v = r.read_bytes();
      headers.push_back({k, v});
    }
  }
  const std::string_view body = r.read_bytes();
  if (!r.ok()) return;
  std::int64_t event_ts = ts;
  for (const auto& h : headers) {
    if (h.k != "timestamp" || h.v.empty() || h.v.size() > 15) continue;
    std::int64_t ms = 0;
    bool digits = true;
    for (char c : h.v) {
      if (c < '0' || c > '9') {
        digits = false;
        break;
      }
      ms = ms * 10 + (c - '0');
    }
    if (digits) event_ts = ms * 1'000'000;  // Flume's timestamp header: epoch ms
  }
  out.add(body, event_ts, id);
  for (const auto& h : headers) out.add_header(h.k, h.v);
}

}  // namespace

Status read_call(Reader& r, const CallLimits& limits, std::int64_t timestamp_ns,
                 std::uint64_t (*make_id)(void*, std::uint64_t), void* id_ctx, Batch& out,
                 Call& call) {
  const std::size_t before = out.size();
  skip_map_of_bytes(r);
  call.message = r.read_bytes();
  call.events = 0;
  if (!r.ok()) return Status(Errc::invalid_data, std::string("request ") + r.error());
  if (call.message.empty()) return {};  // a ping: no parameters
  const auto fail = [&](std::string why) {
    // Drop what was decoded of this call.
    Batch keep;
    keep.append_range(out, 0, before);
    out.swap(keep);
    return Status(Errc::invalid_data, std::move(why));
  };
  if (call.message == "append") {
    read_event(r, limits, timestamp_ns, make_id(id_ctx, 0), out);
    call.events = 1;
  } else if (call.message == "appendBatch") {
    for (std::int64_t n = r.read_block_count(); r.ok() && n > 0; n = r.read_block_count()) {
      if (call.events + static_cast<std::uint64_t>(n) > limits.max_events) {
        return fail("a batch of more than " + std::to_string(limits.max_events) + " events");
      }
      for (std::int64_t i = 0; i < n && r.ok(); ++i) {
        read_event(r, limits, timestamp_ns, make_id(id_ctx, call.events), out);
        ++call.events;
      }
    }
  } else {
    return fail("unknown message '" + escape_for_log(call.message, 64) + "'");
  }
  if (!r.ok()) return fail(std::string("request ") + r.error());
  if (!r.at_end())
    return fail("request has " + std::to_string(r.left()) + " bytes after its parameters");
  return {};
}

void write_response(Writer& w, CallStatus status) {
  w.write_long(0);  // metadata
  w.write_byte(0);  // no error
  w.write_long(static_cast<std::int64_t>(status));
}

void write_error_response(Writer& w, std::string_view message) {
  w.write_long(0);
  w.write_byte(1);  // error
  w.write_long(0);  // union ["string"] branch 0
  w.write_bytes(message);
}

bool read_response(Reader& r, CallStatus& status, std::string& error) {
  skip_map_of_bytes(r);
  const std::string_view flag = r.read_fixed(1);
  if (!r.ok()) return false;
  if (flag[0] == 0) {
    const std::int64_t s = r.read_long();
    if (!r.ok() || s < 0 || s > 2) {
      error = "a bad Status in the response";
      return false;
    }
    status = static_cast<CallStatus>(s);
    return true;
  }
  r.read_long();
  error = std::string(r.read_bytes());
  if (!r.ok()) error = "a truncated error response";
  return false;
}

Md5 md5(std::string_view text) {
  Md5 out{};
  unsigned int n = 0;
  EVP_Digest(text.data(), text.size(), out.data(), &n, EVP_md5(), nullptr);
  return out;
}

}  // namespace sluice::avro

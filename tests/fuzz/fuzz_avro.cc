// libFuzzer target: bytes from a client of the avro source. Netty frames (small limits), then
// each frame as the source reads it: a handshake request, then the call (append/appendBatch).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lib/avro/codec.h"

namespace {
std::uint64_t next_id(void*, std::uint64_t n) { return n; }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice;
  avro::FrameLimits limits;
  limits.max_buffers = 64;
  limits.max_buffer_bytes = 1 << 16;
  limits.max_frame_bytes = 1 << 16;
  avro::FrameDecoder decoder(limits);
  avro::CallLimits call_limits;
  call_limits.max_events = 1000;
  call_limits.max_headers = 64;
  bool connected = false;
  Batch out;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // Feed in two pieces, as reads split anywhere.
  const std::size_t cut = size / 3;
  for (std::string_view piece : {input.substr(0, cut), input.substr(cut)}) {
    const Status st = decoder.feed(piece, [&](std::int32_t, std::string_view payload) {
      avro::Reader r(payload);
      if (!connected) {
        avro::HandshakeRequest h;
        if (!avro::read_handshake_request(r, h)) return;
        connected = true;
      }
      out.clear();
      avro::Call call;
      (void)avro::read_call(r, call_limits, 0, &next_id, nullptr, out, call);
      for (std::size_t i = 0; i < out.size(); ++i) {
        const EventView e = out[i];
        (void)e.body();
        for (std::size_t h = 0; h < e.header_count(); ++h) (void)e.header(h);
      }
      std::string reply;
      avro::Writer w(reply);
      avro::write_append_batch(w, out, 0, out.size());  // what a sink would send on
    });
    if (!st.ok()) break;
  }
  // The client side: a server's answer.
  avro::Reader r(input);
  avro::HandshakeResponse hr;
  if (avro::read_handshake_response(r, hr)) {
    avro::CallStatus status{};
    std::string error;
    (void)avro::read_response(r, status, error);
  }
  return 0;
}

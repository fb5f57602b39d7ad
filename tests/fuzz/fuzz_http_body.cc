// libFuzzer target: an HTTP request body as the http source decodes it. The first byte picks the
// Content-Type and Content-Encoding; the rest is the body.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sources/http/http_source.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static const char* types[] = {"application/json", "application/x-ndjson", "text/plain",
                                "application/json; charset=UTF-8"};
  static const char* encodings[] = {"", "gzip", "zstd", "identity"};
  const std::uint8_t pick = data[0];
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  sluice::Batch out;
  static sluice::sources::BodyDecoder decoder;
  std::uint64_t seq = 0;
  const sluice::sources::BodyLimits limits{1 << 20, 10000};
  (void)sluice::sources::decode_body(types[pick & 3], encodings[(pick >> 2) & 3], body, limits, 0,
                                     1, seq, decoder, out);
  for (std::size_t i = 0; i < out.size(); ++i) (void)out[i].body();
  return 0;
}

// libFuzzer target: reading what can be trusted out of a damaged LMDB file (salvage.h) without
// LMDB. Any bytes are a possible data.mdb: it must never read outside them or crash, and every
// record it keeps must pass its check.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "channels/lmdb/record_codec.h"
#include "channels/lmdb/salvage.h"
#include "lib/core/batch.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice;
  // A copy of exactly `size` bytes, so that ASan sees a read one past the end.
  const std::string image(reinterpret_cast<const char*>(data), size);
  const channels::Salvage s = channels::salvage_image(image);
  (void)s.summary();
  Batch out;
  std::string scratch;
  for (const auto& [name, ch] : s.channels) {
    for (const auto& [seq, rec] : ch.records) {
      if (!channels::decode_record(rec, out, scratch).ok()) std::abort();
    }
  }
  return 0;
}

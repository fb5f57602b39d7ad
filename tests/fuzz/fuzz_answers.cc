// libFuzzer target: what HTTP peers answer, as the sinks read it: DataHub's PutRecords, error and
// ListShard bodies, shard routing, Retry-After values and the HTTP verdict of any status and body.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lib/http/http_client.h"
#include "sinks/datahub/datahub_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice;
  namespace dh = sluice::sinks::datahub;
  if (size < 2) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  (void)dh::parse_put_result(body);
  (void)dh::parse_error(body);
  if (auto shards = dh::parse_shards(body)) {
    const auto active = dh::active_shards(*shards);
    (void)dh::shard_for_hash(active, dh::hash_key(body.substr(0, 16)));
    (void)dh::shard_for_hash(*shards, body.substr(0, 32));
  }
  (void)dh::classify_code(body.substr(0, 40));
  (void)http::parse_retry_after(body.substr(0, 64), 1'700'000'000);
  http::ClientResponse r;
  r.status = 100 + (data[0] * 256 + data[1]) % 500;
  r.body.assign(body);
  r.body_truncated = data[1] % 2 == 1;
  r.headers.emplace_back("retry-after", std::string(body.substr(0, 32)));
  (void)http::classify(r, data[0], 1'700'000'000);
  return 0;
}

#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/config/secret.h"
#include "lib/core/context.h"
#include "lib/core/log.h"
#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/core/result.h"
#include "lib/core/sink.h"
#include "lib/http/http_client.h"

namespace sluice::sinks {

enum class HttpBodyFormat : std::uint8_t {
  json,    // one JSON array of the file sink's `json` objects
  ndjson,  // those objects, one per line
  raw,     // the bodies, one per line
};

struct HttpSinkConfig {
  std::string url;
  HttpBodyFormat format = HttpBodyFormat::ndjson;
  http::Method method = http::Method::post;
  /// Extra request headers (names as written). Values may be secrets: `{ env = "KEY" }`.
  std::vector<std::pair<std::string, std::string>> headers;
  /// Sent as "Authorization: Bearer <token>".
  Secret auth_token;
  http::Compression compression = http::Compression::none;
  int compression_level = 0;  // 0: the codec's default
  /// Name of the header that carries the batch's key; empty: none.
  std::string idempotency_header = "Idempotency-Key";
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(5);
  /// Per request; by default the sink's delivery_timeout, so a request never outlives the
  /// group's patience.
  std::chrono::nanoseconds request_timeout = std::chrono::seconds(5);
  /// At stop, how long requests in flight may still take before they are cancelled (answered
  /// Retry, so their batches stay in the channel).
  std::chrono::nanoseconds flush_timeout = std::chrono::seconds(5);
  /// Longest Retry-After honoured; a server asking for more gets this.
  std::chrono::nanoseconds max_retry_after = std::chrono::seconds(60);
  std::uint32_t max_in_flight = 4;
  /// Health check for a failover group's fail-back: HEAD (or GET) on probe_url, healthy on 2xx.
  /// Without probe_url the probe is a HEAD on `url`, healthy on any answer but 408, 429 and 5xx.
  std::string probe_url;
  http::Method probe_method = http::Method::head;
  /// Bytes of an error answer's body put in the reject reason (and the log).
  std::uint32_t reason_body_bytes = 256;
  http::ClientTls tls;
  std::string proxy;
  bool http2 = true;

  static std::optional<HttpSinkConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// A webhook: one POST per batch, in the configured body format. 2xx answers Ok; 408, 429, 5xx,
/// timeouts and connection errors answer Retry (a Retry-After is honoured: until it passes, new
/// batches answer Retry at once and the probe reports unhealthy); other 4xx answer Reject with the
/// answer's body in the reason. A 413 (body too large) splits the request in two halves, sent one
/// after the other, down to single events (a single event answered 413 is rejected, the rest
/// delivered). The sink then cuts batches into requests of at most half the refused request's
/// event bytes (EventView::bytes, before encoding), and doubles that limit after kGrowAfter
/// accepted requests. Several requests are in
/// flight at once (max_in_flight), on kept-alive connections.
class HttpSink final : public Sink {
 public:
  HttpSink(const HttpSinkConfig& config, SinkContext& ctx, std::unique_ptr<http::Client> client);
  ~HttpSink() override;
  static Result<std::unique_ptr<HttpSink>> create(const HttpSinkConfig& config, SinkContext& ctx);

  void deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) override;
  void stop(StopCallback on_stopped) override;
  void cancel(DeliveryId id) override;
  bool probe(ProbeListener& listener) override;

  /// The Idempotency-Key of a batch: a hash of its event ids in order and their count, so a
  /// resent batch (the same events) carries the same key.
  static std::string idempotency_key(const Batch& batch);
  /// The request body of `batch` in `format` (uncompressed), appended to `out`.
  static void encode(const Batch& batch, HttpBodyFormat format, std::string& out);

 private:
  struct Later;
  struct Delivery {
    DeliveryId id;
    DeliveryListener* done = nullptr;
    const Batch* batch = nullptr;
    http::RequestId request = 0;
    http::CompressJob* work = nullptr;  // compressing on the threadpool
    bool cancelled = false;
    std::size_t raw_bytes = 0;
    // The events [first, end) of the batch that each request still to send carries: the whole
    // batch, unless the request limit or a 413 split it. The back is sent next.
    std::vector<std::pair<std::uint32_t, std::uint32_t>> todo;
    const Batch* sending = nullptr;  // the batch, or `part` when a request carries a range
    Batch part;
    std::vector<std::uint32_t> rejected;  // indices in the batch
    std::string why;                      // the first rejection's reason
  };
  static constexpr std::uint32_t kGrowAfter = 64;
  void send_next(Delivery& d);
  void send(Delivery& d, std::string body);
  void on_response(DeliveryId id, http::ClientResponse&& r);
  void answer(DeliveryId id, DeliveryResult result);
  void answer_later(DeliveryId id, DeliveryListener* done, DeliveryResult result);
  void on_probe_response(http::ClientResponse&& r);
  void maybe_stopped();
  bool waiting_retry_after(TimePoint now) const { return now < retry_after_until_; }

  HttpSinkConfig config_;
  SinkContext& ctx_;
  std::unique_ptr<http::Client> client_;
  std::string log_url_;                         // the URL as logs show it: without a password
  std::unique_ptr<http::Client> probe_client_;  // apart, so a probe never queues behind batches
  std::vector<std::pair<std::string, std::string>> headers_;  // fixed part of every request
  std::unordered_map<std::uint64_t, Delivery> deliveries_;
  std::vector<Later*> later_;
  ProbeListener* probe_listener_ = nullptr;
  bool probe_in_flight_ = false;
  TimePoint retry_after_until_{};
  // Most event bytes per request since a 413 (0: no limit), and the requests accepted since it
  // was last set or doubled.
  std::uint64_t request_bytes_limit_ = 0;
  std::uint32_t accepted_since_limit_ = 0;
  Counter& splits_;
  Gauge& limit_gauge_;
  StopCallback on_stopped_;
  bool stopping_ = false;
  Timer stop_timer_;
  std::string content_type_;
  http::SinkMetrics metrics_;
  RateLimiter log_limit_;
};

}  // namespace sluice::sinks

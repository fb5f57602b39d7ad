#pragma once

#include <simdjson.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lib/codec/zstream.h"
#include "lib/config/config_node.h"
#include "lib/core/context.h"
#include "lib/core/log.h"
#include "lib/core/source.h"
#include "lib/core/source_metrics.h"
#include "lib/core/source_output.h"
#include "lib/core/stop_waiter.h"
#include "lib/http/http_server.h"
#include "lib/ingest/request_putter.h"
#include "lib/parse/pipeline.h"

namespace sluice::sources {

struct HttpSourceConfig {
  std::string listen = "127.0.0.1:8080";
  ByteSize max_body_bytes{16ULL << 20};  // after decompression
  std::uint32_t max_events = 100000;     // per request
  std::uint32_t max_connections = 1024;
  /// Unfinished requests (bytes read, bodies so far) and unsent answers of all connections
  /// together; the connection whose read takes the source past it is answered 503 and closed.
  ByteSize max_buffered_bytes{256ULL << 20};
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(60);
  std::chrono::nanoseconds request_timeout = std::chrono::seconds(30);
  /// The request line and headers must arrive within this (from the accept for a connection's
  /// first request): else 408, so that half-open connections cannot fill max_connections.
  std::chrono::nanoseconds header_timeout = std::chrono::seconds(10);
  /// From a request's last byte to its answer: when its events are not safe by then (a memory
  /// channel whose sink keeps failing), the client gets 503 with Retry-After instead of waiting
  /// forever. The events stay in the channel and may still be delivered (at-least-once).
  std::chrono::nanoseconds ack_timeout = std::chrono::seconds(10);
  std::string auth_token;  // Authorization: Bearer TOKEN; empty: no authentication
  std::vector<std::pair<std::string, std::string>> headers;  // request header -> event header
  tls::TlsConfig tls;
  parse::PipelineConfig pipeline;
  static std::optional<HttpSourceConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

struct BodyLimits {
  std::uint64_t max_body_bytes;  // after decompression
  std::uint32_t max_events;
};

/// What decoding keeps from one request to the next (parsers, buffers): no allocation per event,
/// and none per request once warm.
struct BodyDecoder {
  BodyDecoder() = default;
  BodyDecoder(const BodyDecoder&) = delete;
  BodyDecoder& operator=(const BodyDecoder&) = delete;
  /// Frees what an unusually large body left behind, keeping buffers up to kWarmBytes each: a
  /// burst of large requests must not stay resident while traffic is small or idle.
  void shrink();
  static constexpr std::size_t kWarmBytes = 256 * 1024;
  std::string inflated;
  parse::PaddedBuffer padded;
  std::size_t padded_bytes = 0;  // the largest text loaded into `padded` since the last shrink()
  simdjson::ondemand::parser json;
  simdjson::dom::parser line_parser;
  std::vector<std::pair<std::string_view, std::string_view>> headers;
  codec::ZstdDecoder zstd;
};

/// Decodes one request body into events appended to `out` (ids from id_base and id_seq, time
/// `now`): Content-Encoding gzip / zstd / identity, then framing by Content-Type (Flume JSON,
/// NDJSON, lines). An error is the answer to send (status, message); `out` may then hold part of
/// the request and must be discarded.
std::optional<std::pair<int, std::string>> decode_body(std::string_view content_type,
                                                       std::string_view content_encoding,
                                                       std::string_view body,
                                                       const BodyLimits& limits, std::int64_t now,
                                                       std::uint64_t id_base, std::uint64_t& id_seq,
                                                       BodyDecoder& decoder, Batch& out);

/// Events over HTTP POST (Flume's HTTPSource with its JSON handler, plus NDJSON and plain lines),
/// framed by Content-Type, optionally gzip or zstd encoded. Answers 200 once the events are safe,
/// 503 with Retry-After when the channel is full, 400/401/405/413/415 for bad requests (nothing of
/// such a request enters the channel).
class HttpSource final : public Source {
 public:
  HttpSource(const HttpSourceConfig& config, SourceContext& ctx,
             std::unique_ptr<parse::EventPipeline> pipeline);
  ~HttpSource() override;
  static Result<std::unique_ptr<HttpSource>> create(const HttpSourceConfig& config,
                                                    SourceContext& ctx);

  Status start() override;
  void stop(StopCallback on_stopped) override;
  std::string bound_address() const override { return server_ ? server_->bound_address() : ""; }

 private:
  void handle(http::Request& req, http::Responder responder);
  void handle_request(http::Request& req, http::Responder responder);
  /// Decodes the body into events_; an error is the answer to send (status, message).
  std::optional<std::pair<int, std::string>> decode(const http::Request& req);
  void refuse(http::Responder& responder, int status, std::string message,
              std::vector<std::pair<std::string, std::string>> headers = {});
  void on_ack_timer();
  /// Logs a refused request with the client's address (rate-limited, control bytes escaped).
  void warn_refused(std::string_view peer, http_method method, std::string_view path, int status,
                    std::string_view why);
  struct DecodeJob;
  void start_decode(http::Request& req, http::Responder responder);
  void run_decodes();
  void on_decoded(std::unique_ptr<DecodeJob> job);
  /// Puts decoded events (through the pipeline unless they went through it on the threadpool)
  /// and answers once they are safe.
  void submit(Batch& events, std::string_view path, http::Responder responder,
              bool through_pipeline = false);

  HttpSourceConfig config_;
  SourceContext& ctx_;
  RequestPutter putter_;
  std::unique_ptr<parse::EventPipeline> pipeline_;
  parse::PipelinePool pipelines_;  // copies of it for the bodies decoded on the threadpool
  std::unique_ptr<http::Server> server_;
  Batch events_, parsed_;
  BodyDecoder decoder_;
  std::vector<std::pair<int, Counter*>> by_status_;  // sluice_http_source_requests_total
  std::uint64_t id_base_ = 0, id_seq_ = 0;
  bool stopping_ = false;
  StopWaiter stop_waiter_;
  SourceMetrics metrics_;
  void count(int status);
  RateLimiter log_limit_;
  // Requests whose events are with the channel, oldest first (one ack_timeout for all, so the
  // deadlines are in order too): a request is answered once, by its ack or by the timer.
  struct Waiting {
    std::uint64_t id;
    TimePoint deadline;
    http::Responder responder;
  };
  std::deque<Waiting> waiting_;
  std::uint64_t next_waiting_ = 0;
  Timer ack_timer_;
  // Bodies larger than this, and every compressed one, are decoded on the uv threadpool.
  static constexpr std::size_t kInlineDecodeBytes = 256 * 1024;
  static constexpr std::size_t kMaxDecodes = 2;
  std::deque<std::unique_ptr<DecodeJob>> queued_;
  std::vector<std::unique_ptr<DecodeJob>> idle_jobs_;
  std::size_t decoding_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // expires with the source
  Counter* ack_timeouts_ = nullptr;
};

}  // namespace sluice::sources

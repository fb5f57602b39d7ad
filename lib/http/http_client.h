#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/core/clock.h"
#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/core/result.h"
#include "lib/core/status.h"

namespace sluice::http {

/// TLS settings of an HTTPS client. The minimum protocol is always TLS 1.2.
struct ClientTls {
  std::string ca_file;    // PEM bundle of trusted CAs; empty: the system's
  std::string ca_dir;     // hashed CA directory (c_rehash); empty: the system's
  std::string cert_file;  // client certificate (PEM), for mutual TLS
  std::string key_file;   // its private key (PEM)
  /// Verify the server's certificate chain and host name. Off only for tests and labs.
  bool verify = true;
  /// The lowest protocol accepted: "1.2" (default) or "1.3".
  std::string min_version = "1.2";
};

struct ClientOptions {
  /// TCP connect plus TLS handshake must finish within this.
  std::chrono::milliseconds connect_timeout{5'000};
  /// The whole request (connect, send, answer) must finish within this; a request may override.
  std::chrono::milliseconds request_timeout{5'000};
  /// Requests in flight at once (= connections, kept alive and reused); more wait in a queue, in
  /// submit order. A sink sets it to its group's max_in_flight.
  std::size_t max_in_flight = 4;
  /// Bytes of a response body kept (the rest is read and discarded; body_truncated says so).
  std::size_t max_response_body = 64 * 1024;
  ClientTls tls;
  /// "http://proxy:3128" (or https://, socks5://); empty: no proxy, and the http_proxy /
  /// https_proxy environment variables are ignored so that a sink's behaviour is its config.
  std::string proxy;
  /// Negotiate HTTP/2 over TLS (ALPN) when the server offers it; plain http stays HTTP/1.1.
  bool http2 = true;
  std::string user_agent = "sluice";
};

enum class Method : std::uint8_t { get, head, post, put };

struct ClientRequest {
  Method method = Method::post;
  std::string url;
  /// Sent as given ("Content-Type", "application/x-ndjson"). Content-Length is set by the client.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// Overrides ClientOptions::request_timeout when non-zero.
  std::chrono::milliseconds timeout{0};
};

struct ClientResponse {
  /// The HTTP status; 0 when no answer arrived (see error).
  int status = 0;
  /// Response headers of the final answer, names lower-cased.
  std::vector<std::pair<std::string, std::string>> headers;
  /// At most ClientOptions::max_response_body bytes of the body.
  std::string body;
  bool body_truncated = false;
  /// Transport outcome: 0 (CURLE_OK) when an answer arrived; else curl's code and message.
  int curl_code = 0;
  std::string error;
  bool timed_out = false;  // the request or connect timeout fired
  bool cancelled = false;  // cancel() or close() ended it
  /// From submit() to the answer (queueing included).
  Duration elapsed{0};
  /// Bytes of the request body sent (the body's size when the request completed).
  std::size_t bytes_sent = 0;

  /// The first header with this name (case-insensitive), or empty.
  std::string_view header(std::string_view name) const;
};

using RequestId = std::uint64_t;
/// Runs once per submitted request, on the loop thread, never from inside submit() or cancel().
using ResponseCallback = std::function<void(ClientResponse&& response)>;

/// An asynchronous HTTP client on the loop: libcurl's multi interface driven by uv_poll and one
/// uv_timer (curl_multi_socket_action), so nothing blocks the loop (DNS runs in curl's resolver
/// threads). Owned by one sink; everything runs on the loop thread.
///
/// Shutdown: close() (or the destructor) aborts every request, queued or in flight, and no
/// callback runs after it returns; the libuv handles are closed and freed by libuv later, so the
/// Client may be destroyed right after close(), even from inside one of its own callbacks.
class Client {
 public:
  static Result<std::unique_ptr<Client>> create(Loop& loop, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// Queues `request`; `done` runs once with its answer. After close() the request is not sent
  /// and `done` never runs (returns 0).
  RequestId submit(ClientRequest request, ResponseCallback done);
  /// Aborts one request: `done` runs later with cancelled = true (unless it already answered).
  void cancel(RequestId id);
  /// Aborts every request: each `done` runs later with cancelled = true.
  void cancel_all();
  /// Aborts everything and forgets every callback: none runs after this. Idempotent.
  void close();

  /// Requests submitted and not yet answered (queued + in flight).
  std::size_t pending() const noexcept;
  /// Requests handed to curl now (at most max_in_flight).
  std::size_t in_flight() const noexcept;
  /// Connections curl opened so far (to observe keep-alive reuse in tests).
  std::uint64_t connections_opened() const noexcept;
  const ClientOptions& options() const noexcept;

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// What a sink does with an answer.
enum class Verdict : std::uint8_t { ok, retry, reject };

struct Classification {
  Verdict verdict = Verdict::ok;
  /// For retry and reject: "HTTP 400 Bad Request: <body excerpt>" or "connect: Connection refused".
  std::string reason;
  /// From a Retry-After header (seconds or HTTP-date), if any; never negative.
  std::optional<Duration> retry_after;
};

/// 2xx: ok. 408, 429, 5xx, no answer (timeout, connection error, cancelled): retry. Other 4xx and
/// anything else (1xx, 3xx): reject with at most `max_body` bytes of the body (escaped for logs) in
/// the reason. `now_unix_s` is the wall clock for an HTTP-date Retry-After (0: read it now).
Classification classify(const ClientResponse& response, std::size_t max_body = 256,
                        std::int64_t now_unix_s = 0);

/// Retry-After: delta-seconds ("120") or an IMF-fixdate ("Wed, 21 Oct 2015 07:28:00 GMT", and
/// the obsolete RFC 850 and asctime forms); a date in the past gives zero. nullopt if malformed.
std::optional<Duration> parse_retry_after(std::string_view value, std::int64_t now_unix_s);

/// The series every HTTP sink exports (one family each; the sink's component/type labels tell them
/// apart): sluice_http_sink_requests_total{code="2xx|3xx|4xx|5xx|error|cancelled"},
/// sluice_http_sink_request_seconds (histogram), sluice_http_sink_bytes_total{stage="uncompressed|
/// compressed"}, sluice_http_sink_retries_total, sluice_http_sink_rejects_total and
/// sluice_http_sink_retry_after_total. Resolved once, in the sink's create(); no lookups later.
struct SinkMetrics {
  SinkMetrics(MetricsRegistry& metrics, const Labels& labels);
  /// Counts one answer by status class and observes its time (not for cancelled requests).
  void answered(const ClientResponse& response) noexcept;
  /// Counts one request body: its size before and after compression.
  void body(std::size_t uncompressed, std::size_t compressed) noexcept {
    bytes_uncompressed.inc(uncompressed);
    bytes_compressed.inc(compressed);
  }
  Counter& requests_2xx;
  Counter& requests_3xx;
  Counter& requests_4xx;
  Counter& requests_5xx;
  Counter& requests_error;      // no answer: connection error, timeout
  Counter& requests_cancelled;  // given up by the group (timeout, a retry before it) or at stop
  Histogram& request_seconds;
  Counter& bytes_uncompressed;
  Counter& bytes_compressed;
  Counter& retries;      // batches (or records) answered Retry
  Counter& rejects;      // batches (or records) rejected by the server
  Counter& retry_after;  // batches answered Retry at once while a Retry-After had not passed
};

/// Request body compression.
enum class Compression : std::uint8_t {
  none,
  gzip,     // RFC 1952, Content-Encoding: gzip
  zstd,     // RFC 8878 frame, Content-Encoding: zstd
  deflate,  // zlib stream (RFC 1950), as DataHub's "deflate"
};
/// The Content-Encoding value ("gzip", "zstd", "deflate"); empty for none.
std::string_view content_encoding(Compression c) noexcept;
/// Replaces `out` with `in` compressed as one complete stream (level 0: the codec's default).
/// For none, copies. Reuses `out`'s capacity.
Status compress(Compression c, std::string_view in, std::string& out, int level = 0);

/// Compression of one request body on the uv threadpool, so that a large batch does not stall the
/// loop. `done(status, compressed)` runs once, on the loop thread, unless abandon() was called
/// first (then it never runs; the job frees itself when the threadpool is done with it).
class CompressJob {
 public:
  using Done = std::function<void(Status status, std::string&& compressed)>;
  /// Starts compressing `in`; nullptr (and `done` never runs) if the threadpool refused it, with
  /// the reason in `error`.
  static CompressJob* start(Loop& loop, Compression c, int level, std::string in, Done done,
                            Status& error);
  /// The owner is going away or no longer wants the result: `done` will not run.
  void abandon() noexcept { done_ = nullptr; }

 private:
  CompressJob() = default;
  Compression c_ = Compression::none;
  int level_ = 0;
  std::string in_, out_;
  Status status_;
  Done done_;
  uv_work_t req_{};
};

/// The inverse, bounded by `max_out` bytes (tests, receivers); Errc::invalid_data if corrupt.
Status decompress(Compression c, std::string_view in, std::string& out,
                  std::size_t max_out = 64 << 20);

}  // namespace sluice::http

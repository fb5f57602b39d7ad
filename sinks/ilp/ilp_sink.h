#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/config/secret.h"
#include "lib/core/context.h"
#include "lib/core/log.h"
#include "lib/core/result.h"
#include "lib/core/sink.h"
#include "lib/http/http_client.h"
#include "lib/net/tcp_client.h"
#include "sinks/ilp/ilp_encoder.h"

namespace sluice::sinks {

struct IlpConfig {
  IlpMapping mapping;
  /// HTTP: the write endpoint with its query (`db` for InfluxDB); `precision` is added to it.
  std::string url;
  /// TCP (QuestDB's 9009): the stream options, `address` among them. Set when `address` is.
  std::optional<net::StreamSinkOptions> tcp;
  Secret username, password, auth_token;
  std::chrono::milliseconds request_timeout{5'000};  // delivery_timeout of the sink
  std::chrono::milliseconds connect_timeout{5'000};
  std::chrono::milliseconds flush_timeout{2'000};
  std::size_t max_in_flight = 4;
  /// The health probe's path on the url's server: both QuestDB and InfluxDB answer GET /ping.
  std::string probe_path = "/ping";
  /// A Retry-After of the server is honoured up to this long (deliveries answer Retry at once).
  std::chrono::milliseconds max_retry_after{30'000};
  http::ClientTls tls;
  static std::optional<IlpConfig> parse(const ConfigNode& node, ConfigErrors& errors);
  /// The url with `precision=` added when it has none.
  std::string write_url() const;
};

/// Row counters of an ILP sink (both transports).
struct IlpMetrics {
  explicit IlpMetrics(SinkContext& ctx);
  Counter& rows_written;
  Counter& rejected_value;      // a value that does not fit its forced type
  Counter& rejected_no_fields;  // none of the configured fields in the event
  Counter& rejected_server;     // the server refused the line (HTTP 400)
};

/// `type = "ilp"`: builds the HTTP or the TCP form from the configuration.
struct IlpSink {
  static Result<std::unique_ptr<Sink>> create(const IlpConfig& config, SinkContext& ctx);
};

/// ILP over HTTP (InfluxDB 1.x `/write`, QuestDB `/write`): one POST per batch. 2xx answers Ok.
/// A 400 never blocks: QuestDB names the bad line (nothing of the request was committed), which
/// is rejected and the rest sent again; InfluxDB writes the good lines and does not say which
/// failed, so the lines are sent again in halves (rewriting a point InfluxDB already holds is
/// idempotent: same series, same time) until each bad line stands alone and is rejected with the
/// server's reason. 408, 429, 5xx and transport errors answer Retry; 401, 403 and 404 (credentials,
/// database) answer Retry too, so that nothing is dropped for a configuration error.
class IlpHttpSink final : public Sink {
 public:
  IlpHttpSink(const IlpConfig& config, SinkContext& ctx, std::unique_ptr<http::Client> client);
  ~IlpHttpSink() override;
  void deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) override;
  void stop(StopCallback on_stopped) override;
  void cancel(DeliveryId id) override;
  /// GET probe_path: healthy on 2xx.
  bool probe(ProbeListener& listener) override;

 private:
  struct Job {
    const Batch* batch = nullptr;
    DeliveryId id;
    DeliveryListener* done = nullptr;
    std::string body;
    std::vector<std::uint32_t> line_event;   // event index of each line
    std::vector<std::uint32_t> line_offset;  // byte offset of each line, and the end
    std::vector<std::pair<std::uint32_t, std::uint32_t>> todo;  // line ranges still to send
    std::vector<std::uint32_t> rejected;
    std::string why;
    http::RequestId request = 0;
    bool in_request = false;
    bool cancelled = false;  // by the group or at stop: the answer is Retry
    bool finished = false;   // answered on the next turn with `result`
    DeliveryResult result;
  };
  void next(Job& job);
  void on_response(Job& job, http::ClientResponse&& r);
  void reject_line(Job& job, std::uint32_t line, const std::string& why);
  void finish(Job& job, DeliveryResult result);
  static void answer_task(void* self, std::uint64_t);
  void maybe_stopped();

  SinkContext& ctx_;
  IlpConfig config_;
  IlpEncoder encoder_;
  std::string url_, probe_url_;
  std::vector<std::pair<std::string, std::string>> headers_;
  ProbeListener* probe_ = nullptr;
  http::RequestId probe_request_ = 0;
  std::chrono::steady_clock::time_point retry_after_until_{};
  bool stopping_ = false;
  std::unique_ptr<http::Client> client_;
  std::list<Job> jobs_;
  std::vector<Job*> answers_;  // finished, answered on the next turn
  StopCallback on_stopped_;
  Timer stop_timer_;
  IlpMetrics metrics_;
  http::SinkMetrics http_metrics_;  // the series every HTTP sink has
  Counter& splits_;
  RateLimiter log_limit_;
};

/// ILP over TCP (QuestDB's port 9009): lines streamed on one connection. QuestDB sends no answer
/// at all, so Ok means the local kernel took the bytes; a line QuestDB cannot take makes it log,
/// drop that line and close the connection, and a crash of the server or the host can lose what
/// the kernel had buffered (see net::StreamSink). Prefer HTTP where loss matters.
class IlpTcpSink final : public net::StreamSink {
 public:
  IlpTcpSink(const IlpConfig& config, SinkContext& ctx);

 private:
  void encode(const Batch& batch, std::string& out, std::vector<std::uint32_t>& rejected,
              std::string& why) override;
  IlpEncoder encoder_;
  IlpMetrics metrics_;
  std::string reason_;
};

}  // namespace sluice::sinks

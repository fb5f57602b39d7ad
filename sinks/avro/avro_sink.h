#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/avro/codec.h"
#include "lib/codec/zstream.h"
#include "lib/config/config_node.h"
#include "lib/core/context.h"
#include "lib/core/log.h"
#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/core/result.h"
#include "lib/core/sink.h"
#include "lib/net/tcp_client.h"
#include "lib/net/tls.h"

namespace sluice::sinks {

struct AvroSinkConfig {
  std::string address;  // "host:port"
  bool deflate = false;
  bool zlib_outside_tls = false;  // TLS + deflate as Flume 1.10+ layers them (see the source)
  int compression_level = 6;
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(5);
  std::chrono::nanoseconds request_timeout = std::chrono::seconds(20);
  /// At stop, how long a request in flight may still take before it is dropped (answered Retry,
  /// so its batch stays in the channel): shutdown never waits a whole request_timeout.
  std::chrono::nanoseconds flush_timeout = std::chrono::seconds(5);
  tls::TlsConfig tls;
  static std::optional<AvroSinkConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// Flume's AvroSink on the wire: one connection (a net::TcpClient), handshake on its first request
/// (always with our protocol text, so Flume and sluice servers answer BOTH or CLIENT), one
/// appendBatch per batch, one request at a time. OK answers Ok; FAILED, an error, a timeout or a
/// lost connection answer Retry (and drop the connection, except after FAILED), so that a failover
/// group moves on. Deflate is layered as Flume does: inside TLS here (1.9), or outside it through
/// the client's wire codec (1.10, `layering = "zlib_outside"`).
class AvroSink final : public Sink, private net::TcpClientHandler {
 public:
  ~AvroSink() override;
  AvroSink(const AvroSinkConfig& config, SinkContext& ctx, std::shared_ptr<tls::TlsContext> tls);
  static Result<std::unique_ptr<AvroSink>> create(const AvroSinkConfig& config, SinkContext& ctx);

  void deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) override;
  void stop(StopCallback on_stopped) override;
  void cancel(DeliveryId id) override;
  bool probe(ProbeListener& listener) override;

 private:
  struct Job {
    const Batch* batch;
    DeliveryId id;
    DeliveryListener* done;
  };
  /// An answer (to a delivery, or to a probe) on its way through the loop.
  struct Later {
    Job job;
    DeliveryResult result;
    ProbeListener* probe = nullptr;
  };
  void on_connected() override;
  void on_written(std::uint64_t) override {}
  void on_disconnected(const Status& why) override;
  void on_data(std::string_view data) override;
  void pump();
  void send_front();
  void on_frame(std::int32_t serial, std::string_view payload);
  void finish_front(DeliveryResult result);
  void drop_connection(const std::string& why);
  void answer_later(Later later);
  static void later_task(void* self, std::uint64_t);
  void maybe_stopped();

  AvroSinkConfig config_;
  SinkContext& ctx_;
  Counter& connects_;
  Counter& failures_;
  Counter& tls_errors_;
  net::TcpClient client_;
  // Per connection, made anew by on_connected().
  bool handshaken_ = false;
  avro::FrameDecoder decoder_;
  std::unique_ptr<codec::Inflater> inflate_;  // zlib inside TLS (or without TLS)
  std::unique_ptr<codec::Deflater> deflate_;
  std::string inflated_;

  std::deque<Job> queue_;  // front is in flight once sent
  bool in_flight_ = false, handshake_in_request_ = false;
  std::int32_t serial_ = 0;
  Timer request_timer_, stop_timer_;
  ProbeListener* probe_ = nullptr;  // a probe waiting for the client's connect
  std::deque<Later> later_;         // answers handed to the loop, not yet given
  StopCallback on_stopped_;
  bool stopping_ = false;
  std::string scratch_, frame_, compressed_;
  RateLimiter log_limit_;
};

}  // namespace sluice::sinks

#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "lib/avro/codec.h"
#include "lib/codec/zstream.h"
#include "lib/config/config_node.h"
#include "lib/core/context.h"
#include "lib/core/log.h"
#include "lib/core/source.h"
#include "lib/core/source_metrics.h"
#include "lib/core/source_output.h"
#include "lib/core/stop_waiter.h"
#include "lib/ingest/request_putter.h"
#include "lib/net/address_filter.h"
#include "lib/net/tls.h"
#include "lib/parse/pipeline.h"

namespace sluice::sources {

struct AvroSourceConfig {
  std::string listen = "127.0.0.1:4141";
  bool deflate = false;  // Flume's compression-type = deflate
  /// With both TLS and deflate: Flume <= 1.9 puts TLS outside zlib ("tls_outside", default);
  /// Flume 1.10+ puts zlib outside TLS ("zlib_outside").
  bool zlib_outside_tls = false;
  avro::FrameLimits frame;
  /// Bytes of unfinished frames all connections together may hold; beyond it the connection whose
  /// read crossed it is closed (bounds memory whatever max_connections x max_frame_bytes is).
  ByteSize max_buffered_bytes{256ULL << 20};
  avro::CallLimits call;
  std::uint32_t max_connections = 1024;
  std::chrono::nanoseconds idle_timeout = std::chrono::minutes(5);
  std::vector<std::string> allow;  // client addresses or CIDR ranges; empty: everyone
  tls::TlsConfig tls;
  parse::PipelineConfig pipeline;
  static std::optional<AvroSourceConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// Flume's AvroSource on the wire (Netty framing, Avro handshake, append / appendBatch): answers
/// OK only once the events are safe in the channel (on_safe), FAILED at once when the channel is
/// full. Frames over the limits close the connection; undecodable calls get an Avro error.
class AvroSource final : public Source {
 public:
  AvroSource(const AvroSourceConfig& config, SourceContext& ctx,
             std::unique_ptr<parse::EventPipeline> pipeline, net::AddressFilter allow);
  ~AvroSource() override;
  static Result<std::unique_ptr<AvroSource>> create(const AvroSourceConfig& config,
                                                    SourceContext& ctx);

  Status start() override;
  void stop(StopCallback on_stopped) override;
  std::string bound_address() const override { return bound_; }

 private:
  struct Conn;
  void on_connection();
  void on_read(Conn& c, ssize_t n, const uv_buf_t* buf);
  void on_frame(Conn& c, std::int32_t serial, std::string_view payload);
  bool handshake(Conn& c, avro::Reader& r, std::string& prefix);
  bool compatible(std::string_view protocol_json);
  void put_request(Conn& c, std::int32_t serial, std::string prefix);
  void reply(std::uint64_t conn, std::int32_t serial, std::string_view prefix,
             std::optional<avro::CallStatus> status, std::string_view error = {});
  void close_conn(Conn& c, const char* why);
  void write_raw(Conn& c, std::string data);
  /// Bytes that passed TLS (or are plain frames without TLS) onto the wire, through the outer zlib
  /// layer when zlib_outside_tls.
  void send_wire(Conn& c, std::string data);
  void sweep_idle();
  static std::uint64_t next_id(void* self, std::uint64_t);

  AvroSourceConfig config_;
  SourceContext& ctx_;
  SourceOutput& output_;
  RequestPutter putter_;
  std::unique_ptr<parse::EventPipeline> pipeline_;
  net::AddressFilter allow_;
  std::shared_ptr<tls::TlsContext> tls_;
  uv_tcp_t* listener_ = nullptr;
  std::string bound_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Conn>> conns_;
  std::uint64_t next_conn_ = 0;
  std::set<avro::Md5> accepted_hashes_;
  Batch decoded_, parsed_;
  std::uint64_t id_base_ = 0, id_seq_ = 0;
  std::uint64_t buffered_ = 0;  // sum of the connections' unfinished frames
  std::vector<char> read_buf_;  // one for all connections: a read is consumed at once
  std::int64_t now_ns_ = 0;
  bool stopping_ = false;
  Timer idle_timer_;
  StopWaiter stop_waiter_;
  SourceMetrics metrics_;
  Gauge& connections_;
  Counter& refused_;
  Counter& requests_ok_;
  Counter& requests_failed_;
  Counter& call_errors_;
  Counter& frame_errors_;
  Counter& handshake_refused_;
  Counter& tls_errors_;
  RateLimiter log_limit_;
};

}  // namespace sluice::sources

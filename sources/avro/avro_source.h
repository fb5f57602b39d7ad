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
#include "lib/net/tcp_server.h"
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
  /// Unfinished frames plus unsent answers of all connections together. A read that leaves an
  /// unfinished frame while it is exceeded closes that connection (bounds memory whatever
  /// max_connections x max_frame_bytes is); connections with unsent answers stop being read.
  ByteSize max_buffered_bytes{256ULL << 20};
  avro::CallLimits call;
  std::uint32_t max_connections = 1024;
  /// Connections from one client IP; more are refused at once (so one host cannot take every slot).
  std::uint32_t max_connections_per_address = 256;
  std::chrono::nanoseconds idle_timeout = std::chrono::minutes(5);
  /// From the first byte of a frame to its last; longer than the 20 s Flume's clients wait for a
  /// whole call (request-timeout), so only a client that trickles a frame on purpose hits it (or
  /// one paused mid-frame by back-pressure because it does not read its answers).
  std::chrono::nanoseconds frame_timeout = std::chrono::seconds(30);
  /// From accept to the end of the TLS handshake (a few round trips).
  std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(10);
  std::vector<std::string> allow;  // client addresses or CIDR ranges; empty: everyone
  tls::TlsConfig tls;
  parse::PipelineConfig pipeline;
  static std::optional<AvroSourceConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// Flume's AvroSource on the wire (Netty framing, Avro handshake, append / appendBatch): answers
/// OK only once the events are safe in the channel (on_safe), FAILED at once when the channel is
/// full. Frames over the limits close the connection; undecodable calls get an Avro error. The
/// connections, their deadlines, back-pressure and closing are net::TcpServer's.
class AvroSource final : public Source, private net::ConnectionHandler {
 public:
  AvroSource(const AvroSourceConfig& config, SourceContext& ctx,
             std::unique_ptr<parse::EventPipeline> pipeline, net::AddressFilter allow);
  ~AvroSource() override;
  static Result<std::unique_ptr<AvroSource>> create(const AvroSourceConfig& config,
                                                    SourceContext& ctx);

  Status start() override;
  void stop(StopCallback on_stopped) override;
  std::string bound_address() const override { return server_.bound_address(); }

 private:
  struct Conn;
  struct DecodeJob;
  void on_open(net::Connection& nc) override;
  void on_data(net::Connection& nc, std::string_view data) override;
  void on_close(net::Connection& nc, net::CloseReason why) override;
  void on_frame(Conn& c, std::int32_t serial, avro::FrameBuffer& frame);
  bool handshake(Conn& c, avro::Reader& r, std::string& prefix);
  bool compatible(std::string_view protocol_json);
  void start_decode(Conn& c, std::int32_t serial, std::string prefix, avro::FrameBuffer frame,
                    std::size_t call_at);
  void run_decodes();
  void on_decoded(std::unique_ptr<DecodeJob> job);
  void free_off_loop(std::unique_ptr<DecodeJob> job);
  void run_held(Conn& c);
  void update_hold(Conn& c);
  void put_request(Conn& c, std::int32_t serial, std::string prefix, Batch& decoded,
                   bool through_pipeline = false);
  void answered(std::uint64_t conn, std::int32_t serial, std::string_view prefix, bool safe);
  void reply(Conn& c, std::int32_t serial, std::string_view prefix,
             std::optional<avro::CallStatus> status, std::string_view error = {});
  static net::ServerOptions server_options(const AvroSourceConfig& config, const std::string& name);
  static std::uint64_t next_id(void* self, std::uint64_t);

 public:
  // Calls larger than this are decoded on the uv threadpool, at most kMaxDecodes at a time.
  static constexpr std::size_t kInlineDecodeBytes = 256 * 1024;
  static constexpr std::size_t kMaxDecodes = 2;

 private:
  AvroSourceConfig config_;
  SourceContext& ctx_;
  RequestPutter putter_;
  std::unique_ptr<parse::EventPipeline> pipeline_;
  parse::PipelinePool pipelines_;  // copies of it for the calls decoded on the threadpool
  std::shared_ptr<tls::TlsContext> tls_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Conn>> conns_;
  std::set<avro::Md5> accepted_hashes_;
  Batch decoded_, parsed_;
  std::uint64_t id_base_ = 0, id_seq_ = 0;
  std::deque<std::unique_ptr<DecodeJob>> queued_;  // waiting for the threadpool, in order
  std::size_t decoding_ = 0;                       // on the threadpool (decoding or freeing)
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // expires with the source
  std::string frame_, compressed_;                         // reused for every answer
  std::int64_t now_ns_ = 0;
  bool stopping_ = false, closed_all_ = false;
  bool submitting_ = false, refusing_ = false;
  StopWaiter stop_waiter_;
  SourceMetrics metrics_;
  Counter& requests_ok_;
  Counter& requests_failed_;
  Counter& call_errors_;
  Counter& frame_errors_;
  Counter& handshake_refused_;
  RateLimiter log_limit_;
  net::TcpServer server_;  // last: destroyed first, so no connection outlives the state above
};

}  // namespace sluice::sources

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
#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/core/result.h"
#include "lib/core/sink.h"
#include "lib/http/http_client.h"
#include "sinks/datahub/datahub_protocol.h"
#include "sinks/datahub/datahub_records.h"

namespace sluice::sinks {

struct DataHubConfig {
  std::string endpoint;  // "http://host[:port][/prefix]", no trailing slash
  std::string project, topic, access_id;
  Secret access_key;
  Secret security_token;  // STS: sent as x-datahub-security-token; empty: none
  enum class RecordType : std::uint8_t { blob, tuple } record_type = RecordType::blob;
  std::vector<datahub::TupleField> fields;  // tuple: the topic's schema, in order
  enum class ShardKey : std::uint8_t {
    round_robin,
    field,
    header
  } shard_key = ShardKey::round_robin;
  std::string shard_key_name;
  http::Compression compression = http::Compression::none;
  int compression_level = 0;  // 0: zlib's default
  std::uint32_t max_records_per_request = 1000;
  ByteSize max_request_bytes{4ULL << 20};
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds request_timeout{4000};
  /// How long the sink itself resends the FailedRecords of a batch before it answers Retry (the
  /// records accepted so far are remembered and never sent again when the batch comes back).
  std::chrono::milliseconds record_retry_timeout{2000};
  std::chrono::milliseconds retry_backoff{100};  // first resend delay, doubling up to 1 s
  std::uint32_t max_in_flight = 4;               // HTTP requests (connections) at once
  std::uint32_t ledger_max_records = 100'000;
  std::string client_version = "1.1";
  http::ClientTls tls;
  std::string proxy;
  /// Pure: reads and checks keys (the secret's env variable or file is read here, so that
  /// `sluice check` reports a missing one); opens no connection.
  static std::optional<DataHubConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// DataHub's JSON PutRecords (../shared/PROTOCOLS.md §3). Each batch is one or more signed POSTs to
/// {endpoint}/projects/P/topics/T/shards; records go to the ACTIVE shards listed by GET …/shards,
/// round robin or by the MD5 of a shard key. Delivery semantics:
/// - Ok once DataHub accepted every record of the batch; Reject (with their indices) for records
///   it refused for good (MalformedRecord, a value with no text form of its tuple type).
/// - Only the FailedRecords of an answer are resent, by the sink itself, after a backoff
///   (InvalidShardOperation: after listing the shards again); a record accepted once is never in
///   a later request of the batch. When they still fail after record_retry_timeout, or a whole
///   request fails (no answer, 5xx, 429), the batch answers Retry and the ids of its accepted
///   records go to a ledger: when the group hands the batch back, those count as delivered at
///   once. So a record that DataHub accepted is sent once, unless the batch fails over to another
///   sink (or a request's outcome is unknown: timeout, reset), which is at-least-once.
/// - Unauthorized, NoPermission, NoSuch*: the sink halts (deliveries answer Retry at once, nothing
///   is dropped) until its probe (a signed GET …/shards) succeeds.
class DataHubSink final : public Sink {
 public:
  DataHubSink(const DataHubConfig& config, SinkContext& ctx, std::unique_ptr<http::Client> client);
  ~DataHubSink() override;
  static Result<std::unique_ptr<DataHubSink>> create(const DataHubConfig& config, SinkContext& ctx);

  void deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) override;
  void stop(StopCallback on_stopped) override;
  void cancel(DeliveryId id) override;
  bool probe(ProbeListener& listener) override;

  /// The signed headers of a request (tests): Content-Type, Date, x-datahub-*, Authorization.
  static std::vector<std::pair<std::string, std::string>> signed_headers(
      const DataHubConfig& config, std::string_view method, std::string_view path,
      std::string_view date, std::vector<std::pair<std::string, std::string>> extra);

 private:
  struct Delivery {
    const Batch* batch = nullptr;
    DeliveryId id;
    DeliveryListener* done = nullptr;
    datahub::DeliveryTracker tracker;
    std::size_t requests = 0;  // in flight
    bool started = false, cancelled = false, answer_retry = false, waiting_shards = false;
    bool answered = false;
    std::string retry_reason;
    bool failing = false;  // some FailedRecords wait for a resend
    TimePoint first_failure{};
    std::chrono::milliseconds backoff{0};
    std::unique_ptr<Timer> timer;
  };
  enum class Shards : std::uint8_t { unknown, loading, ready };

  void start(Delivery& d);
  void send(Delivery& d);
  void compress(Delivery& d, std::vector<std::uint32_t> sent, const std::string& body);
  void submit(Delivery& d, std::vector<std::uint32_t> sent, std::string body, std::size_t raw,
              bool compressed);
  void on_put(Delivery& d, const std::vector<std::uint32_t>& sent, http::ClientResponse&& r);
  void after_answer(Delivery& d);
  void load_shards();
  void on_shards(http::ClientResponse&& r);
  void finish(Delivery& d);
  void answer_retry_soon(Delivery& d, std::string reason);
  void release(Delivery& d);
  void check_stopped();
  void halt(const std::string& why);
  std::string_view route(const EventView& e);
  std::string path() const;
  static void deferred(void* self, std::uint64_t id);
  Delivery* find(std::uint64_t id);

  DataHubConfig config_;
  SinkContext& ctx_;
  std::unique_ptr<http::Client> client_;
  std::string url_, path_;
  std::list<Delivery> deliveries_;
  std::vector<http::CompressJob*> compressing_;  // on the threadpool
  datahub::AcceptedLedger ledger_;
  datahub::BodyWriter writer_;
  std::vector<datahub::Shard> shards_;
  Shards shard_state_ = Shards::unknown;
  std::size_t rr_ = 0;
  std::size_t fences_ = 0;  // cancelled deliveries still waiting for their requests
  bool halted_ = false, stopping_ = false, listed_once_ = false;
  std::string halt_reason_;
  ProbeListener* probe_ = nullptr;
  http::RequestId probe_request_ = 0;
  StopCallback on_stopped_;
  std::string key_scratch_, error_;
  RateLimiter log_limit_;

  http::SinkMetrics http_metrics_;  // the series every HTTP sink exports
  Counter& records_sent_;
  Counter& records_failed_;
  Counter& records_rejected_;
  Counter& records_skipped_;
  Counter& shard_reloads_;
  Counter& halts_;
  Gauge& ledger_size_;
};

}  // namespace sluice::sinks

#pragma once

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/context.h"
#include "lib/core/log.h"
#include "lib/core/result.h"
#include "lib/core/sink.h"

namespace sluice::sinks {

/// A string with {header.NAME} and {field.NAME} placeholders, rendered per event.
class EventTemplate {
 public:
  /// Parses `text`; on a malformed placeholder returns false and sets `error`.
  bool parse(std::string_view text, std::string& error);
  bool fixed() const noexcept {
    return parts_.size() <= 1 && (parts_.empty() || parts_[0].kind == Kind::text);
  }
  /// Appends the rendering for `e` to `out`; a missing header or field renders as nothing.
  void render(const EventView& e, std::string& out) const;
  const std::string& text() const noexcept { return text_; }

 private:
  enum class Kind : std::uint8_t { text, header, field };
  struct Part {
    Kind kind;
    std::string value;
  };
  std::vector<Part> parts_;
  std::string text_;
};

struct KafkaConfig {
  std::vector<std::string> brokers;
  EventTemplate topic;
  enum class KeyFrom : std::uint8_t { none, header, field } key_from = KeyFrom::none;
  std::string key_name;
  std::string compression = "zstd";
  std::string acks = "all";
  bool idempotence = true;
  std::chrono::nanoseconds linger = std::chrono::milliseconds(5);
  std::uint32_t batch_messages = 10'000;
  std::chrono::nanoseconds message_timeout = std::chrono::seconds(30);
  std::chrono::nanoseconds flush_timeout = std::chrono::seconds(5);
  std::string id_header = "sluice_id";  // empty: no id header
  /// Everything handed to librdkafka, in order: ours first, then [sinks.NAME.librdkafka].
  std::vector<std::pair<std::string, std::string>> properties;
  /// Pure: checks every property with librdkafka's own configuration parser, opens nothing.
  static std::optional<KafkaConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// Produces each event of a batch to Kafka and answers once every message of the batch has a
/// delivery report: Ok when all succeeded; Reject (with their indices) for permanent errors such as
/// a message too large; Retry as soon as one transient error is seen, or at once when librdkafka
/// reports that all brokers are down, so a failover group moves on; while they are down, new
/// batches answer Retry on the next loop turn until the probe (a metadata request) or a delivered
/// message shows the cluster is back. After a fatal producer error (the idempotent producer's
/// OUT_OF_ORDER_SEQUENCE_NUMBER, for one) every open batch answers Retry and the producer is
/// destroyed and built again on a later loop turn; meanwhile new batches answer Retry on the next
/// turn. librdkafka's own log lines go to sluice's logger. Its queue is served on the loop thread
/// through an fd that librdkafka signals, so delivery reports need no locking.
class KafkaSink final : public Sink {
 public:
  KafkaSink(const KafkaConfig& config, SinkContext& ctx, rd_kafka_t* rk, int pipe_r, int pipe_w);
  ~KafkaSink() override;
  static Result<std::unique_ptr<KafkaSink>> create(const KafkaConfig& config, SinkContext& ctx);

  void deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) override;
  void stop(StopCallback on_stopped) override;
  void cancel(DeliveryId id) override;
  bool probe(ProbeListener& listener) override;
  /// For tests: raises a fabricated fatal error `err` on the current producer, as librdkafka's
  /// idempotent producer does for a real one (rd_kafka_test_fatal_error). Loop thread.
  void raise_test_fatal_error(rd_kafka_resp_err_t err);

 private:
  struct Record;
  struct ProbeWork;
  struct MsgRef {
    Record* record;
    std::uint32_t index;
  };
  struct Record {
    DeliveryId id;
    DeliveryListener* done = nullptr;
    const Batch* batch = nullptr;
    std::uint32_t next = 0;         // next event to produce
    std::uint32_t outstanding = 0;  // produced, delivery report not yet seen
    bool answered = false;
    bool failed = false;
    bool blocked = false;  // waits for queue space
    std::string reason;
    std::vector<std::uint32_t> rejected;
    std::vector<MsgRef> refs;
  };

  void produce(Record& r);
  void maybe_finish(Record& r);
  void answer(Record& r, DeliveryResult result);
  void release(Record& r);
  void serve();
  void retry_blocked();
  void fail_all(std::string_view reason);
  void on_fatal();
  void restart();
  void attach();
  void retire(rd_kafka_t* rk);
  void check_stopped();
  /// A producer with `config`'s properties and the sink's callbacks, whose opaque is `opaque`.
  static Result<rd_kafka_t*> new_producer(const KafkaConfig& config, KafkaSink** opaque);
  static void restart_task(void* self, std::uint64_t);
  static void on_dr(rd_kafka_t* rk, const rd_kafka_message_t* m, void* opaque);
  static void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque);
  static void on_log(const rd_kafka_t* rk, int level, const char* fac, const char* buf);
  static void finish_task(void* self, std::uint64_t delivery);
  static bool permanent(rd_kafka_resp_err_t err);
  rd_kafka_topic_t* topic_for(const std::string& name);

  KafkaConfig config_;
  SinkContext& ctx_;
  std::unique_ptr<KafkaSink*> opaque_holder_;  // librdkafka's callback opaque: points at this sink
  rd_kafka_t* rk_;
  int pipe_r_, pipe_w_;
  uv_poll_t* poll_ = nullptr;
  Timer tick_;
  Timer stop_timer_;
  std::vector<std::unique_ptr<Record>> records_;  // live records; pooled in free_
  std::vector<std::unique_ptr<Record>> free_;
  std::map<std::string, rd_kafka_topic_t*, std::less<>> topics_;
  std::vector<rd_kafka_vu_t> vus_;
  std::string scratch_;  // NUL-terminated header names, topic and id of one message
  std::vector<std::size_t> name_offsets_;
  bool stopping_ = false, purged_ = false;
  ProbeWork* probe_ = nullptr;  // the metadata probe on the threadpool, freed by its completion
  /// librdkafka said every broker is down: deliveries answer Retry at once, without queueing,
  /// until a message is delivered or a probe finds the cluster again.
  bool down_ = false;
  /// The producer reported a fatal error: it refuses every message for good. Deliveries answer
  /// Retry at once until restart() replaced it (on the next loop turn, or on a later tick if
  /// librdkafka could not build a new one or a probe still uses the old one).
  bool fatal_ = false;
  StopCallback on_stopped_;
  TimePoint stop_deadline_{};
  RateLimiter error_log_;
  RateLimiter restart_log_;

  Counter& produced_;
  Counter& queue_full_;
  Counter& errors_;
  Counter& brokers_down_;
  Counter& restarts_;
};

}  // namespace sluice::sinks

#pragma once

#include <librdkafka/rdkafka.h>

struct rd_kafka_mock_cluster_s;

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sluice::test {

/// librdkafka's mock cluster (a real Kafka-protocol broker set inside this process), listening
/// on 127.0.0.1, for the sluice binary under test to produce to.
class KafkaMock {
 public:
  explicit KafkaMock(int brokers = 1);
  ~KafkaMock();
  KafkaMock(const KafkaMock&) = delete;
  KafkaMock& operator=(const KafkaMock&) = delete;

  std::string bootstraps() const;
  void create_topic(const std::string& topic, int partitions);
  /// Takes every broker down (connections dropped and refused) or brings them back.
  void set_down(bool down);
  /// Delays every broker's answers by `rtt` (0: none): requests stay in flight meanwhile.
  void set_rtt(std::chrono::milliseconds rtt);
  /// The next `errors.size()` Produce requests fail with these codes, in order.
  void push_produce_errors(const std::vector<rd_kafka_resp_err_t>& errors);

  struct Message {
    std::int32_t partition;
    std::int64_t offset;
    std::string key, value;
    std::int64_t timestamp_ms;
    std::map<std::string, std::string> headers;
  };
  /// Reads every message of `topic` (all partitions, from the beginning) with a real consumer
  /// until `count` arrived or `timeout` passed.
  std::vector<Message> consume(const std::string& topic, std::size_t count,
                               std::chrono::milliseconds timeout) const;

 private:
  int brokers_;
  rd_kafka_t* handle_;  // keeps the cluster alive
  ::rd_kafka_mock_cluster_s* cluster_;
  std::map<std::string, int> partitions_;
};

}  // namespace sluice::test

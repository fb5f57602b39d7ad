#include "tests/support/kafka_mock.h"

#include <librdkafka/rdkafka_mock.h>

#include <stdexcept>

#include "lib/core/assert.h"

namespace sluice::test {

KafkaMock::KafkaMock(int brokers) : brokers_(brokers) {
  char errstr[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
  handle_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  SLUICE_ASSERT(handle_ != nullptr);
  cluster_ = rd_kafka_mock_cluster_new(handle_, brokers);
  SLUICE_ASSERT(cluster_ != nullptr);
}

KafkaMock::~KafkaMock() {
  rd_kafka_mock_cluster_destroy(cluster_);
  rd_kafka_destroy(handle_);
}

std::string KafkaMock::bootstraps() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }

void KafkaMock::create_topic(const std::string& topic, int partitions) {
  SLUICE_ASSERT(rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, 1) ==
                RD_KAFKA_RESP_ERR_NO_ERROR);
  partitions_[topic] = partitions;
}

void KafkaMock::set_down(bool down) {
  if (down) {
    rd_kafka_mock_broker_set_down(cluster_, -1);
  } else {
    rd_kafka_mock_broker_set_up(cluster_, -1);
  }
}

void KafkaMock::set_rtt(std::chrono::milliseconds rtt) {
  // The mock has no "every broker" id here: its brokers are numbered from 1.
  for (int id = 1; id <= brokers_; ++id) {
    rd_kafka_mock_broker_set_rtt(cluster_, id, static_cast<int>(rtt.count()));
  }
}

void KafkaMock::push_produce_errors(const std::vector<rd_kafka_resp_err_t>& errors) {
  rd_kafka_mock_push_request_errors_array(cluster_, 0 /* Produce */, errors.size(), errors.data());
}

std::vector<KafkaMock::Message> KafkaMock::consume(const std::string& topic, std::size_t count,
                                                   std::chrono::milliseconds timeout) const {
  char errstr[256];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps().c_str(), errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "group.id", "sluice-test", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
  rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
  rd_kafka_t* c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  SLUICE_ASSERT(c != nullptr);
  auto it = partitions_.find(topic);
  const int parts = it == partitions_.end() ? 1 : it->second;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(parts);
  for (int p = 0; p < parts; ++p) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(c, list);
  rd_kafka_topic_partition_list_destroy(list);
  std::vector<Message> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(c, 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      Message msg;
      msg.partition = m->partition;
      msg.offset = m->offset;
      if (m->key != nullptr) msg.key.assign(static_cast<const char*>(m->key), m->key_len);
      if (m->payload != nullptr) msg.value.assign(static_cast<const char*>(m->payload), m->len);
      rd_kafka_timestamp_type_t tstype;
      msg.timestamp_ms = rd_kafka_message_timestamp(m, &tstype);
      rd_kafka_headers_t* hdrs = nullptr;
      if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* val;
        size_t size;
        for (size_t i = 0;
             rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             ++i) {
          msg.headers[name] = std::string(static_cast<const char*>(val), size);
        }
      }
      out.push_back(std::move(msg));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
  return out;
}

}  // namespace sluice::test

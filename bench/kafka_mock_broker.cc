// librdkafka's mock cluster in a process of its own, so that a benchmark measures the CPU and
// memory of the producer (the sluice binary, or the plain producer below) without the broker's.
//   sluice_kafka_mock broker PARTITIONS TOPIC
//     prints the bootstrap servers on a line, then answers each "count" line read on stdin with
//     the number of messages appended to TOPIC (the sum of its partitions' high watermarks: the
//     mock keeps only a few MB per partition, so reading every message back is not possible);
//     exits at the end of stdin.
//   sluice_kafka_mock produce BOOTSTRAPS TOPIC FILE
//     a plain librdkafka producer (the settings of the kafka sink's defaults and of
//     bench/kafka_bench.cc: zstd, idempotent, linger 5 ms) producing each line of FILE, read as
//     it goes, then flushing; exits 0 once every message has a successful delivery report.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

namespace {

void set(rd_kafka_conf_t* conf, const char* k, const char* v) {
  char err[256];
  if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
    std::fprintf(stderr, "%s: %s\n", k, err);
    std::exit(1);
  }
}

rd_kafka_t* client(rd_kafka_conf_t* conf) {
  char err[256];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) {
    std::fprintf(stderr, "rd_kafka_new: %s\n", err);
    std::exit(1);
  }
  return rk;
}

int broker(int partitions, const char* topic) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "log_level", "0");
  rd_kafka_t* keeper = client(conf);  // the mock cluster lives as long as this handle
  rd_kafka_mock_cluster_t* mc = rd_kafka_mock_cluster_new(keeper, 1);
  if (mc == nullptr || rd_kafka_mock_topic_create(mc, topic, partitions, 1) != 0) {
    std::fprintf(stderr, "cannot start the mock cluster\n");
    return 1;
  }
  const std::string bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
  std::printf("%s\n", bootstraps.c_str());
  std::fflush(stdout);

  rd_kafka_conf_t* qconf = rd_kafka_conf_new();
  set(qconf, "bootstrap.servers", bootstraps.c_str());
  set(qconf, "log_level", "0");
  rd_kafka_t* query = client(qconf);
  std::string cmd;
  while (std::getline(std::cin, cmd)) {
    if (cmd != "count") {
      std::printf("error: unknown command \"%s\"\n", cmd.c_str());
      std::fflush(stdout);
      continue;
    }
    long long total = 0;
    bool ok = true;
    for (int p = 0; p < partitions; ++p) {
      int64_t lo = 0, hi = 0;
      if (rd_kafka_query_watermark_offsets(query, topic, p, &lo, &hi, 10'000) !=
          RD_KAFKA_RESP_ERR_NO_ERROR) {
        ok = false;
        break;
      }
      total += hi;  // every message ever appended, including the segments the mock trimmed
    }
    if (ok) {
      std::printf("%lld\n", total);
    } else {
      std::printf("error: watermark query failed\n");
    }
    std::fflush(stdout);
  }
  rd_kafka_destroy(query);
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(keeper);
  return 0;
}

long failed = 0;

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) ++failed;
}

int produce(const char* bootstraps, const char* topic, const char* path) {
  std::FILE* in = std::fopen(path, "rb");
  if (in == nullptr) {
    std::fprintf(stderr, "%s: %s\n", path, std::strerror(errno));
    return 1;
  }
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", bootstraps);
  set(conf, "compression.codec", "zstd");
  set(conf, "enable.idempotence", "true");
  set(conf, "linger.ms", "5");
  set(conf, "log_level", "0");
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_t* rk = client(conf);
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic, nullptr);
  char* buf = nullptr;
  std::size_t cap = 0;
  long n = 0;
  for (ssize_t len; (len = getline(&buf, &cap, in)) > 0;) {
    if (buf[len - 1] == '\n') --len;
    while (rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt),
                             RD_KAFKA_V_VALUE(buf, static_cast<std::size_t>(len)),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 10);
    }
    if (++n % 1000 == 0) rd_kafka_poll(rk, 0);
  }
  std::free(buf);
  std::fclose(in);
  const rd_kafka_resp_err_t flushed = rd_kafka_flush(rk, 120'000);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  if (flushed != RD_KAFKA_RESP_ERR_NO_ERROR || failed != 0) {
    std::fprintf(stderr, "%ld of %ld messages failed (flush: %s)\n", failed, n,
                 rd_kafka_err2str(flushed));
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "broker") == 0) return broker(std::atoi(argv[2]), argv[3]);
  if (argc == 5 && std::strcmp(argv[1], "produce") == 0) return produce(argv[2], argv[3], argv[4]);
  std::fprintf(stderr,
               "usage: %s broker PARTITIONS TOPIC\n       %s produce BOOTSTRAPS TOPIC FILE\n",
               argv[0], argv[0]);
  return 2;
}

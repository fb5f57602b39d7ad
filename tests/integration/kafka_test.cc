#include <signal.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "tests/support/agent_process.h"
#include "tests/support/kafka_mock.h"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

AgentProcess::Options kafka_options(const KafkaMock& kafka, const std::string& command,
                                    const std::string& topic, const std::string& extra = "") {
  AgentProcess::Options o;
  o.vars = {{"BROKERS", kafka.bootstraps()},
            {"COMMAND", command},
            {"TOPIC", topic},
            {"KAFKA_EXTRA", extra}};
  return o;
}

std::vector<long> numbers(const std::vector<std::string>& lines) {
  std::vector<long> out;
  for (const auto& l : lines) out.push_back(std::stol(l));
  return out;
}

}  // namespace

TEST_CASE("kafka: 100k events arrive, all, each once, in order per partition",
          "[integration][kafka]") {
  KafkaMock kafka;
  kafka.create_topic("logs", 4);
  // Unkeyed messages: librdkafka's sticky partitioner keeps one partition for 10 ms, so a fast
  // run could fill fewer than 4 (it did once under load). Without it each message picks one at
  // random, and all 4 must then hold messages, each partition in order.
  AgentProcess agent(
      "exec_kafka.toml",
      kafka_options(kafka, R"(["seq", "1", "100000"])", "logs",
                    "[sinks.kafka.librdkafka]\n\"sticky.partitioning.linger.ms\" = 0\n"));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(60s, [&] {
    return agent.metric(
               R"(sluice_sink_events_total{component="kafka",type="kafka",outcome="ok"})") ==
           100000.0;
  }));
  const auto before = std::chrono::system_clock::now();
  const auto messages = kafka.consume("logs", 100000, 30s);
  REQUIRE(messages.size() == 100000);
  std::map<int, long> last;
  std::set<long> seen;
  std::set<int> partitions;
  for (const auto& m : messages) {
    const long v = std::stol(m.value);
    partitions.insert(m.partition);
    CHECK(v > last[m.partition]);  // in order within each partition
    last[m.partition] = v;
    seen.insert(v);
  }
  CHECK(seen.size() == 100000);  // the idempotent producer wrote each exactly once
  CHECK(*seen.begin() == 1);
  CHECK(*seen.rbegin() == 100000);
  CHECK(partitions.size() == 4);
  // The event id travels as a header; event time becomes the message timestamp.
  CHECK(messages[0].headers.count("sluice_id") == 1);
  CHECK(messages[0].headers.at("sluice_id").size() == 16);
  const auto ts =
      std::chrono::system_clock::time_point(std::chrono::milliseconds(messages[0].timestamp_ms));
  CHECK(ts <= before);
  CHECK(ts > before - 120s);
  CHECK(read_file(agent.path("backup.log")).empty());  // the backup was never needed
  CHECK(agent.terminate() == 0);
}

TEST_CASE("kafka: broker down fails over to the file sink, broker back fails back, nothing lost",
          "[integration][kafka]") {
  KafkaMock kafka;
  kafka.create_topic("logs", 1);
  // About 2,000 sequence-numbered lines a second, without end.
  AgentProcess agent(
      "exec_kafka.toml",
      kafka_options(
          kafka,
          R"(["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; [ $((i % 100)) -eq 0 ] && sleep 0.05; done"])",
          "logs"));
  REQUIRE(agent.wait_ready());
  const std::string active_kafka =
      R"(sluice_group_active_sink{component="up",type="failover",sink="kafka"})";
  REQUIRE(eventually(20s, [&] {
    return agent.metric(R"(sluice_sink_events_total{component="kafka",type="kafka",outcome="ok"})")
               .value_or(0) >= 1000;
  }));
  kafka.set_down(true);
  const auto down_at = std::chrono::steady_clock::now();
  REQUIRE(eventually(10s, [&] { return !read_lines(agent.path("backup.log")).empty(); }));
  const auto failover = std::chrono::steady_clock::now() - down_at;
  WARN("failover took " << std::chrono::duration_cast<std::chrono::milliseconds>(failover).count()
                        << " ms");
  CHECK(failover < 1s);  // "all brokers down" answers Retry at once, not at delivery_timeout
  CHECK(agent.metric(active_kafka) == 0.0);
  REQUIRE(eventually(10s, [&] { return read_lines(agent.path("backup.log")).size() >= 1000; }));
  kafka.set_down(false);
  REQUIRE(eventually(20s, [&] { return agent.metric(active_kafka) == 1.0; }));
  const double ok_before =
      agent.metric(R"(sluice_sink_events_total{component="kafka",type="kafka",outcome="ok"})")
          .value_or(0);
  REQUIRE(eventually(20s, [&] {
    return agent.metric(R"(sluice_sink_events_total{component="kafka",type="kafka",outcome="ok"})")
               .value_or(0) > ok_before + 1000;
  }));
  CHECK(
      agent.metric(R"(sluice_group_switches_total{component="up",type="failover"})").value_or(0) >=
      2);
  CHECK(agent.terminate() == 0);

  // Every number the source read reached Kafka or the file; repeats only from batches in flight
  // at a switch.
  std::vector<long> all = numbers(read_lines(agent.path("backup.log")));
  for (const auto& m : kafka.consume("logs", SIZE_MAX, 5s)) all.push_back(std::stol(m.value));
  std::sort(all.begin(), all.end());
  const std::size_t total = all.size();
  all.erase(std::unique(all.begin(), all.end()), all.end());
  WARN("delivered " << total << " messages, " << (total - all.size()) << " repeats, max "
                    << all.back());
  REQUIRE(!all.empty());
  CHECK(all.front() == 1);
  CHECK(static_cast<long>(all.size()) == all.back());  // 1..max with no gap
}

TEST_CASE("kafka: retriable produce errors are retried, permanent ones go to the dead letter",
          "[integration][kafka]") {
  KafkaMock kafka;
  kafka.create_topic("logs", 1);
  kafka.push_produce_errors({RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                             RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                             RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE});
  // A 5,000-byte line over message.max.bytes is refused by librdkafka itself: a real "too large".
  AgentProcess agent(
      "exec_kafka.toml",
      kafka_options(
          kafka,
          R"(["sh", "-c", "seq 1 500; head -c 5000 /dev/zero | tr '\\0' x; echo; seq 501 1000"])",
          "logs", "[sinks.kafka.librdkafka]\n\"message.max.bytes\" = 2000\n"));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(30s, [&] {
    return agent.metric(
               R"(sluice_channel_committed_events_total{component="buf",type="memory"})") == 1001.0;
  }));
  const auto dead = read_lines(agent.path("dead.log"));
  REQUIRE(!dead.empty());
  bool saw_big = false;
  for (const auto& d : dead) {
    CHECK(d.find(R"("sluice_rejected_by":"kafka")") != std::string::npos);
    CHECK(d.find(R"("sluice_reject_reason":")") != std::string::npos);
    if (d.find(std::string(100, 'x')) != std::string::npos) saw_big = true;
  }
  CHECK(saw_big);
  const auto messages = kafka.consume("logs", 1001 - dead.size(), 10s);
  CHECK(messages.size() + dead.size() == 1001);  // every event in Kafka or in the dead letter, once
  CHECK(agent.metric(R"(sluice_group_dead_letter_events_total{component="up",type="failover"})") ==
        static_cast<double>(dead.size()));
  CHECK(agent.terminate() == 0);
}

TEST_CASE("kafka: a full producer queue is waited out, not spun on or lost",
          "[integration][kafka]") {
  KafkaMock kafka;
  kafka.create_topic("logs", 2);
  AgentProcess agent(
      "exec_kafka.toml",
      kafka_options(kafka, R"(["seq", "1", "20000"])", "logs",
                    "[sinks.kafka.librdkafka]\n\"queue.buffering.max.messages\" = 50\n"));
  REQUIRE(agent.wait_ready());
  REQUIRE(eventually(30s, [&] {
    return agent.metric(
               R"(sluice_sink_events_total{component="kafka",type="kafka",outcome="ok"})") ==
           20000.0;
  }));
  CHECK(
      agent.metric(R"(sluice_kafka_queue_full_total{component="kafka",type="kafka"})").value_or(0) >
      0);
  CHECK(agent.metric(
            R"(sluice_sink_events_total{component="kafka",type="kafka",outcome="retry"})") == 0.0);
  const auto messages = kafka.consume("logs", 20000, 20s);
  std::set<long> seen;
  for (const auto& m : messages) seen.insert(std::stol(m.value));
  CHECK(messages.size() == 20000);
  CHECK(seen.size() == 20000);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("kafka: SIGKILL during delivery with the lmdb channel loses nothing",
          "[integration][kafka][lmdb]") {
  KafkaMock kafka;
  kafka.create_topic("logs", 2);
  TempDir tmp;
  const std::string logs = tmp.file("logs"), state = tmp.file("state");
  std::filesystem::create_directories(logs);
  std::filesystem::create_directories(state);
  const long n = 50000;
  append_numbers(logs + "/app.log", 1, n);
  AgentProcess::Options o;
  o.vars = {{"PATHS", "[\"" + logs + "/*.log\"]"}, {"BROKERS", kafka.bootstraps()}};
  o.dir = state;
  std::mt19937 rng(std::random_device{}());
  const int kills = soak() ? 20 : 3;
  for (int k = 0; k < kills; ++k) {
    AgentProcess agent("taildir_lmdb_kafka.toml", o);
    REQUIRE(agent.wait_ready());
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(20, 300)(rng)));
    CHECK(agent.signal_and_wait(SIGKILL) == -SIGKILL);
  }
  AgentProcess agent("taildir_lmdb_kafka.toml", o);
  REQUIRE(agent.wait_ready());
  // No lag counts only once the first scan found the file (before it, the lag reads 0 too).
  REQUIRE(eventually(60s, [&] {
    return agent.metric(R"(sluice_taildir_files{component="tail",type="taildir",group="default"})")
                   .value_or(0) >= 1.0 &&
           agent.metric(
               R"(sluice_taildir_lag_bytes{component="tail",type="taildir",group="default"})") ==
               0.0 &&
           agent.metric(R"(sluice_channel_events{component="durable",type="lmdb"})") == 0.0;
  }));
  CHECK(agent.terminate() == 0);
  std::set<long> got;
  std::size_t total = 0;
  for (const auto& m : kafka.consume("logs", SIZE_MAX, 10s)) {
    got.insert(std::stol(m.value));
    ++total;
  }
  WARN(kills << " kills during delivery: " << total << " messages in Kafka for " << n << " lines, "
             << total - got.size() << " repeats (batches in flight at a kill)");
  CHECK(got.size() == static_cast<std::size_t>(n));
  CHECK(*got.begin() == 1);
  CHECK(*got.rbegin() == n);
}

namespace {

struct KafkaFailoverRig {
  KafkaMock kafka;
  TempDir tmp;
  std::string logs = tmp.file("logs"), backup = tmp.file("backup.out");
  std::unique_ptr<AgentProcess> agent;
  long written = 0;

  explicit KafkaFailoverRig(const std::string& channel = "memory") {
    kafka.create_topic("logs", 1);
    std::filesystem::create_directories(logs);
    AgentProcess::Options o;
    o.vars = {{"PATHS", "[\"" + logs + "/*.log\"]"},
              {"BROKERS", kafka.bootstraps()},
              {"CHANNEL", channel},
              {"BACKUP", backup}};
    agent = std::make_unique<AgentProcess>("taildir_kafka_failover.toml", o);
  }
  void write(long n) {
    append_numbers(logs + "/app.log", written + 1, written + n);
    written += n;
  }
  double kafka_ok() {
    return agent->metric(R"(sluice_sink_events_total{component="kafka",type="kafka",outcome="ok"})")
        .value_or(0);
  }
  bool all_committed() {
    return eventually(20s, [&] {
      return agent->metric(
                 R"(sluice_channel_committed_events_total{component="buf",type="memory"})") ==
             static_cast<double>(written);
    });
  }
  // Every line written reached Kafka or the backup.
  void check_nothing_lost() {
    std::set<long> all;
    for (const auto& l : read_lines(backup)) all.insert(std::stol(l));
    for (const auto& m : kafka.consume("logs", SIZE_MAX, 3s)) all.insert(std::stol(m.value));
    CHECK(all.size() == static_cast<std::size_t>(written));
    if (!all.empty()) {
      CHECK(*all.begin() == 1);
      CHECK(*all.rbegin() == written);
    }
  }
};

long ms_since(std::chrono::steady_clock::time_point t0) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count());
}

}  // namespace

// Hardening item 5: librdkafka says "all brokers are down" once; a batch delivered after that was
// queued by librdkafka and the group failed over only at delivery_timeout (5.1 s).
TEST_CASE("kafka: a failover group switches within 1 s of an outage that began between batches",
          "[integration][kafka][group]") {
  KafkaFailoverRig r;
  REQUIRE(r.agent->wait_ready());
  r.write(100);
  REQUIRE(eventually(20s, [&] { return r.kafka_ok() == 100.0; }));
  r.kafka.set_down(true);
  const auto down_at = std::chrono::steady_clock::now();
  REQUIRE(eventually(10s, [&] {
    return r.agent->metric(R"(sluice_kafka_all_brokers_down_total{component="kafka",type="kafka"})")
               .value_or(0) >= 1;
  }));
  WARN("librdkafka reported all brokers down after " << ms_since(down_at) << " ms");
  const auto t0 = std::chrono::steady_clock::now();
  r.write(100);
  REQUIRE(eventually(15s, [&] { return count_lines(r.backup) >= 100; }));
  const long switched = ms_since(t0);
  WARN("a batch written after the outage reached the backup in " << switched << " ms");
  CHECK(switched < 1000);
  // The probe decides when Kafka is back; then traffic returns to it.
  r.kafka.set_down(false);
  const std::string active =
      R"(sluice_group_active_sink{component="up",type="failover",sink="kafka"})";
  const double ok_before = r.kafka_ok();
  REQUIRE(eventually(30s, [&] {
    r.write(1);
    return r.kafka_ok() > ok_before && r.agent->metric(active) == 1.0;
  }));
  CHECK(r.all_committed());
  CHECK(r.agent->terminate() == 0);
  r.check_nothing_lost();
  // librdkafka's own lines ("%3|...|FAIL|...") come through sluice's logger, not raw.
  const std::string err = r.agent->stderr_text();
  CHECK(err.find("librdkafka rdkafka#producer-") != std::string::npos);
  for (const auto& line : read_lines(r.agent->path("stderr"))) {
    if (line.rfind("%", 0) == 0) {
      FAIL_CHECK("a raw librdkafka line: " << line);
      break;
    }
  }
}

TEST_CASE("kafka: a failover group switches within 1 s of an outage that hits a batch in flight",
          "[integration][kafka][group]") {
  KafkaFailoverRig r;
  REQUIRE(r.agent->wait_ready());
  r.write(100);
  REQUIRE(eventually(20s, [&] { return r.kafka_ok() == 100.0; }));
  // Lines keep coming while the brokers go down.
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    while (writing) {
      r.write(20);
      std::this_thread::sleep_for(10ms);
    }
  });
  r.kafka.set_down(true);
  const auto down_at = std::chrono::steady_clock::now();
  const bool switched = eventually(15s, [&] { return count_lines(r.backup) > 0; });
  const long took = ms_since(down_at);
  writing = false;
  writer.join();
  REQUIRE(switched);
  WARN("the first line reached the backup " << took << " ms after the outage began");
  CHECK(took < 1000);
  CHECK(r.all_committed());
  CHECK(r.agent->terminate() == 0);
  r.kafka.set_down(false);
  r.check_nothing_lost();
}

// Shutdown with deliveries in flight to a broker that does not answer: the lmdb channel keeps
// them, and the agent exits 0 within delivery_timeout (5 s), not message_timeout (30 s).
TEST_CASE("kafka: SIGTERM while deliveries wait for a silent broker exits 0, lmdb keeps them",
          "[integration][kafka][lmdb]") {
  KafkaFailoverRig r("lmdb");
  REQUIRE(r.agent->wait_ready());
  r.write(100);
  REQUIRE(eventually(20s, [&] { return r.kafka_ok() == 100.0; }));
  r.kafka.set_rtt(60s);
  r.write(100);
  REQUIRE(eventually(10s, [&] {
    return r.agent
               ->metric(R"(sluice_kafka_produced_messages_total{component="kafka",type="kafka"})")
               .value_or(0) >= 200;
  }));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(r.agent->terminate() == 0);
  const long took = ms_since(t0);
  WARN("SIGTERM to exit with deliveries waiting for Kafka: " << took << " ms");
  CHECK(took < 8000);
  CHECK(count_lines(r.backup) == 0);  // the batch stays in the channel, not failed over
}

// The broker stops while deliveries wait for it: "all brokers are down" answers them at once, so
// SIGTERM does not wait for delivery_timeout, and the lmdb channel keeps what was not delivered.
TEST_CASE("kafka: SIGTERM after the broker stopped under deliveries in flight exits 0 at once",
          "[integration][kafka][lmdb]") {
  KafkaFailoverRig r("lmdb");
  REQUIRE(r.agent->wait_ready());
  r.write(100);
  REQUIRE(eventually(20s, [&] { return r.kafka_ok() == 100.0; }));
  r.kafka.set_rtt(60s);
  r.write(100);
  REQUIRE(eventually(10s, [&] {
    return r.agent
               ->metric(R"(sluice_kafka_produced_messages_total{component="kafka",type="kafka"})")
               .value_or(0) >= 200;
  }));
  r.kafka.set_down(true);
  REQUIRE(eventually(10s, [&] {
    return r.agent->metric(R"(sluice_kafka_all_brokers_down_total{component="kafka",type="kafka"})")
               .value_or(0) >= 1;
  }));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(r.agent->terminate() == 0);
  const long took = ms_since(t0);
  WARN("SIGTERM to exit after the broker stopped under deliveries: " << took << " ms");
  CHECK(took < 2000);
}

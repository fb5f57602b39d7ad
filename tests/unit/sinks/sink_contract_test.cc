// The rules of lib/core/sink.h, checked for every sink that can run against a local peer: each
// deliver() is answered exactly once, on the loop thread, never from inside deliver(), and stop()
// completes with deliveries in flight, after every one of them was answered.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "sinks/avro/avro_sink.h"
#include "sinks/datahub/datahub_sink.h"
#include "sinks/file/file_sink.h"
#include "sinks/http/http_sink.h"
#include "sinks/ilp/ilp_sink.h"
#include "sinks/kafka/kafka_sink.h"
#include "sinks/null/null_sink.h"
#include "sinks/stdout/stdout_sink.h"
#include "sinks/tcp/tcp_sink.h"
#include "tests/support/datahub_peer.h"
#include "tests/support/fault_peers.h"
#include "tests/support/http_peer.h"
#include "tests/support/kafka_mock.h"
#include "tests/support/test_support.h"
#include "tests/unit/lib/net/tcp_client_peer.h"

using namespace sluice;
using namespace sluice::sinks;
using test::Blackhole;
using test::SilentServer;
using namespace std::chrono_literals;

namespace {

struct FileFixture {
  static constexpr bool answers_ok = true;
  test::TempDir dir;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    FileConfig c;
    c.path = dir.file("out.log");
    auto s = FileSink::create(c, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
};

struct NullFixture {
  static constexpr bool answers_ok = true;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    return std::make_unique<NullSink>(NullConfig{}, ctx);
  }
};

// The agent's standard output, pointed at a file for the fixture's life (and restored after).
struct StdoutFixture {
  static constexpr bool answers_ok = true;
  test::TempDir dir;
  int saved = -1;
  StdoutFixture() {
    std::fflush(stdout);
    saved = ::dup(1);
    const int fd = ::open(dir.file("stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    REQUIRE(fd >= 0);
    ::dup2(fd, 1);
    ::close(fd);
  }
  ~StdoutFixture() {
    std::fflush(stdout);
    ::dup2(saved, 1);
    ::close(saved);
  }
  StdoutFixture(const StdoutFixture&) = delete;
  StdoutFixture& operator=(const StdoutFixture&) = delete;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    auto s = StdoutSink::create(StdoutConfig{}, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
};

struct KafkaFixture {
  static constexpr bool answers_ok = true;
  test::KafkaMock kafka;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    kafka.create_topic("logs", 1);
    KafkaConfig c;
    c.brokers = {kafka.bootstraps()};
    std::string err;
    REQUIRE(c.topic.parse("logs", err));
    c.properties = {{"bootstrap.servers", kafka.bootstraps()},
                    {"linger.ms", "5"},
                    {"log_level", "3"},
                    {"enable.idempotence", "true"},
                    {"acks", "all"}};
    auto s = KafkaSink::create(c, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
};

// Nothing listens on the port: every batch answers Retry, which is an answer like any other.
struct AvroRefusedFixture {
  static constexpr bool answers_ok = false;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    AvroSinkConfig c;
    c.address = "127.0.0.1:1";
    c.connect_timeout = 2s;
    auto s = AvroSink::create(c, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
};

// A server that never answers: stop() gives the request flush_timeout, then it answers Retry.
struct AvroSilentFixture {
  static constexpr bool answers_ok = false;
  SilentServer server;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    AvroSinkConfig c;
    c.address = server.address();
    c.request_timeout = 60s;
    c.flush_timeout = 200ms;
    auto s = AvroSink::create(c, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
};

// Connects hang: a probe stays in flight until connect_timeout.
struct AvroBlackholeFixture {
  Blackhole hole;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    AvroSinkConfig c;
    c.address = hole.address();
    c.connect_timeout = 10s;
    auto s = AvroSink::create(c, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
  void prepare() {}
};

// Every broker down: the metadata probe waits for its 2 s timeout.
struct KafkaDownFixture : KafkaFixture {
  void prepare() { kafka.set_down(true); }
};

std::unique_ptr<Sink> make_http(SinkContext& ctx, HttpSinkConfig c) {
  auto s = HttpSink::create(c, ctx);
  REQUIRE(s);
  return std::move(*s);
}

struct HttpFixture {
  static constexpr bool answers_ok = true;
  test::HttpPeer peer;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    HttpSinkConfig c;
    c.url = peer.url();
    return make_http(ctx, c);
  }
};

// Compression runs on the threadpool: the answer still comes on the loop thread.
struct HttpZstdFixture : HttpFixture {
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    HttpSinkConfig c;
    c.url = peer.url();
    c.compression = http::Compression::zstd;
    return make_http(ctx, c);
  }
};

struct HttpRefusedFixture {
  static constexpr bool answers_ok = false;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    HttpSinkConfig c;
    c.url = "http://127.0.0.1:1/in";
    return make_http(ctx, c);
  }
};

// A server that never answers: stop() gives the requests flush_timeout, then they answer Retry.
struct HttpSilentFixture {
  static constexpr bool answers_ok = false;
  SilentServer server;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    HttpSinkConfig c;
    c.url = "http://" + server.address() + "/in";
    c.request_timeout = 60s;
    c.flush_timeout = 200ms;
    c.compression = http::Compression::gzip;
    return make_http(ctx, c);
  }
};

// Connects hang: a probe stays in flight until connect_timeout.
struct HttpBlackholeFixture {
  Blackhole hole;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    HttpSinkConfig c;
    c.url = "http://" + hole.address() + "/in";
    c.connect_timeout = 10s;
    c.request_timeout = 20s;
    return make_http(ctx, c);
  }
  void prepare() {}
};

DataHubConfig datahub_config(const std::string& endpoint) {
  DataHubConfig c;
  c.endpoint = endpoint;
  c.project = "weblogs";
  c.topic = "events";
  c.access_id = "test-id";
  c.access_key = Secret("test-key", "inline");
  return c;
}

// The local DataHub of tests/support/datahub_peer.py: every batch is accepted.
struct DataHubFixture {
  static constexpr bool answers_ok = true;
  test::DataHubPeer peer;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    auto s = DataHubSink::create(datahub_config(peer.endpoint()), ctx);
    REQUIRE(s);
    return std::move(*s);
  }
};

// Bodies compressed on the threadpool: stop() waits for those jobs too.
struct DataHubDeflateFixture : DataHubFixture {
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    DataHubConfig c = datahub_config(peer.endpoint());
    c.compression = http::Compression::deflate;
    auto s = DataHubSink::create(c, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
};

// A server that never answers: the shard listing times out and the batches answer Retry.
struct DataHubSilentFixture {
  static constexpr bool answers_ok = false;
  SilentServer server;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    DataHubConfig c = datahub_config("http://" + server.address());
    c.request_timeout = 500ms;
    auto s = DataHubSink::create(c, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
};

// Connects hang: the probe (a shard listing) stays in flight until stop() cancels it.
struct DataHubBlackholeFixture {
  Blackhole hole;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    DataHubConfig c = datahub_config("http://" + hole.address());
    c.connect_timeout = 10s;
    c.request_timeout = 20s;
    auto s = DataHubSink::create(c, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
  void prepare() {}
};

TcpSinkConfig tcp_config(const std::string& address) {
  TcpSinkConfig c;
  c.stream.client.address = address;
  c.stream.client.connect_timeout = 10s;
  c.stream.flush_timeout = 200ms;
  return c;
}

struct TcpFixture {
  static constexpr bool answers_ok = true;
  test::LinePeer peer;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    return std::make_unique<TcpSink>(tcp_config(peer.address()), ctx);
  }
};

struct TcpRefusedFixture {
  static constexpr bool answers_ok = false;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    return std::make_unique<TcpSink>(tcp_config("127.0.0.1:1"), ctx);
  }
};

// A peer that never reads: batches far larger than the socket buffers stay in flight; stop()
// gives them flush_timeout, then they answer Retry.
struct TcpSilentFixture {
  static constexpr bool answers_ok = false;
  test::LinePeer peer{test::LinePeer::Mode::never_read, 0, 4096};
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    auto c = tcp_config(peer.address());
    c.stream.client.write_timeout = 60s;
    return std::make_unique<TcpSink>(c, ctx);
  }
};

struct TcpBlackholeFixture {
  Blackhole hole;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    return std::make_unique<TcpSink>(tcp_config(hole.address()), ctx);
  }
  void prepare() {}
};

// ILP over HTTP to a server that refuses connections: Retry, answered like any other.
struct IlpHttpRefusedFixture {
  static constexpr bool answers_ok = false;
  static Batch batch(std::size_t i) {
    Batch b;
    for (int k = 0; k < 5; ++k) {
      b.add("e", 1, i * 5 + k);
      b.add_field("v", "1", FieldType::integer);
    }
    return b;
  }
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    IlpConfig c;
    c.url = "http://127.0.0.1:1/write";
    c.mapping.table = "t";
    c.mapping.fields = {{"v", IlpType::auto_type}};
    c.flush_timeout = 200ms;
    auto s = IlpSink::create(c, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
};

// ILP over HTTP to a server that accepts and never answers: stop() gives flush_timeout.
struct IlpHttpSilentFixture : IlpHttpRefusedFixture {
  SilentServer server;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    IlpConfig c;
    c.url = "http://" + server.address() + "/write";
    c.mapping.table = "t";
    c.mapping.fields = {{"v", IlpType::auto_type}};
    c.request_timeout = 60s;
    c.flush_timeout = 200ms;
    auto s = IlpSink::create(c, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
};

// ILP over HTTP: the /ping probe's connect hangs until connect_timeout.
struct IlpHttpBlackholeFixture {
  Blackhole hole;
  std::unique_ptr<Sink> make(SinkContext& ctx) {
    IlpConfig c;
    c.url = "http://" + hole.address() + "/write";
    c.mapping.table = "t";
    c.mapping.fields = {{"v", IlpType::auto_type}};
    c.connect_timeout = 10s;
    auto s = IlpSink::create(c, ctx);
    REQUIRE(s);
    return std::move(*s);
  }
  void prepare() {}
};

struct Probes final : ProbeListener {
  int calls = 0;
  bool healthy = true;
  void on_probed(Sink&, bool h) noexcept override {
    ++calls;
    healthy = h;
  }
};

struct Answers final : DeliveryListener {
  std::map<std::uint64_t, int> count;
  std::map<std::uint64_t, Outcome> outcome;
  bool inside_deliver = false;
  int answered_inside = 0, answered_off_thread = 0;
  std::thread::id loop_thread = std::this_thread::get_id();
  void on_delivered(DeliveryId id, const DeliveryResult& r) noexcept override {
    ++count[id.value];
    outcome[id.value] = r.outcome;
    if (inside_deliver) ++answered_inside;
    if (std::this_thread::get_id() != loop_thread) ++answered_off_thread;
  }
  std::size_t answered() const { return count.size(); }
};

template <class F>
struct Rig {
  Loop loop;
  MetricsRegistry metrics;
  F fixture;
  SinkContext ctx{loop, metrics, "s", "contract", "/tmp"};
  std::unique_ptr<Sink> sink = fixture.make(ctx);
  std::deque<Batch> batches;  // each stays valid until its answer
  Answers answers;

  void deliver(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      if constexpr (requires { fixture.batch(i); }) {
        batches.push_back(fixture.batch(i));  // a sink that needs parsed fields
      } else {
        batches.push_back(test::make_batch(5, "e", i * 5));
      }
      answers.inside_deliver = true;
      sink->deliver(batches.back(), DeliveryId{batches.size()}, answers);
      answers.inside_deliver = false;
    }
  }
  bool stop() {
    bool stopped = false;
    std::size_t answered_at_stop = 0;
    sink->stop([&] {
      stopped = true;
      answered_at_stop = answers.answered();
    });
    const bool ok = test::run_until(loop, 15s, [&] { return stopped; });
    CHECK(answered_at_stop == batches.size());  // on_stopped comes after every answer
    return ok;
  }
};

}  // namespace

TEMPLATE_TEST_CASE("sink contract: every deliver is answered once, on the loop, never inline",
                   "[unit][sinks][contract]", FileFixture, NullFixture, StdoutFixture, KafkaFixture,
                   AvroRefusedFixture, HttpFixture, HttpZstdFixture, HttpRefusedFixture,
                   DataHubFixture, DataHubDeflateFixture, TcpFixture, TcpRefusedFixture,
                   IlpHttpRefusedFixture) {
  {
    Rig<TestType> r;
    r.deliver(6);
    REQUIRE(test::run_until(r.loop, 15s, [&] { return r.answers.answered() == 6; }));
    REQUIRE(r.stop());
    for (std::uint64_t id = 1; id <= 6; ++id) {
      CHECK(r.answers.count[id] == 1);
      if (TestType::answers_ok) CHECK(r.answers.outcome[id] == Outcome::ok);
    }
    CHECK(r.answers.answered() == 6);  // no answer for an id that was never delivered
    CHECK(r.answers.answered_inside == 0);
    CHECK(r.answers.answered_off_thread == 0);
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
}

TEMPLATE_TEST_CASE("sink contract: stop with deliveries in flight completes after their answers",
                   "[unit][sinks][contract]", FileFixture, NullFixture, StdoutFixture, KafkaFixture,
                   AvroRefusedFixture, AvroSilentFixture, HttpFixture, HttpZstdFixture,
                   HttpRefusedFixture, HttpSilentFixture, DataHubFixture, DataHubDeflateFixture,
                   DataHubSilentFixture, TcpFixture, TcpRefusedFixture, TcpSilentFixture,
                   IlpHttpRefusedFixture, IlpHttpSilentFixture) {
  {
    Rig<TestType> r;
    r.deliver(4);
    REQUIRE(r.stop());  // nothing ran the loop in between: all four are in flight
    for (std::uint64_t id = 1; id <= 4; ++id) CHECK(r.answers.count[id] == 1);
    CHECK(r.answers.answered_inside == 0);
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
}

// An OUT_OF_ORDER_SEQUENCE_NUMBER from the broker is a fatal error for the idempotent producer:
// librdkafka refuses every later produce. The batch answers Retry, never from inside deliver(),
// and the sink recreates its producer, so that later batches are delivered again (they used to
// answer Retry until the agent was restarted).
TEST_CASE("kafka sink: a fatal error from the broker answers Retry and the producer recovers",
          "[unit][sinks][contract][kafka]") {
  {
    Rig<KafkaFixture> r;
    r.fixture.kafka.push_produce_errors({RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER});
    r.deliver(1);
    REQUIRE(test::run_until(r.loop, 15s, [&] { return r.answers.answered() == 1; }));
    CHECK(r.answers.outcome[1] == Outcome::retry);
    double restarts = 0;
    REQUIRE(test::run_until(r.loop, 10s, [&] {
      r.metrics.find("sluice_kafka_producer_restarts_total", r.ctx.labels(), restarts);
      return restarts >= 1;
    }));
    r.deliver(3);
    REQUIRE(test::run_until(r.loop, 15s, [&] { return r.answers.answered() == 4; }));
    for (std::uint64_t id = 1; id <= 4; ++id) CHECK(r.answers.count[id] == 1);
    for (std::uint64_t id = 2; id <= 4; ++id) CHECK(r.answers.outcome[id] == Outcome::ok);
    CHECK(r.answers.answered_inside == 0);
    REQUIRE(r.stop());
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
}

// A fatal error while batches are in flight: those answer Retry (not Ok, not Reject), a batch
// produced right after it (refused at once by the fatal producer) too, and once the producer is
// recreated the redelivered batches and new ones reach Kafka: every event at least once.
TEST_CASE("kafka sink: after a fatal producer error, later batches are delivered again",
          "[unit][sinks][contract][kafka]") {
  {
    Rig<KafkaFixture> r;
    auto& sink = dynamic_cast<KafkaSink&>(*r.sink);
    // Batch k holds events "f<5k>".."f<5k+4>"; a redelivery (as the group would) sends k again.
    auto send = [&](std::size_t k) {
      r.batches.push_back(test::make_batch(5, "f", k * 5));
      r.answers.inside_deliver = true;
      r.sink->deliver(r.batches.back(), DeliveryId{r.batches.size()}, r.answers);
      r.answers.inside_deliver = false;
    };
    send(0);
    send(1);
    REQUIRE(test::run_until(r.loop, 15s, [&] { return r.answers.answered() == 2; }));
    CHECK(r.answers.outcome[1] == Outcome::ok);
    CHECK(r.answers.outcome[2] == Outcome::ok);

    r.fixture.kafka.set_rtt(300ms);  // keeps the next batches in flight
    send(2);
    send(3);
    send(4);
    // All 25 messages were handed to librdkafka; the loop runs 50 ms so that it sends the last
    // 15 (their answers wait for the 300 ms round trip).
    double produced = 0;
    CHECK(r.metrics.find("sluice_kafka_produced_messages_total", r.ctx.labels(), produced));
    CHECK(produced == 25);
    test::run_until(r.loop, 50ms, [] { return false; });
    REQUIRE(r.answers.answered() == 2);
    sink.raise_test_fatal_error(RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    send(5);
    REQUIRE(test::run_until(r.loop, 10s, [&] { return r.answers.answered() == 6; }));
    for (std::uint64_t id = 3; id <= 6; ++id) {
      CHECK(r.answers.count[id] == 1);
      CHECK(r.answers.outcome[id] == Outcome::retry);
    }

    r.fixture.kafka.set_rtt(0ms);
    for (std::size_t k = 2; k <= 6; ++k) send(k);  // 2..5 again, then a new one
    REQUIRE(test::run_until(r.loop, 10s, [&] { return r.answers.answered() == 11; }));
    for (std::uint64_t id = 7; id <= 11; ++id) {
      CHECK(r.answers.count[id] == 1);
      CHECK(r.answers.outcome[id] == Outcome::ok);
    }
    CHECK(r.answers.answered_inside == 0);
    CHECK(r.answers.answered_off_thread == 0);
    double restarts = 0;
    CHECK(r.metrics.find("sluice_kafka_producer_restarts_total", r.ctx.labels(), restarts));
    CHECK(restarts == 1);
    REQUIRE(r.stop());
    r.sink.reset();

    // At most 55 messages: 10 + 15 in flight (each perhaps delivered too) + 25 delivered after.
    std::set<std::string> bodies;
    for (const auto& m : r.fixture.kafka.consume("logs", 55, 3s)) bodies.insert(m.value);
    CHECK(bodies.size() == 35);
    for (std::size_t i = 0; i < 35; ++i) CHECK(bodies.count("f" + std::to_string(i)) == 1);
    REQUIRE(r.loop.close() == 0);
  }
}

// Once librdkafka said every broker is down, a new batch answers Retry without being queued (a
// failover group moves on at once), and still never from inside deliver().
TEST_CASE("kafka sink: with every broker down a batch answers Retry on the next turn",
          "[unit][sinks][contract][kafka]") {
  {
    Rig<KafkaFixture> r;
    r.deliver(1);
    REQUIRE(test::run_until(r.loop, 15s, [&] { return r.answers.answered() == 1; }));
    r.fixture.kafka.set_down(true);
    double down = 0;
    REQUIRE(test::run_until(r.loop, 10s, [&] {
      r.metrics.find("sluice_kafka_all_brokers_down_total", r.ctx.labels(), down);
      return down >= 1;
    }));
    const auto t0 = std::chrono::steady_clock::now();
    r.deliver(1);
    REQUIRE(test::run_until(r.loop, 10s, [&] { return r.answers.answered() == 2; }));
    CHECK(std::chrono::steady_clock::now() - t0 < 500ms);
    CHECK(r.answers.outcome[2] == Outcome::retry);
    CHECK(r.answers.answered_inside == 0);
    REQUIRE(r.stop());
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
}

// Hardening item 3: a probe's callback must never outlive the sink, nor reach a listener after
// the sink stopped. stop() waits for the probe (which reports failed), then calls on_stopped.
TEMPLATE_TEST_CASE("sink contract: stop with a probe in flight answers the probe first",
                   "[unit][sinks][contract][probe]", AvroBlackholeFixture, KafkaDownFixture,
                   HttpBlackholeFixture, DataHubBlackholeFixture, TcpBlackholeFixture,
                   IlpHttpBlackholeFixture) {
  {
    Rig<TestType> r;
    r.fixture.prepare();
    Probes probes;
    REQUIRE(r.sink->probe(probes));
    bool stopped = false;
    int probes_at_stop = -1;
    const auto t0 = std::chrono::steady_clock::now();
    r.sink->stop([&] {
      stopped = true;
      probes_at_stop = probes.calls;
    });
    REQUIRE(test::run_until(r.loop, 10s, [&] { return stopped; }));
    WARN("stop with a probe in flight took "
         << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  t0)
                .count()
         << " ms");
    CHECK(probes_at_stop == 1);
    CHECK(!probes.healthy);
    CHECK(!r.sink->probe(probes));  // a stopped sink starts no probe
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
    CHECK(probes.calls == 1);
  }
}

TEMPLATE_TEST_CASE("sink contract: a sink destroyed with a probe in flight never calls back",
                   "[unit][sinks][contract][probe]", AvroBlackholeFixture, KafkaDownFixture,
                   HttpBlackholeFixture, DataHubBlackholeFixture, TcpBlackholeFixture,
                   IlpHttpBlackholeFixture) {
  {
    Probes probes;
    Rig<TestType> r;
    r.fixture.prepare();
    REQUIRE(r.sink->probe(probes));
    r.sink.reset();
    test::run_until(r.loop, 100ms, [] { return false; });
    REQUIRE(r.loop.close() == 0);  // the probe's handles are closed, its callback ran detached
    CHECK(probes.calls == 0);
  }
}

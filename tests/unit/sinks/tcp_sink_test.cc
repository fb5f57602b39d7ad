#include "sinks/tcp/tcp_sink.h"

#include <catch2/catch.hpp>
#include <set>
#include <thread>

#include "tests/support/allocation_check.h"
#include "tests/support/test_support.h"
#include "tests/unit/lib/net/tcp_client_peer.h"
#include "tests/unit/sinks/tcp_sink_driver.h"

using namespace sluice;
using namespace sluice::sinks;
using namespace std::chrono_literals;
using test::Driver;
using test::LinePeer;

namespace {

TcpSinkConfig config_for(const std::string& address, std::string_view extra = "") {
  std::vector<std::string> errors;
  auto c = test::parse_sink<TcpSinkConfig>(
      "[sinks.s]\naddress = \"" + address + "\"\n" + std::string(extra), errors);
  INFO((errors.empty() ? std::string() : errors[0]));
  REQUIRE(c);
  return *c;
}

struct Rig {
  Loop loop;
  MetricsRegistry metrics;
  SinkContext ctx{loop, metrics, "out", "tcp", "/tmp"};
  std::unique_ptr<TcpSink> sink;
  explicit Rig(const TcpSinkConfig& c) { sink = std::make_unique<TcpSink>(c, ctx); }
  double metric(const std::string& name) {
    double v = -1;
    metrics.find(name, ctx.labels(), v);
    return v;
  }
  bool stop(std::chrono::milliseconds timeout) {
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    return test::run_until(loop, timeout, [&] { return stopped; });
  }
};

// The numbers at the start of each line ("e17" -> 17), as a set.
std::multiset<long> numbers(const std::string& text, char prefix = 'e') {
  std::multiset<long> out;
  std::size_t pos = 0;
  while ((pos = text.find(prefix, pos)) != std::string::npos) {
    ++pos;
    out.insert(std::strtol(text.c_str() + pos, nullptr, 10));
  }
  return out;
}

}  // namespace

TEST_CASE("tcp sink config: defaults and errors name file line and key", "[unit][sinks][tcp]") {
  std::vector<std::string> errors;
  auto c = test::parse_sink<TcpSinkConfig>("[sinks.s]\naddress = \"127.0.0.1:5140\"\n", errors);
  REQUIRE(c);
  CHECK(c->framing == TcpFraming::newline);
  CHECK(c->payload == codec::OutputFormat::body);
  CHECK(c->stream.client.write_timeout == 5s);  // delivery_timeout's default
  CHECK(c->stream.client.connect_timeout == 5s);
  CHECK(!c->stream.client.tls);
  c = test::parse_sink<TcpSinkConfig>(R"([sinks.s]
address = "nowhere"
framing = "octets"
payload = "xml"
delivery_timeout = "250ms"
reconnect_backoff = "2s"
max_reconnect_backoff = "1s"
)",
                                      errors);
  CHECK(!c);
  REQUIRE(errors.size() == 4);
  CHECK(errors[0] == "inline.toml:2:11: sinks.s.address: \"nowhere\" is not HOST:PORT");
  CHECK(errors[1] ==
        "inline.toml:7:25: sinks.s.max_reconnect_backoff: must not be below reconnect_backoff");
  CHECK(errors[2].rfind("inline.toml:3:11: sinks.s.framing: ", 0) == 0);
  CHECK(errors[2].find("newline") != std::string::npos);
  CHECK(errors[3].rfind("inline.toml:4:11: sinks.s.payload: ", 0) == 0);
  errors.clear();
  c = test::parse_sink<TcpSinkConfig>(
      "[sinks.s]\naddress = \"127.0.0.1:1\"\ndelivery_timeout = \"250ms\"\n", errors);
  REQUIRE(c);
  CHECK(c->stream.client.write_timeout == 250ms);
}

TEST_CASE("tcp sink: newline framing sends each body and a newline, in order",
          "[unit][sinks][tcp]") {
  LinePeer peer;
  {
    Rig r(config_for(peer.address()));
    Driver d(r.loop, *r.sink);
    for (int b = 0; b < 20; ++b) d.add(test::make_batch(100, "e", b * 100));
    REQUIRE(d.run(10s));
    CHECK(d.retries == 0);
    std::string expect;
    for (int i = 0; i < 2000; ++i) expect += "e" + std::to_string(i) + "\n";
    REQUIRE(test::eventually(5s, [&] { return peer.received_bytes() == expect.size(); }));
    CHECK(peer.received() == expect);
    CHECK(r.metric("sluice_tcp_sink_bytes_total") == static_cast<double>(expect.size()));
    CHECK(r.metric("sluice_tcp_sink_connects_total") == 1);
    REQUIRE(r.stop(5s));
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
}

TEST_CASE("tcp sink: octet counting frames bodies with newlines and JSON events",
          "[unit][sinks][tcp]") {
  LinePeer peer;
  {
    Rig r(config_for(peer.address(), "framing = \"octet_counting\"\n"));
    Driver d(r.loop, *r.sink);
    Batch b;
    b.add("two\nlines", 0, 1);
    b.add("", 0, 2);
    b.add("h\xc3\xa9", 0, 3);
    d.add(std::move(b));
    REQUIRE(d.run(5s));
    REQUIRE(test::eventually(5s, [&] { return peer.received_bytes() == 18; }));
    CHECK(peer.received() == "9 two\nlines0 3 h\xc3\xa9");
    REQUIRE(r.stop(5s));
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
  LinePeer peer2;
  {
    Rig r(config_for(peer2.address(), "framing = \"octet_counting\"\npayload = \"json\"\n"));
    Driver d(r.loop, *r.sink);
    Batch b;
    b.add("a\nb", 1'750'000'000'123'456'789, 0xab);
    b.add_header("host", "web1");
    b.add_field("uid", "42", FieldType::integer);
    d.add(std::move(b));
    REQUIRE(d.run(5s));
    const std::string json =
        R"({"timestamp":"2025-06-15T15:06:40.123456789Z","id":"00000000000000ab",)"
        R"("headers":{"host":"web1"},"fields":{"uid":42},"body":"a\nb"})";
    const std::string expect = std::to_string(json.size()) + " " + json;
    REQUIRE(test::eventually(5s, [&] { return peer2.received_bytes() == expect.size(); }));
    CHECK(peer2.received() == expect);
    REQUIRE(r.stop(5s));
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
  LinePeer peer3;
  {
    Rig r(config_for(peer3.address(), "payload = \"json\"\n"));
    Driver d(r.loop, *r.sink);
    Batch b;
    b.add("x", 0, 1);
    d.add(std::move(b));
    REQUIRE(d.run(5s));
    const std::string expect =
        R"({"timestamp":"1970-01-01T00:00:00.000000000Z","id":"0000000000000001",)"
        R"("headers":{},"fields":{},"body":"x"})"
        "\n";
    REQUIRE(test::eventually(5s, [&] { return peer3.received_bytes() == expect.size(); }));
    CHECK(peer3.received() == expect);
    REQUIRE(r.stop(5s));
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
}

TEST_CASE("tcp sink: a listener that closes mid-batch gets every event at least once",
          "[unit][sinks][tcp]") {
  // Graceful: the peer stops in the middle of the 7th batch (it half-closes and reads on), the
  // sink sees the close, answers Retry for what the kernel had not taken and resends it.
  const std::size_t line = std::string("e0000\n").size();
  LinePeer peer(LinePeer::Mode::close_graceful, 650 * line + 3);
  {
    Rig r(config_for(peer.address(), "reconnect_backoff = \"20ms\"\n"));
    auto batch_of = [](int b) {
      Batch batch;
      for (int i = 0; i < 100; ++i) {
        char body[8];
        std::snprintf(body, sizeof body, "e%04d", b * 100 + i);
        batch.add(body, 0, static_cast<std::uint64_t>(b * 100 + i));
      }
      return batch;
    };
    Driver d(r.loop, *r.sink);
    for (int b = 0; b < 10; ++b) d.add(batch_of(b));
    REQUIRE(d.run(20s, 1));
    // The sink closes its side once it sees the peer's: the rest needs a new connection.
    REQUIRE(test::run_until(r.loop, 5s, [&] { return peer.ended() == 1; }));
    Driver rest(r.loop, *r.sink);
    for (int b = 10; b < 30; ++b) rest.add(batch_of(b));
    REQUIRE(rest.run(20s, 1));
    CHECK(peer.connections() == 2);
    REQUIRE(test::eventually(5s, [&] {
      const auto got = numbers(peer.received());
      std::set<long> distinct(got.begin(), got.end());
      return distinct.size() == 3000;
    }));
    CHECK(r.metric("sluice_tcp_sink_disconnects_total") >= 1);
    REQUIRE(r.stop(5s));
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
}

TEST_CASE("tcp sink: after a reset mid-stream it reconnects and later batches all arrive",
          "[unit][sinks][tcp]") {
  LinePeer peer(LinePeer::Mode::close_abrupt, 2000);
  {
    Rig r(config_for(peer.address(), "reconnect_backoff = \"20ms\"\n"));
    Driver d(r.loop, *r.sink);
    for (int b = 0; b < 10; ++b) d.add(test::make_batch(100, "e", b * 100));
    REQUIRE(d.run(5s, 1));
    REQUIRE(test::run_until(r.loop, 5s, [&] { return peer.ended() == 1; }));
    // A reset drops what the peer's kernel held unread: only batches sent after the new
    // connection are sure to arrive (this is what "Ok = the kernel took it" means).
    Driver later(r.loop, *r.sink);
    for (int b = 10; b < 20; ++b) later.add(test::make_batch(100, "e", b * 100));
    REQUIRE(later.run(10s));
    CHECK(peer.connections() == 2);
    REQUIRE(test::eventually(5s, [&] {
      const auto got = numbers(peer.received());
      for (long i = 1000; i < 2000; ++i) {
        if (got.count(i) == 0) return false;
      }
      return true;
    }));
    REQUIRE(r.stop(5s));
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
}

TEST_CASE("tcp sink: a peer that never reads answers Retry after delivery_timeout, stop is prompt",
          "[unit][sinks][tcp]") {
  LinePeer peer(LinePeer::Mode::never_read, 0, 4096);
  {
    Rig r(config_for(peer.address(), "delivery_timeout = \"400ms\"\nflush_timeout = \"200ms\"\n"));
    Driver d(r.loop, *r.sink);
    for (int b = 0; b < 4; ++b) d.add(test::make_batch(20000, std::string(200, 'x'), b * 20000));
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < 4; ++i) {
      d.state[i] = 1;
      r.sink->deliver(d.batches[i], DeliveryId{i + 1}, d);
    }
    REQUIRE(test::run_until(r.loop, 5s, [&] { return d.answers == 4; }));
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took >= 350ms);
    CHECK(took < 2s);
    CHECK(d.last[4].is_retry());
    CHECK(d.last[4].reason.find("did not complete within 400ms") != std::string::npos);
    // Again, and stop at once: flush_timeout (200 ms) bounds the shutdown.
    r.loop.run_once();
    REQUIRE(test::run_until(
        r.loop, 2s, [&] { return r.sink->client().state() != net::TcpClient::State::backoff; }));
    for (std::size_t i = 0; i < 4; ++i) r.sink->deliver(d.batches[i], DeliveryId{i + 1}, d);
    const auto t1 = std::chrono::steady_clock::now();
    REQUIRE(r.stop(5s));
    CHECK(std::chrono::steady_clock::now() - t1 < 1s);
    CHECK(d.answers == 8);
    CHECK(d.last[1].is_retry());
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
}

TEST_CASE("tcp sink: nothing listening answers Retry and backs off, a probe says when it is back",
          "[unit][sinks][tcp]") {
  Loop loop;
  MetricsRegistry metrics;
  {
    // Take a free port, then close it: the first connect is refused.
    int port = 0;
    {
      LinePeer tmp;
      port = std::stoi(tmp.address().substr(10));
    }
    const std::string address = "127.0.0.1:" + std::to_string(port);
    SinkContext ctx{loop, metrics, "out", "tcp", "/tmp"};
    auto sink = std::make_unique<TcpSink>(config_for(address, "reconnect_backoff = \"5s\"\n"), ctx);
    Driver d(loop, *sink);
    d.add(test::make_batch(3, "e"));
    d.state[0] = 1;
    sink->deliver(d.batches[0], DeliveryId{1}, d);
    REQUIRE(test::run_until(loop, 5s, [&] { return d.answers == 1; }));
    CHECK(d.last[1].is_retry());
    CHECK(d.last[1].reason.find("ECONNREFUSED") != std::string::npos);
    // In the backoff: Retry on the next turn, without a connect.
    sink->deliver(d.batches[0], DeliveryId{1}, d);
    CHECK(d.answers == 1);
    loop.run_once();
    REQUIRE(test::run_until(loop, 1s, [&] { return d.answers == 2; }));
    CHECK(d.last[1].reason == "not connected to " + address + " (reconnecting)");
    struct Probes final : ProbeListener {
      int calls = 0;
      bool healthy = false;
      void on_probed(Sink&, bool h) noexcept override {
        ++calls;
        healthy = h;
      }
    } probes;
    // The peer comes back on that port: a probe cuts the backoff short.
    LinePeer back;  // a fresh port; probe the sink at that port instead
    auto sink2 = std::make_unique<TcpSink>(config_for(back.address()), ctx);
    REQUIRE(sink2->probe(probes));
    REQUIRE(test::run_until(loop, 5s, [&] { return probes.calls == 1; }));
    CHECK(probes.healthy);
    REQUIRE(sink2->probe(probes));  // connected: healthy on a later turn
    CHECK(probes.calls == 1);
    REQUIRE(test::run_until(loop, 5s, [&] { return probes.calls == 2; }));
    REQUIRE(sink->probe(probes));
    REQUIRE(test::run_until(loop, 5s, [&] { return probes.calls == 3; }));
    CHECK(!probes.healthy);  // still refused, even though the backoff was running
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    REQUIRE(test::run_until(loop, 5s, [&] { return stopped; }));
    stopped = false;
    sink2->stop([&] { stopped = true; });
    REQUIRE(test::run_until(loop, 5s, [&] { return stopped; }));
    sink.reset();
    sink2.reset();
  }
  REQUIRE(loop.close() == 0);
}

TEST_CASE("tcp sink: delivering to a reading peer does not allocate once warm",
          "[unit][sinks][tcp]") {
  SLUICE_REQUIRE_ALLOCATION_COUNTING();
  LinePeer peer;
  Rig r(config_for(peer.address()));
  struct Ok final : DeliveryListener {
    int answers = 0;
    void on_delivered(DeliveryId, const DeliveryResult&) noexcept override { ++answers; }
  } ok;
  Batch b = test::make_batch(500, std::string(190, 'x'));
  auto round = [&](std::uint64_t n) {
    for (std::uint64_t k = 0; k < 4; ++k) r.sink->deliver(b, DeliveryId{n * 4 + k}, ok);
    const int want = ok.answers + 4;
    while (ok.answers < want) r.loop.run_once();
  };
  for (std::uint64_t i = 0; i < 200; ++i) round(i);  // warm-up: buffers and queues at size
  std::uint64_t allocations = 0;
  {
    test::AllocationCounter allocs;
    for (std::uint64_t i = 200; i < 400; ++i) round(i);
    allocations = allocs.count();
  }
  CHECK(allocations == 0);
  REQUIRE(r.stop(5s));
  r.sink.reset();
  REQUIRE(r.loop.close() == 0);
}

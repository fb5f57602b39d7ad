#include "sinks/avro/avro_sink.h"

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <vector>

#include "tests/support/fault_peers.h"
#include "tests/support/test_support.h"
#include "tests/unit/lib/net/tcp_client_peer.h"

using namespace sluice;
using namespace sluice::sinks;
using namespace std::chrono_literals;
using test::LinePeer;

namespace {

struct Rig final : ProbeListener, DeliveryListener {
  Loop loop;
  MetricsRegistry metrics;
  SinkContext ctx{loop, metrics, "out", "avro", "/tmp"};
  std::unique_ptr<AvroSink> sink;
  std::vector<bool> probes;
  std::vector<DeliveryResult> answers;
  explicit Rig(const std::string& address) {
    AvroSinkConfig c;
    c.address = address;
    c.connect_timeout = 2s;
    c.request_timeout = 60s;
    c.flush_timeout = 100ms;
    auto s = AvroSink::create(c, ctx);
    REQUIRE(s);
    sink = std::move(*s);
  }
  void on_probed(Sink&, bool healthy) noexcept override { probes.push_back(healthy); }
  void on_delivered(DeliveryId, const DeliveryResult& r) noexcept override { answers.push_back(r); }
  double connects() {
    double v = -1;
    metrics.find("sluice_avro_sink_connects_total", ctx.labels(), v);
    return v;
  }
  bool stop() {
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    return test::run_until(loop, 5s, [&] { return stopped; });
  }
};

}  // namespace

TEST_CASE("avro sink: a probe connects and its connection carries the next batch",
          "[unit][sinks][avro]") {
  LinePeer peer;  // accepts and reads; never answers
  Rig r(peer.address());
  REQUIRE(r.sink->probe(r));
  CHECK_FALSE(r.sink->probe(r));  // one at a time
  CHECK(r.probes.empty());        // never answered from inside probe()
  REQUIRE(test::run_until(r.loop, 5s, [&] { return r.probes.size() == 1; }));
  CHECK(r.probes[0]);
  CHECK(r.connects() == 1);
  Batch b = test::make_batch(3, "e");
  r.sink->deliver(b, DeliveryId{1}, r);
  REQUIRE(test::run_until(r.loop, 5s, [&] { return peer.received_bytes() > 0; }));
  CHECK(peer.connections() == 1);
  CHECK(r.connects() == 1);
  // A probe while connected is healthy at once (on a later turn).
  REQUIRE(r.sink->probe(r));
  CHECK(r.probes.size() == 1);
  REQUIRE(test::run_until(r.loop, 5s, [&] { return r.probes.size() == 2; }));
  CHECK(r.probes[1]);
  // The request is never answered: flush_timeout at stop answers it Retry.
  REQUIRE(r.stop());
  REQUIRE(r.answers.size() == 1);
  CHECK(r.answers[0].is_retry());
  r.sink.reset();
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("avro sink: a probe of a refused port or of a name is answered by the connect",
          "[unit][sinks][avro]") {
  {
    Rig r("127.0.0.1:1");
    REQUIRE(r.sink->probe(r));
    REQUIRE(test::run_until(r.loop, 5s, [&] { return r.probes.size() == 1; }));
    CHECK_FALSE(r.probes[0]);
    CHECK(r.connects() == 0);
    // A batch after it tries again at once (no reconnect backoff) and answers Retry.
    Batch b = test::make_batch(1, "e");
    r.sink->deliver(b, DeliveryId{1}, r);
    CHECK(r.answers.empty());
    REQUIRE(test::run_until(r.loop, 1s, [&] { return r.answers.size() == 1; }));
    CHECK(r.answers[0].is_retry());
    REQUIRE(r.stop());
    r.sink.reset();
    REQUIRE(r.loop.close() == 0);
  }
  LinePeer peer;
  Rig r("localhost:" + peer.address().substr(peer.address().rfind(':') + 1));
  REQUIRE(r.sink->probe(r));  // a name is resolved, as for a batch
  REQUIRE(test::run_until(r.loop, 5s, [&] { return r.probes.size() == 1; }));
  CHECK(r.probes[0]);
  REQUIRE(r.stop());
  r.sink.reset();
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("avro sink: stop cancels a probe in flight, answered before on_stopped",
          "[unit][sinks][avro]") {
  test::Blackhole hole;
  Rig r(hole.address());
  REQUIRE(r.sink->probe(r));
  bool stopped = false, probed_first = false;
  r.sink->stop([&] {
    stopped = true;
    probed_first = r.probes.size() == 1;
  });
  REQUIRE(test::run_until(r.loop, 1s, [&] { return stopped; }));
  CHECK(probed_first);
  REQUIRE(r.probes.size() == 1);
  CHECK_FALSE(r.probes[0]);
  r.sink.reset();
  REQUIRE(r.loop.close() == 0);
}

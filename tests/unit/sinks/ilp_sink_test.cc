#include "sinks/ilp/ilp_sink.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <set>

#include "tests/support/agent_process.h"
#include "tests/support/test_support.h"
#include "tests/unit/lib/net/tcp_client_peer.h"
#include "tests/unit/sinks/tcp_sink_driver.h"

using namespace sluice;
using namespace sluice::sinks;
using namespace std::chrono_literals;
using test::Driver;

namespace {

// tests/unit/sinks/ilp_peer.py, as QuestDB or as InfluxDB 1.x.
struct IlpPeer {
  test::TempDir dir;
  std::unique_ptr<test::ChildProcess> child;
  std::string address;
  explicit IlpPeer(const std::string& mode, int fail = 0, int status = 0) {
    child = std::make_unique<test::ChildProcess>(
        std::vector<std::string>{
            "/usr/bin/python3", test::source_dir() + "/tests/unit/sinks/ilp_peer.py", "--addr-file",
            dir.file("addr"), "--out", dir.file("rows"), "--mode", mode, "--fail",
            std::to_string(fail), "--status", std::to_string(status)},
        dir.file("log"));
    REQUIRE(test::eventually(10s, [&] {
      std::string a = test::read_file(dir.file("addr"));
      if (a.empty() || a.back() != '\n') return false;
      address = a.substr(0, a.size() - 1);
      return true;
    }));
  }
  std::vector<std::string> rows() const { return test::read_lines(dir.file("rows")); }
  std::vector<std::string> requests() const { return test::read_lines(dir.file("rows.req")); }
};

std::unique_ptr<Sink> make_sink(SinkContext& ctx, const std::string& conf) {
  std::vector<std::string> errors;
  auto c = test::parse_sink<IlpConfig>(conf, errors);
  INFO((errors.empty() ? std::string() : errors[0]));
  REQUIRE(c);
  auto s = IlpSink::create(*c, ctx);
  REQUIRE(s);
  return std::move(*s);
}

// Events v=0..n-1 in one batch; those in `bad` carry the text BAD in a tag.
Batch numbered(int n, std::vector<int> bad = {}) {
  Batch b;
  for (int i = 0; i < n; ++i) {
    b.add("", 1'000'000'000LL * (i + 1), static_cast<std::uint64_t>(i));
    const bool is_bad = std::find(bad.begin(), bad.end(), i) != bad.end();
    b.add_field("host", is_bad ? "BAD" : "ok", FieldType::string);
    b.add_field("v", std::to_string(i), FieldType::integer);
  }
  return b;
}

struct Rig {
  Loop loop;
  MetricsRegistry metrics;
  SinkContext ctx{loop, metrics, "q", "ilp", "/tmp"};
  double metric(const std::string& name, const Labels& extra = {}) {
    Labels l = ctx.labels();
    l.insert(l.end(), extra.begin(), extra.end());
    double v = -1;
    metrics.find(name, l, v);
    return v;
  }
};

std::string http_conf(const std::string& address) {
  return "[sinks.s]\nurl = \"http://" + address +
         "/write?db=x\"\ntable = \"t\"\ntags = [\"host\"]\nfields = [\"v\"]\nprecision = \"s\"\n";
}

}  // namespace

TEST_CASE("ilp over http: a batch is one POST of its lines, answered Ok on 204",
          "[unit][sinks][ilp]") {
  IlpPeer peer("questdb");
  Rig r;
  {
    auto sink = make_sink(r.ctx, http_conf(peer.address));
    Driver d(r.loop, *sink);
    d.add(numbered(3));
    REQUIRE(d.run(10s));
    CHECK(d.last[1].is_ok());
    CHECK(peer.rows() ==
          std::vector<std::string>{"t,host=ok v=0i 1", "t,host=ok v=1i 2", "t,host=ok v=2i 3"});
    CHECK(peer.requests() == std::vector<std::string>{"#REQ 204 3 /write?db=x&precision=s"});
    CHECK(r.metric("sluice_ilp_rows_written_total") == 3);
    CHECK(r.metric("sluice_http_sink_requests_total", {{"code", "2xx"}}) == 1);
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    REQUIRE(test::run_until(r.loop, 5s, [&] { return stopped; }));
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("ilp over http: QuestDB's 400 names the line: it is rejected and the rest resent",
          "[unit][sinks][ilp]") {
  IlpPeer peer("questdb");
  Rig r;
  {
    auto sink = make_sink(r.ctx, http_conf(peer.address));
    Driver d(r.loop, *sink);
    d.add(numbered(10, {2, 7}));
    REQUIRE(d.run(10s));
    REQUIRE(d.last[1].is_reject());
    CHECK(d.last[1].rejected == std::vector<std::uint32_t>{2, 7});
    CHECK(d.last[1].reason.rfind("HTTP 400: {\"code\": \"invalid\"", 0) == 0);
    CHECK(d.last[1].reason.find("(and 1 more)") != std::string::npos);
    const auto rows = peer.rows();
    REQUIRE(rows.size() == 8);
    for (const auto& row : rows) CHECK(row.find("BAD") == std::string::npos);
    // The whole batch, then [0,2) [3,10) (which names line 5 = event 7), then [3,7) [8,10).
    CHECK(peer.requests().size() == 5);
    CHECK(r.metric("sluice_ilp_rows_rejected_total", {{"reason", "server"}}) == 2);
    CHECK(r.metric("sluice_ilp_rows_written_total") == 8);
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    REQUIRE(test::run_until(r.loop, 5s, [&] { return stopped; }));
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("ilp over http: an InfluxDB partial write is resolved by halves, good rows kept",
          "[unit][sinks][ilp]") {
  IlpPeer peer("influx");
  Rig r;
  {
    auto sink = make_sink(r.ctx, http_conf(peer.address));
    Driver d(r.loop, *sink);
    d.add(numbered(16, {5}));
    REQUIRE(d.run(10s));
    REQUIRE(d.last[1].is_reject());
    CHECK(d.last[1].rejected == std::vector<std::uint32_t>{5});
    CHECK(d.last[1].reason.find("partial write: unable to parse 't,host=BAD v=5i 6'") !=
          std::string::npos);
    // Every good row is there (some more than once: InfluxDB overwrites the same point).
    std::set<std::string> distinct;
    for (const auto& row : peer.rows()) distinct.insert(row);
    CHECK(distinct.size() == 15);
    CHECK(distinct.count("t,host=ok v=15i 16") == 1);
    CHECK(r.metric("sluice_ilp_partial_write_splits_total") == 4);  // 16 -> 8 -> 4 -> 2 -> 1
    CHECK(r.metric("sluice_ilp_rows_rejected_total", {{"reason", "server"}}) == 1);
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    REQUIRE(test::run_until(r.loop, 5s, [&] { return stopped; }));
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("ilp over http: 503 answers Retry, and events that cannot make a line are rejected",
          "[unit][sinks][ilp]") {
  IlpPeer peer("questdb", 1);
  Rig r;
  {
    auto sink = make_sink(r.ctx, "[sinks.s]\nurl = \"http://" + peer.address +
                                     "/write\"\ntable = \"t\"\nfields = { v = \"integer\" }\n");
    Driver d(r.loop, *sink);
    Batch b = numbered(2);
    b.add("", 0, 9);
    b.add_field("v", "not a number", FieldType::string);
    b.add("", 0, 10);  // no field at all
    d.add(std::move(b));
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(d.run(10s));
    // 503 with Retry-After: 1: no request for a second, every delivery meanwhile answers Retry.
    CHECK(std::chrono::steady_clock::now() - t0 >= 900ms);
    CHECK(d.retries >= 2);
    CHECK(r.metric("sluice_http_sink_retry_after_total") == d.retries - 1);
    REQUIRE(d.last[1].is_reject());
    CHECK(d.last[1].rejected == std::vector<std::uint32_t>{2, 3});
    CHECK(d.last[1].reason == "field 'v': \"not a number\" is not an integer (and 1 more)");
    CHECK(peer.rows() == std::vector<std::string>{"t v=0i 1000000000", "t v=1i 2000000000"});
    CHECK(r.metric("sluice_ilp_rows_rejected_total", {{"reason", "invalid_value"}}) == 2);
    CHECK(r.metric("sluice_ilp_rows_rejected_total", {{"reason", "no_fields"}}) == 2);
    CHECK(r.metric("sluice_http_sink_requests_total", {{"code", "5xx"}}) == 1);
    // Nothing encodable at all: answered (Reject) without a request, on a later turn.
    Driver none(r.loop, *sink);
    Batch empty;
    empty.add("", 0, 1);
    none.add(std::move(empty));
    REQUIRE(none.run(5s));
    CHECK(none.last[1].is_reject());
    CHECK(peer.requests().size() == 2);
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    REQUIRE(test::run_until(r.loop, 5s, [&] { return stopped; }));
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("ilp over tcp: lines stream to the listener, bad events rejected", "[unit][sinks][ilp]") {
  test::LinePeer peer;
  Rig r;
  {
    auto sink = make_sink(r.ctx, "[sinks.s]\naddress = \"" + peer.address() +
                                     "\"\ntable = \"t\"\ntags = [\"host\"]\n"
                                     "fields = { v = \"integer\" }\n");
    Driver d(r.loop, *sink);
    Batch b = numbered(2);
    b.add("", 0, 9);
    b.add_field("v", "x", FieldType::string);
    d.add(std::move(b));
    d.add(numbered(1));
    REQUIRE(d.run(10s));
    REQUIRE(d.last[1].is_reject());
    CHECK(d.last[1].rejected == std::vector<std::uint32_t>{2});
    CHECK(d.last[2].is_ok());
    const std::string expect =
        "t,host=ok v=0i 1000000000\nt,host=ok v=1i 2000000000\nt,host=ok v=0i 1000000000\n";
    REQUIRE(test::eventually(5s, [&] { return peer.received_bytes() == expect.size(); }));
    CHECK(peer.received() == expect);
    CHECK(r.metric("sluice_ilp_rows_written_total") == 3);
    CHECK(r.metric("sluice_ilp_tcp_connects_total") == 1);
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    REQUIRE(test::run_until(r.loop, 5s, [&] { return stopped; }));
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("ilp over http: configuration errors answer Retry and other 4xx reject the batch",
          "[unit][sinks][ilp]") {
  Rig r;
  {
    IlpPeer influx("influx");
    auto sink = make_sink(r.ctx, "[sinks.s]\nurl = \"http://" + influx.address +
                                     "/write\"\ntable = \"t\"\nfields = [\"v\"]\n");
    Driver d(r.loop, *sink);
    d.add(numbered(4));
    d.state[0] = 1;
    sink->deliver(d.batches[0], DeliveryId{1}, d);
    REQUIRE(test::run_until(r.loop, 10s, [&] { return d.answers == 1; }));
    CHECK(d.last[1].is_retry());  // a missing db= is not a bad line: nothing is rejected
    CHECK(d.last[1].reason.find("database is required") != std::string::npos);
    CHECK(influx.requests().size() == 1);
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    REQUIRE(test::run_until(r.loop, 5s, [&] { return stopped; }));
  }
  for (int status : {401, 404}) {
    IlpPeer peer("questdb", 0, status);
    auto sink = make_sink(r.ctx, http_conf(peer.address));
    Driver d(r.loop, *sink);
    d.add(numbered(2));
    d.state[0] = 1;
    sink->deliver(d.batches[0], DeliveryId{1}, d);
    REQUIRE(test::run_until(r.loop, 10s, [&] { return d.answers == 1; }));
    CHECK(d.last[1].is_retry());
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    REQUIRE(test::run_until(r.loop, 5s, [&] { return stopped; }));
  }
  {
    IlpPeer peer("questdb", 0, 422);
    auto sink = make_sink(r.ctx, http_conf(peer.address));
    Driver d(r.loop, *sink);
    d.add(numbered(3));
    REQUIRE(d.run(10s));
    REQUIRE(d.last[1].is_reject());
    CHECK(d.last[1].rejected == std::vector<std::uint32_t>{0, 1, 2});
    CHECK(d.last[1].reason.find("422") != std::string::npos);
    CHECK(peer.requests().size() == 1);
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    REQUIRE(test::run_until(r.loop, 5s, [&] { return stopped; }));
  }
  REQUIRE(r.loop.close() == 0);
}

TEST_CASE("ilp over http: the probe is a GET of /ping on the url's server", "[unit][sinks][ilp]") {
  Rig r;
  {
    struct Probes final : ProbeListener {
      int calls = 0;
      bool healthy = false;
      void on_probed(Sink&, bool h) noexcept override {
        ++calls;
        healthy = h;
      }
    } probes;
    IlpPeer peer("questdb");
    auto up = make_sink(r.ctx, http_conf(peer.address));
    REQUIRE(up->probe(probes));
    CHECK(!up->probe(probes));  // one at a time
    REQUIRE(test::run_until(r.loop, 10s, [&] { return probes.calls == 1; }));
    CHECK(probes.healthy);
    auto down = make_sink(r.ctx, http_conf("127.0.0.1:1"));
    REQUIRE(down->probe(probes));
    REQUIRE(test::run_until(r.loop, 10s, [&] { return probes.calls == 2; }));
    CHECK(!probes.healthy);
    for (auto* s : {up.get(), down.get()}) {
      bool stopped = false;
      s->stop([&] { stopped = true; });
      REQUIRE(test::run_until(r.loop, 5s, [&] { return stopped; }));
    }
  }
  REQUIRE(r.loop.close() == 0);
}

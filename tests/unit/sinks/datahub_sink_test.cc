// The datahub sink in-process against tests/support/datahub_peer.py, which checks every request
// (signature recomputed in python from PROTOCOLS §3.3, body schema, deflate) and fails on demand.
#include "sinks/datahub/datahub_sink.h"

#include <catch2/catch.hpp>
#include <deque>
#include <map>
#include <set>

#include "tests/support/datahub_peer.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::sinks;
using namespace std::chrono_literals;

namespace {

struct Answers final : DeliveryListener {
  std::map<std::uint64_t, DeliveryResult> results;
  std::map<std::uint64_t, int> count;
  void on_delivered(DeliveryId id, const DeliveryResult& r) noexcept override {
    results[id.value] = r;
    ++count[id.value];
  }
};

struct Rig {
  test::DataHubPeer peer;
  Loop loop;
  MetricsRegistry metrics;
  SinkContext ctx{loop, metrics, "dh", "datahub", "/tmp"};
  DataHubConfig config;
  std::unique_ptr<DataHubSink> sink;
  std::deque<Batch> batches;
  Answers answers;
  std::uint64_t next_id = 0;

  explicit Rig(const test::DataHubPeer::Options& o = {}) : peer(o) {
    config.endpoint = peer.endpoint();
    config.project = "weblogs";
    config.topic = "events";
    config.access_id = "test-id";
    config.access_key = Secret("test-key", "inline");
    config.retry_backoff = 10ms;
  }
  void make() {
    auto s = DataHubSink::create(config, ctx);
    REQUIRE(s);
    sink = std::move(*s);
  }
  // Delivers `batch` (kept alive here) and returns its id.
  std::uint64_t deliver(Batch batch) {
    batches.push_back(std::move(batch));
    sink->deliver(batches.back(), DeliveryId{++next_id}, answers);
    return next_id;
  }
  const DeliveryResult& wait(std::uint64_t id) {
    REQUIRE(test::run_until(loop, 15s, [&] { return answers.count[id] > 0; }));
    CHECK(answers.count[id] == 1);
    return answers.results[id];
  }
  double metric(const std::string& name, Labels extra = {}) {
    Labels l = ctx.labels();
    for (auto& e : extra) l.push_back(e);
    double v = -1;
    metrics.find(name, l, v);
    return v;
  }
  void finish() {
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    REQUIRE(test::run_until(loop, 15s, [&] { return stopped; }));
    sink.reset();
    REQUIRE(loop.close() == 0);
    CHECK(peer.stat("signature_failures") == 0);
    CHECK(peer.stat("bad_requests") == 0);
  }
};

// Each body once, in any order.
std::multiset<std::string> as_set(const std::vector<std::string>& v) {
  return {v.begin(), v.end()};
}
std::multiset<std::string> expected_bodies(std::size_t n, std::string_view prefix = "event-") {
  std::multiset<std::string> s;
  for (std::size_t i = 0; i < n; ++i) s.insert(std::string(prefix) + std::to_string(i));
  return s;
}

}  // namespace

TEST_CASE("datahub sink: a batch is signed and accepted and spread round robin over the shards",
          "[unit][datahub]") {
  Rig r;
  r.make();
  const auto id = r.deliver(test::make_batch(10));
  CHECK(r.wait(id).is_ok());
  CHECK(as_set(r.peer.records()) == expected_bodies(10));
  const auto shards = r.peer.shards();
  CHECK(std::count(shards.begin(), shards.end(), "0") == 5);
  CHECK(std::count(shards.begin(), shards.end(), "1") == 5);
  CHECK(r.peer.stat("lists") == 1);
  CHECK(r.metric("sluice_datahub_records_sent_total") == 10);
  CHECK(r.metric("sluice_http_sink_requests_total", {{"code", "2xx"}}) == 2);  // list + put
  r.finish();
}

TEST_CASE("datahub sink: only the FailedRecords are resent and each record arrives once",
          "[unit][datahub]") {
  Rig r;
  r.make();
  REQUIRE(r.peer.control(R"({"fail_indices": [1, 3, 7], "fail_times": 1})"));
  const auto id = r.deliver(test::make_batch(10));
  CHECK(r.wait(id).is_ok());
  CHECK(as_set(r.peer.records()) == expected_bodies(10));
  CHECK(r.peer.stat("puts") == 2);
  CHECK(r.peer.stat("failed_records") == 3);
  CHECK(r.peer.stat("records") == 10);
  // The resend carried the three failed records only.
  const auto recs = r.peer.records();
  REQUIRE(recs.size() == 10);
  CHECK(as_set({recs.begin() + 7, recs.end()}) ==
        std::multiset<std::string>{"event-1", "event-3", "event-7"});
  CHECK(r.metric("sluice_datahub_records_failed_total") == 3);
  CHECK(r.metric("sluice_datahub_records_sent_total") == 10);
  r.finish();
}

TEST_CASE("datahub sink: random FailedRecords over many batches deliver each record exactly once",
          "[unit][datahub]") {
  Rig r;
  r.config.max_records_per_request = 37;
  r.config.record_retry_timeout = 30s;
  r.make();
  REQUIRE(r.peer.control(R"({"fail_ratio": 0.3, "fail_code": "LimitExceeded", "seed": 5})"));
  std::vector<std::uint64_t> ids;
  for (int b = 0; b < 8; ++b) ids.push_back(r.deliver(test::make_batch(100, "event-", b * 100)));
  for (auto id : ids) CHECK(r.wait(id).is_ok());
  CHECK(as_set(r.peer.records()) == expected_bodies(800));
  CHECK(r.peer.stat("failed_records") > 100);
  CHECK(r.metric("sluice_datahub_records_failed_total") == r.peer.stat("failed_records"));
  r.finish();
}

TEST_CASE("datahub sink: MalformedRecord rejects those records and accepts the rest",
          "[unit][datahub]") {
  Rig r;
  r.make();
  REQUIRE(r.peer.control(R"({"malformed_indices": [2, 5]})"));
  const auto id = r.deliver(test::make_batch(6));
  const DeliveryResult& res = r.wait(id);
  REQUIRE(res.is_reject());
  CHECK(res.rejected == std::vector<std::uint32_t>{2, 5});
  CHECK(res.reason == "MalformedRecord: injected");
  CHECK(as_set(r.peer.records()) ==
        std::multiset<std::string>{"event-0", "event-1", "event-3", "event-4"});
  CHECK(r.metric("sluice_datahub_records_rejected_total") == 2);
  CHECK(r.metric("sluice_http_sink_rejects_total") == 2);
  r.finish();
}

TEST_CASE("datahub sink: InvalidShardOperation lists the shards again and re-routes",
          "[unit][datahub]") {
  Rig r;
  r.make();
  auto id = r.deliver(test::make_batch(4));
  CHECK(r.wait(id).is_ok());
  REQUIRE(r.peer.control(R"({"split_shards": true})"));  // shards 0 and 1 close; 2..5 open
  id = r.deliver(test::make_batch(8, "event-", 4));
  CHECK(r.wait(id).is_ok());
  CHECK(as_set(r.peer.records()) == expected_bodies(12));
  const auto shards = r.peer.shards();
  for (std::size_t i = 4; i < shards.size(); ++i) CHECK((shards[i] != "0" && shards[i] != "1"));
  CHECK(r.peer.stat("lists") == 2);
  CHECK(r.metric("sluice_datahub_shard_reloads_total") == 1);
  r.finish();
}

TEST_CASE("datahub sink: a 503 answers Retry and the batch handed back arrives once",
          "[unit][datahub]") {
  Rig r;
  r.make();
  auto id = r.deliver(test::make_batch(1));  // lists the shards first
  CHECK(r.wait(id).is_ok());
  REQUIRE(r.peer.control(R"({"status_next": [503]})"));
  Batch b = test::make_batch(5, "x-");
  id = r.deliver(b);
  const DeliveryResult& res = r.wait(id);
  REQUIRE(res.is_retry());
  CHECK(res.reason == "HTTP 503 ServiceUnavailable: injected");
  id = r.deliver(b);
  CHECK(r.wait(id).is_ok());
  CHECK(as_set(r.peer.records()) ==
        std::multiset<std::string>{"event-0", "x-0", "x-1", "x-2", "x-3", "x-4"});
  CHECK(r.metric("sluice_http_sink_requests_total", {{"code", "5xx"}}) == 1);
  CHECK(r.metric("sluice_http_sink_retries_total") == 1);
  r.finish();
}

TEST_CASE("datahub sink: after a Retry the accepted records of the batch are not sent again",
          "[unit][datahub]") {
  Rig r;
  r.config.record_retry_timeout = 0ms;  // answer Retry at the first FailedRecords
  r.make();
  REQUIRE(r.peer.control(R"({"fail_indices": [0, 4], "fail_times": 1})"));
  Batch b = test::make_batch(6);
  auto id = r.deliver(b);
  REQUIRE(r.wait(id).is_retry());
  CHECK(r.metric("sluice_datahub_ledger_records") == 4);
  id = r.deliver(b);  // the group hands the same events back
  CHECK(r.wait(id).is_ok());
  CHECK(as_set(r.peer.records()) == expected_bodies(6));
  CHECK(r.metric("sluice_datahub_records_skipped_total") == 4);
  CHECK(r.metric("sluice_datahub_ledger_records") == 0);
  r.finish();
}

TEST_CASE("datahub sink: a cancelled delivery answers Retry and its resend skips what arrived",
          "[unit][datahub]") {
  Rig r;
  r.make();
  auto warm = r.deliver(test::make_batch(1, "w-"));  // the shards are listed
  CHECK(r.wait(warm).is_ok());
  Batch b = test::make_batch(20);
  auto id = r.deliver(b);  // its request is out
  r.sink->cancel(DeliveryId{id});
  auto id2 = r.deliver(b);  // handed back at once: waits for the cancelled one's answer
  REQUIRE(r.wait(id).is_retry());
  CHECK(r.wait(id2).is_ok());
  auto want = expected_bodies(20);
  want.insert("w-0");
  CHECK(as_set(r.peer.records()) == want);
  CHECK(r.peer.stat("puts") == 2);  // the handed-back batch sent nothing: all 20 were accepted
  CHECK(r.metric("sluice_datahub_records_skipped_total") == 20);
  r.finish();
}

TEST_CASE("datahub sink: deflate bodies carry x-datahub-content-raw-size", "[unit][datahub]") {
  Rig r;
  r.config.compression = http::Compression::deflate;
  r.make();
  Batch b;
  for (int i = 0; i < 200; ++i)
    b.add("a rather repetitive log line number " + std::to_string(i), 0, 1);
  auto id = r.deliver(std::move(b));
  CHECK(r.wait(id).is_ok());
  CHECK(r.peer.stat("deflate_requests") == 1);
  CHECK(r.peer.stat("records") == 200);
  CHECK(r.metric("sluice_http_sink_bytes_total", {{"stage", "compressed"}}) <
        r.metric("sluice_http_sink_bytes_total", {{"stage", "uncompressed"}}) / 3);
  r.finish();
}

TEST_CASE("datahub sink: a wrong key halts the sink until its probe passes", "[unit][datahub]") {
  test::DataHubPeer::Options o;
  o.access_key = "the-right-key";
  Rig r(o);
  r.make();  // signs with test-key
  auto id = r.deliver(test::make_batch(3));
  const DeliveryResult& res = r.wait(id);
  REQUIRE(res.is_retry());
  CHECK(res.reason.find("Unauthorized") != std::string::npos);
  CHECK(res.reason.find("test-key") == std::string::npos);
  CHECK(r.metric("sluice_datahub_halts_total") == 1);
  const auto t0 = std::chrono::steady_clock::now();
  id = r.deliver(test::make_batch(3));  // halted: Retry at once, nothing sent
  CHECK(r.wait(id).is_retry());
  CHECK(std::chrono::steady_clock::now() - t0 < 200ms);
  struct P final : ProbeListener {
    int calls = 0;
    bool healthy = true;
    void on_probed(Sink&, bool h) noexcept override {
      ++calls;
      healthy = h;
    }
  } probe;
  REQUIRE(r.sink->probe(probe));
  REQUIRE(test::run_until(r.loop, 10s, [&] { return probe.calls == 1; }));
  CHECK_FALSE(probe.healthy);
  CHECK(r.peer.stat("records") == 0);
  bool stopped = false;
  r.sink->stop([&] { stopped = true; });
  REQUIRE(test::run_until(r.loop, 10s, [&] { return stopped; }));
  r.sink.reset();
  REQUIRE(r.loop.close() == 0);
  CHECK(r.peer.stat("signature_failures") == 2);  // the first listing and the probe's
}

TEST_CASE("datahub sink: TUPLE records follow the schema and bad values are rejected",
          "[unit][datahub]") {
  test::DataHubPeer::Options o;
  o.record_type = "tuple";
  o.schema = "uid:bigint,role:string,line:string,t:timestamp";
  Rig r(o);
  r.config.record_type = DataHubConfig::RecordType::tuple;
  r.config.fields = {
      {"uid", datahub::FieldKind::bigint, datahub::TupleField::From::field, "uid"},
      {"role", datahub::FieldKind::string, datahub::TupleField::From::field, "role"},
      {"line", datahub::FieldKind::string, datahub::TupleField::From::body, ""},
      {"t", datahub::FieldKind::timestamp, datahub::TupleField::From::event_time, ""}};
  r.make();
  Batch b;
  b.add("first", 1'750'000'000'000'000'000, 1);
  b.add_field("uid", "148952381", FieldType::integer);
  b.add_field("role", "none", FieldType::string);
  b.add("second", 1'750'000'000'001'000'000, 2);
  b.add_field("uid", "not-a-number", FieldType::string);
  b.add("third", 1'750'000'000'002'000'000, 3);
  b.add_field("uid", "7", FieldType::integer);
  auto id = r.deliver(std::move(b));
  const DeliveryResult& res = r.wait(id);
  REQUIRE(res.is_reject());
  CHECK(res.rejected == std::vector<std::uint32_t>{1});
  CHECK(res.reason == "field 'uid' (bigint): not a 64-bit integer");
  const auto recs = r.peer.records();
  REQUIRE(recs.size() == 2);
  CHECK(recs[0] == R"(["148952381","none","first","1750000000000000"])");
  CHECK(recs[1] == R"(["7",null,"third","1750000000002000"])");
  CHECK(r.peer.stat("malformed") == 0);
  r.finish();
}

TEST_CASE("datahub sink: destroyed with bodies on the threadpool and requests out never calls back",
          "[unit][datahub]") {
  Rig r;
  r.config.compression = http::Compression::deflate;
  r.make();
  auto warm = r.deliver(test::make_batch(1, "w-"));
  CHECK(r.wait(warm).is_ok());
  for (int i = 0; i < 4; ++i) r.deliver(test::make_batch(500, "event-", 500 * i));
  r.loop.run_once();
  r.sink.reset();  // compression jobs queued or running, maybe requests out
  test::run_until(r.loop, 300ms, [] { return false; });
  REQUIRE(r.loop.close() == 0);
  CHECK(r.answers.count.size() == 1);  // only the warm-up batch was ever answered
}

TEST_CASE("datahub sink: a shard key sends equal keys to the same shard by MD5 range",
          "[unit][datahub]") {
  test::DataHubPeer::Options o;
  o.shards = 4;
  Rig r(o);
  r.config.shard_key = DataHubConfig::ShardKey::field;
  r.config.shard_key_name = "uid";
  r.make();
  Batch b;
  for (int i = 0; i < 40; ++i) {
    b.add("u" + std::to_string(i % 5) + "-" + std::to_string(i), 0, static_cast<std::uint64_t>(i));
    b.add_field("uid", "user-" + std::to_string(i % 5), FieldType::string);
  }
  auto id = r.deliver(std::move(b));
  CHECK(r.wait(id).is_ok());
  const auto recs = r.peer.records();
  const auto shards = r.peer.shards();
  REQUIRE(recs.size() == 40);
  std::map<std::string, std::set<std::string>> shard_of;  // "uN" -> shards seen
  for (std::size_t i = 0; i < recs.size(); ++i) shard_of[recs[i].substr(0, 2)].insert(shards[i]);
  REQUIRE(shard_of.size() == 5);
  for (const auto& [key, s] : shard_of) CHECK(s.size() == 1);
  // MD5("user-42") starts 7631..., in the second quarter of the hash space: shard "1" of 4.
  CHECK(
      datahub::shard_for_hash(
          {{"0", "ACTIVE", "00000000000000000000000000000000", "40000000000000000000000000000000"},
           {"1", "ACTIVE", "40000000000000000000000000000000", "80000000000000000000000000000000"},
           {"2", "ACTIVE", "80000000000000000000000000000000", "C0000000000000000000000000000000"},
           {"3", "ACTIVE", "C0000000000000000000000000000000", "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"}},
          datahub::hash_key("user-42")) == 1);
  r.finish();
}

TEST_CASE("datahub sink: NoSuchTopic halts and a passing probe resumes sending",
          "[unit][datahub]") {
  Rig r;
  r.make();
  REQUIRE(r.peer.control(R"({"status_next": [404]})"));  // the first listing: NoSuchTopic
  auto id = r.deliver(test::make_batch(3));
  const DeliveryResult& res = r.wait(id);
  REQUIRE(res.is_retry());
  CHECK(res.reason == "listing shards: HTTP 404 NoSuchTopic: injected");
  CHECK(r.metric("sluice_datahub_halts_total") == 1);
  struct P final : ProbeListener {
    int calls = 0;
    bool healthy = false;
    void on_probed(Sink&, bool h) noexcept override {
      ++calls;
      healthy = h;
    }
  } probe;
  REQUIRE(r.sink->probe(probe));  // the topic exists now
  REQUIRE(test::run_until(r.loop, 10s, [&] { return probe.calls == 1; }));
  CHECK(probe.healthy);
  id = r.deliver(test::make_batch(3));
  CHECK(r.wait(id).is_ok());
  CHECK(as_set(r.peer.records()) == expected_bodies(3));
  r.finish();
}

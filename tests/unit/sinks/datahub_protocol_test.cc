#include "sinks/datahub/datahub_protocol.h"

#include <toml++/toml.h>

#include <catch2/catch.hpp>
#include <map>
#include <random>

#include "sinks/datahub/datahub_records.h"
#include "sinks/datahub/datahub_sink.h"

using namespace sluice;
using namespace sluice::sinks;
using namespace sluice::sinks::datahub;

namespace {

std::string b64(std::string_view s) {
  std::string out;
  append_base64(out, s);
  return out;
}

std::optional<DataHubConfig> parse_datahub(std::string_view text, std::vector<std::string>& out) {
  static toml::table doc;  // the node refers into it
  doc = toml::parse(text, std::string_view("inline.toml"));
  ConfigNode node(*doc["sinks"]["dh"].as_table(), "sinks.dh", "inline.toml");
  ConfigErrors errors;
  auto c = DataHubConfig::parse(node, errors);
  for (const auto& e : errors) out.push_back(e.str());
  return c;
}

constexpr std::string_view kBase = R"([sinks.dh]
endpoint = "http://127.0.0.1:9"
project = "weblogs"
topic = "events"
access_id = "id"
access_key = "secret-value-123"
)";

}  // namespace

TEST_CASE("datahub: base64 is RFC 4648's standard padded alphabet", "[unit][datahub]") {
  CHECK(b64("") == "");
  CHECK(b64("f") == "Zg==");
  CHECK(b64("fo") == "Zm8=");
  CHECK(b64("foo") == "Zm9v");
  CHECK(b64("foob") == "Zm9vYg==");
  CHECK(b64("fooba") == "Zm9vYmE=");
  CHECK(b64("foobar") == "Zm9vYmFy");
  CHECK(b64(std::string("\xff\xfe\x00\x01", 4)) == "//4AAQ==");
}

TEST_CASE("datahub: Date is RFC 1123 in GMT", "[unit][datahub]") {
  CHECK(rfc1123_date(1136214245) == "Mon, 02 Jan 2006 15:04:05 GMT");
  CHECK(rfc1123_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
  CHECK(rfc1123_date(951782400) == "Tue, 29 Feb 2000 00:00:00 GMT");
}

// The expected signatures were computed apart from this code, with python3's hmac and hashlib:
// base64.b64encode(hmac.new(b"key", s.encode(), hashlib.sha1).digest()).
TEST_CASE("datahub: the string to sign and its HMAC-SHA1 follow PROTOCOLS 3.3", "[unit][datahub]") {
  const std::string date = "Mon, 02 Jan 2006 15:04:05 GMT";
  // Headers in any order and case: only x-datahub-* ones are signed, lower-cased and sorted.
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"X-Datahub-Content-Raw-Size", "1234"},
      {"User-Agent", "sluice"},
      {"x-datahub-client-version", "1.1"},
      {"Content-Encoding", "deflate"}};
  const std::string s = string_to_sign("POST", "application/json", date, headers,
                                       "/projects/weblogs/topics/events/shards");
  CHECK(s ==
        "POST\napplication/json\nMon, 02 Jan 2006 15:04:05 GMT\n"
        "x-datahub-client-version:1.1\nx-datahub-content-raw-size:1234\n"
        "/projects/weblogs/topics/events/shards");
  CHECK(signature("key", s) == "M9WMY84dJL5oAwSQWYTzUwI+SB8=");
  CHECK(authorization("myid", signature("key", s)) == "DATAHUB myid:M9WMY84dJL5oAwSQWYTzUwI+SB8=");

  // The sink's own header set for a GET: Content-Type, Date, client version, Authorization.
  DataHubConfig c;
  c.access_id = "myid";
  c.access_key = Secret("key", "inline");
  const auto h =
      DataHubSink::signed_headers(c, "GET", "/projects/weblogs/topics/events/shards", date, {});
  REQUIRE(h.size() == 4);
  CHECK(h[0] == std::pair<std::string, std::string>{"Content-Type", "application/json"});
  CHECK(h[1] == std::pair<std::string, std::string>{"Date", date});
  CHECK(h[2] == std::pair<std::string, std::string>{"x-datahub-client-version", "1.1"});
  CHECK(h[3] == std::pair<std::string, std::string>{"Authorization",
                                                    "DATAHUB myid:hViZOee40uRZcQu927O8+2x0jZk="});
  // With an STS token, it is one more signed x-datahub- header (python3 hmac, as above).
  c.security_token = Secret("tok", "inline");
  const auto t =
      DataHubSink::signed_headers(c, "GET", "/projects/weblogs/topics/events/shards", date, {});
  REQUIRE(t.size() == 5);
  CHECK(t[3] == std::pair<std::string, std::string>{"x-datahub-security-token", "tok"});
  CHECK(t[4].second == "DATAHUB myid:0IgqC1tklguiDP7IQaD/n86NIls=");
}

TEST_CASE("datahub: BLOB bodies carry the body in base64 with one record per event",
          "[unit][datahub]") {
  Batch b;
  b.add("hello", 0, 1);
  b.add("a\"b\n", 0, 2);
  BodyWriter w;
  w.begin();
  w.add_blob("0", b[0].body());
  w.add_blob("1", b[1].body());
  CHECK(w.records() == 2);
  CHECK(w.finish() == R"({"Action":"pub","Records":[{"ShardId":"0","Data":"aGVsbG8="},)"
                      R"({"ShardId":"1","Data":"YSJiCg=="}]})");
}

TEST_CASE("datahub: TUPLE values take the text forms of each type", "[unit][datahub]") {
  Batch b;
  b.add("the body", 1'700'000'000'123'456'789, 1);
  b.add_field("uid", "148952381", FieldType::integer);
  b.add_field("score", "2.5", FieldType::floating);
  b.add_field("ok", "true", FieldType::boolean);
  b.add_field("role", "no\"ne", FieldType::string);
  b.add_field("small", "12", FieldType::string);
  b.add_field("gone", "", FieldType::null);
  b.add_field("obj", R"({"a":1})", FieldType::json);
  std::vector<TupleField> schema = {
      {"uid", FieldKind::bigint, TupleField::From::field, "uid"},
      {"score", FieldKind::double_, TupleField::From::field, "score"},
      {"ok", FieldKind::boolean, TupleField::From::field, "ok"},
      {"role", FieldKind::string, TupleField::From::field, "role"},
      {"small", FieldKind::tinyint, TupleField::From::field, "small"},
      {"gone", FieldKind::string, TupleField::From::field, "gone"},
      {"missing", FieldKind::bigint, TupleField::From::field, "missing"},
      {"obj", FieldKind::json, TupleField::From::field, "obj"},
      {"line", FieldKind::string, TupleField::From::body, ""},
      {"t", FieldKind::timestamp, TupleField::From::event_time, ""}};
  BodyWriter w;
  w.begin();
  std::string err;
  REQUIRE(w.add_tuple("0", schema, b[0], err));
  CHECK(w.finish() ==
        R"({"Action":"pub","Records":[{"ShardId":"0","Data":["148952381","2.5","true","no\"ne",)"
        R"("12",null,null,"{\"a\":1}","the body","1700000000123456"]}]})");
}

TEST_CASE("datahub: a TUPLE value without a text form of its type is refused with its field",
          "[unit][datahub]") {
  Batch b;
  b.add("x", 0, 1);
  b.add_field("uid", "abc", FieldType::string);
  b.add_field("big", "300", FieldType::integer);
  b.add_field("flag", "yes", FieldType::string);
  b.add_field("num", "true", FieldType::boolean);
  auto one = [&](TupleField f) {
    BodyWriter w;
    w.begin();
    std::string err;
    const bool ok = w.add_tuple("0", {f}, b[0], err);
    CHECK(w.records() == (ok ? 1U : 0U));
    return ok ? std::string("ok") : err;
  };
  CHECK(one({"uid", FieldKind::bigint, TupleField::From::field, "uid"}) ==
        "field 'uid' (bigint): not a 64-bit integer");
  CHECK(one({"big", FieldKind::tinyint, TupleField::From::field, "big"}) ==
        "field 'big' (tinyint): not an 8-bit integer");
  CHECK(one({"big", FieldKind::smallint, TupleField::From::field, "big"}) == "ok");
  CHECK(one({"flag", FieldKind::boolean, TupleField::From::field, "flag"}) ==
        "field 'flag' (boolean): not true or false");
  CHECK(one({"num", FieldKind::double_, TupleField::From::field, "num"}) ==
        "field 'num' (double): not a number");
  CHECK(one({"uid", FieldKind::string, TupleField::From::field, "uid"}) == "ok");
}

TEST_CASE("datahub: answers and errors and shard lists are parsed", "[unit][datahub]") {
  auto ok = parse_put_result(R"({"FailedRecordCount":0,"FailedRecords":[]})");
  REQUIRE(ok);
  CHECK(ok->empty());
  auto some = parse_put_result(
      R"({"FailedRecordCount":2,"FailedRecords":[{"Index":1,"ErrorCode":"LimitExceeded",)"
      R"("ErrorMessage":"slow down"},{"ErrorMessage":"m","Index":3,"ErrorCode":"MalformedRecord"}]})");
  REQUIRE(some);
  REQUIRE(some->size() == 2);
  CHECK((*some)[0].index == 1);
  CHECK((*some)[0].code == "LimitExceeded");
  CHECK((*some)[0].message == "slow down");
  CHECK((*some)[1].index == 3);
  CHECK((*some)[1].code == "MalformedRecord");
  CHECK_FALSE(parse_put_result("not json"));
  CHECK_FALSE(parse_put_result(R"({"FailedRecords":[{"ErrorCode":"X"}]})"));  // no Index

  auto e = parse_error(R"({"ErrorCode":"Unauthorized","ErrorMessage":"bad sig","RequestId":"r"})");
  REQUIRE(e);
  CHECK(e->code == "Unauthorized");
  CHECK(e->message == "bad sig");
  CHECK_FALSE(parse_error("<html>502</html>"));

  auto shards = parse_shards(
      R"({"Shards":[{"ShardId":"0","State":"CLOSED","BeginHashKey":"00000000000000000000000000000000",)"
      R"("EndHashKey":"ffffffffffffffffffffffffffffffff"},{"ShardId":"1","State":"ACTIVE",)"
      R"("BeginHashKey":"00000000000000000000000000000000","EndHashKey":"7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"},)"
      R"({"ShardId":"2","State":"ACTIVE","BeginHashKey":"7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",)"
      R"("EndHashKey":"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"}],"Protocol":"http1.1"})");
  REQUIRE(shards);
  REQUIRE(shards->size() == 3);
  CHECK((*shards)[0].end_hash_key == "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF");
  const auto active = active_shards(*shards);
  REQUIRE(active.size() == 2);
  CHECK(active[0].id == "1");
  CHECK(active[1].id == "2");
  // MD5("user-42") = 7631BC07... (python3 hashlib), below 7FFF...: the first active shard.
  CHECK(hash_key("user-42") == "7631BC07A1CC8FCD56E70FC6B2FB4A43");
  CHECK(shard_for_hash(active, hash_key("user-42")) == 0);
  CHECK(shard_for_hash(active, "80000000000000000000000000000000") == 1);
  CHECK(shard_for_hash(active, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF") == 1);
}

TEST_CASE("datahub: error codes are classified as PROTOCOLS 3.4 says", "[unit][datahub]") {
  const std::map<std::string, CodeClass> expected = {{"LimitExceeded", CodeClass::retry},
                                                     {"InternalServerError", CodeClass::retry},
                                                     {"ConsumerGroupInProcess", CodeClass::retry},
                                                     {"SomethingNew", CodeClass::retry},
                                                     {"", CodeClass::retry},
                                                     {"InvalidShardOperation", CodeClass::reroute},
                                                     {"MalformedRecord", CodeClass::reject},
                                                     {"InvalidParameter", CodeClass::reject},
                                                     {"InvalidSchema", CodeClass::reject},
                                                     {"Unauthorized", CodeClass::halt},
                                                     {"NoPermission", CodeClass::halt},
                                                     {"NoSuchTopic", CodeClass::halt},
                                                     {"NoSuchProject", CodeClass::halt},
                                                     {"NoSuchShard", CodeClass::halt},
                                                     {"ResourceNotFound", CodeClass::halt},
                                                     {"OperationDenied", CodeClass::halt}};
  for (const auto& [code, cls] : expected) {
    INFO(code);
    CHECK(classify_code(code) == cls);
  }
}

TEST_CASE("datahub: only the FailedRecords of an answer become pending again", "[unit][datahub]") {
  Batch b;
  for (int i = 0; i < 6; ++i) b.add("e" + std::to_string(i), 0, 100 + i);
  DeliveryTracker t;
  t.start(b, nullptr);
  std::vector<std::uint32_t> sent;
  t.take_pending(4, sent);
  CHECK(sent == std::vector<std::uint32_t>{0, 1, 2, 3});
  CHECK(t.in_flight() == 4);
  CHECK(t.pending() == 2);
  // Positions 1 and 3 of the request (records 1 and 3) fail; one retryable, one for good.
  const ApplyCounts c =
      t.apply(sent, {{1, "LimitExceeded", "slow"}, {3, "MalformedRecord", "bad"}});
  CHECK(c.accepted == 2);
  CHECK(c.retry == 1);
  CHECK(c.rejected == 1);
  CHECK(t.state(0) == DeliveryTracker::State::accepted);
  CHECK(t.state(1) == DeliveryTracker::State::pending);
  CHECK(t.state(3) == DeliveryTracker::State::rejected);
  CHECK(t.rejected() == std::vector<std::uint32_t>{3});
  CHECK(t.reject_reason() == "MalformedRecord: bad");
  sent.clear();
  t.take_pending(10, sent);
  CHECK(sent == std::vector<std::uint32_t>{1, 4, 5});  // record 1 again, never 0 or 2
  t.apply(sent, {{2, "InvalidShardOperation", "sealed"}});
  sent.clear();
  t.take_pending(10, sent);
  CHECK(sent == std::vector<std::uint32_t>{5});
  t.apply(sent, {});
  CHECK(t.finished());
  CHECK(t.accepted() == 5);
}

TEST_CASE("datahub: a batch handed back after Retry skips what was accepted (ledger)",
          "[unit][datahub]") {
  Batch b;
  for (int i = 0; i < 5; ++i) b.add("e" + std::to_string(i), 0, 500 + i);
  AcceptedLedger ledger(100);
  DeliveryTracker t;
  t.start(b, &ledger);
  std::vector<std::uint32_t> sent;
  t.take_pending(5, sent);
  t.apply(sent, {{0, "InternalServerError", ""}, {4, "InternalServerError", ""}});
  t.spill(b, ledger);  // the sink answers Retry now
  CHECK(ledger.size() == 3);
  // The group rolls back and takes again: the same events, maybe with more behind them.
  Batch again;
  for (int i = 0; i < 7; ++i) again.add("e" + std::to_string(i), 0, 500 + i);
  DeliveryTracker t2;
  t2.start(again, &ledger);
  CHECK(t2.accepted() == 3);
  CHECK(ledger.empty());
  sent.clear();
  t2.take_pending(10, sent);
  CHECK(sent == std::vector<std::uint32_t>{0, 4, 5, 6});
}

TEST_CASE("datahub: the ledger is bounded and forgets the oldest first", "[unit][datahub]") {
  AcceptedLedger ledger(3);
  for (std::uint64_t id = 1; id <= 5; ++id) ledger.add(id);
  CHECK(ledger.size() == 3);
  CHECK(ledger.evicted() == 2);
  CHECK_FALSE(ledger.take(1));
  CHECK_FALSE(ledger.take(2));
  CHECK(ledger.take(3));
  CHECK_FALSE(ledger.take(3));
  for (std::uint64_t id = 10; id < 1000; ++id) {
    ledger.add(id);
    ledger.take(id);
  }
  CHECK(ledger.size() == 2);  // 4 and 5
  CHECK(ledger.take(4));
  CHECK(ledger.take(5));
}

// Any mix of FailedRecords over many rounds: every record is accepted exactly once and is never
// in a request after it was accepted.
TEST_CASE("datahub: FailedRecords bookkeeping sends each accepted record exactly once",
          "[unit][datahub]") {
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    Batch b;
    const int n = 1 + static_cast<int>(rng() % 300);
    for (int i = 0; i < n; ++i) b.add("e", 0, static_cast<std::uint64_t>(i));
    AcceptedLedger ledger(10'000);
    std::vector<int> accepted(static_cast<std::size_t>(n), 0);
    std::vector<int> sent_after_accept(static_cast<std::size_t>(n), 0);
    DeliveryTracker t;
    t.start(b, &ledger);
    int requests = 0;
    while (!t.finished()) {
      std::vector<std::uint32_t> sent;
      t.take_pending(1 + rng() % 64, sent);
      std::vector<FailedRecord> failed;
      for (std::uint32_t pos = 0; pos < sent.size(); ++pos) {
        if (accepted[sent[pos]] > 0) ++sent_after_accept[sent[pos]];
        if (rng() % 3 == 0) {
          failed.push_back({pos, rng() % 2 ? "LimitExceeded" : "InvalidShardOperation", ""});
        }
      }
      if (rng() % 10 == 0) {  // a whole request lost: at-least-once, nothing was accepted
        t.fail_all(sent);
      } else {
        std::vector<bool> bad(sent.size(), false);
        for (const auto& f : failed) bad[f.index] = true;
        for (std::size_t pos = 0; pos < sent.size(); ++pos) {
          if (!bad[pos]) ++accepted[sent[pos]];
        }
        t.apply(sent, failed);
      }
      if (rng() % 8 == 0 && !t.finished()) {  // Retry: the batch comes back
        t.spill(b, ledger);
        t = DeliveryTracker();
        t.start(b, &ledger);
      }
      REQUIRE(++requests < 10'000);
    }
    for (int i = 0; i < n; ++i) {
      INFO("round " << round << " record " << i);
      CHECK(accepted[static_cast<std::size_t>(i)] == 1);
      CHECK(sent_after_accept[static_cast<std::size_t>(i)] == 0);
    }
    CHECK(ledger.empty());
  }
}

TEST_CASE("datahub config: defaults and tuple fields and secrets", "[unit][datahub][config]") {
  std::vector<std::string> errors;
  auto c = parse_datahub(kBase, errors);
  REQUIRE(c.has_value());
  CHECK(c->record_type == DataHubConfig::RecordType::blob);
  CHECK(c->access_key.reveal() == "secret-value-123");
  CHECK(c->max_records_per_request == 1000);
  CHECK(c->compression == http::Compression::none);
  c = parse_datahub(std::string(kBase) + R"(record_type = "tuple"
fields = ["line", { name = "uid", type = "BIGINT" }, { name = "t", type = "timestamp", from = "timestamp" }, { name = "raw", from = "body" }]
compression = "deflate"
shard_key = "field.uid"
)",
                    errors);
  REQUIRE(c.has_value());
  REQUIRE(c->fields.size() == 4);
  CHECK(c->fields[0].name == "line");
  CHECK(c->fields[0].source == "line");
  CHECK(c->fields[1].kind == FieldKind::bigint);
  CHECK(c->fields[2].from == TupleField::From::event_time);
  CHECK(c->fields[3].from == TupleField::From::body);
  CHECK(c->compression == http::Compression::deflate);
  CHECK(c->shard_key == DataHubConfig::ShardKey::field);
  CHECK(c->shard_key_name == "uid");
}

TEST_CASE("datahub config: bad keys name file and line and column", "[unit][datahub][config]") {
  std::vector<std::string> errors;
  auto c = parse_datahub(R"([sinks.dh]
endpoint = "ftp://x"
project = "1bad"
topic = "events"
access_key = { env = "SLUICE_TEST_UNSET_VARIABLE_X" }
record_type = "tuple"
fields = [{ name = "uid", type = "long" }, 5, { name = "x", from = "header.h" }]
shard_key = "uid"
compression = "zstd"
max_records_per_request = 0
)",
                         errors);
  CHECK_FALSE(c.has_value());
  for (const auto& e : errors) UNSCOPED_INFO(e);
  const std::vector<std::string> expected = {
      R"(inline.toml:2:12: sinks.dh.endpoint: "ftp://x" is not an http:// or https:// URL)",
      R"(inline.toml:3:11: sinks.dh.project: "1bad" is not a DataHub project name (a letter, then letters, digits or '_', 3 to 31 characters))",
      "inline.toml:1:1: sinks.dh: missing required key 'access_id'",
  };
  for (const auto& e : expected) {
    INFO(e);
    CHECK(std::find(errors.begin(), errors.end(), e) != errors.end());
  }
  auto has = [&](std::string_view part) {
    for (const auto& e : errors) {
      if (e.find(part) != std::string::npos) return true;
    }
    return false;
  };
  CHECK(has("sinks.dh.access_key"));
  CHECK(
      has("inline.toml:5:22: sinks.dh.access_key.env: environment variable "
          "'SLUICE_TEST_UNSET_VARIABLE_X' is not set"));
  CHECK(errors.size() == 10);
  CHECK(has(R"(inline.toml:7:34: sinks.dh.fields[0].type: "long" is not a DataHub type)"));
  CHECK(has("sinks.dh.fields[1]: expected a field name or a table { name, type, from }"));
  CHECK(has(R"(sinks.dh.fields[2].from: "header.h" is not "field.NAME", "body" or "timestamp")"));
  CHECK(has(R"(inline.toml:8:13: sinks.dh.shard_key: "uid" is not "field.NAME" or "header.NAME")"));
  CHECK(has("inline.toml:9:15: sinks.dh.compression:"));
  CHECK(has("inline.toml:10:27: sinks.dh.max_records_per_request: must be in [1, 10000], got 0"));
  errors.clear();
  c = parse_datahub(std::string(kBase) + "fields = [\"a\"]\n", errors);
  CHECK_FALSE(c.has_value());
  REQUIRE(errors.size() == 1);
  CHECK(
      errors[0] ==
      R"(inline.toml:7:1: sinks.dh.fields: only for record_type = "tuple" (BLOB records are the body))");
  errors.clear();
  c = parse_datahub(std::string(kBase) + "record_type = \"tuple\"\n", errors);
  CHECK_FALSE(c.has_value());
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] ==
        "inline.toml:1:1: sinks.dh: missing required key 'fields' (record_type = \"tuple\" needs "
        "the topic's schema, in order)");
  // No error ever carries the secret's value.
  errors.clear();
  c = parse_datahub(std::string(kBase) + "topik = 1\nmax_in_flight = 0\n", errors);
  CHECK_FALSE(c.has_value());
  for (const auto& e : errors) CHECK(e.find("secret-value-123") == std::string::npos);
}

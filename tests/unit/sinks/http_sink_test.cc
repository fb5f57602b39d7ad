#include "sinks/http/http_sink.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lib/codec/json.h"
#include "tests/support/http_peer.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::sinks;
using namespace std::chrono_literals;

namespace {

std::optional<HttpSinkConfig> parse_http(std::string_view text, std::vector<std::string>& out) {
  static toml::table doc;  // the node refers into it
  doc = toml::parse(text, std::string_view("inline.toml"));
  ConfigNode node(*doc["sinks"]["h"].as_table(), "sinks.h", "inline.toml");
  ConfigErrors errors;
  auto c = HttpSinkConfig::parse(node, errors);
  for (const auto& e : errors) out.push_back(e.str());
  return c;
}

struct Answers final : DeliveryListener {
  std::map<std::uint64_t, DeliveryResult> results;
  void on_delivered(DeliveryId id, const DeliveryResult& r) noexcept override {
    results[id.value] = r;
  }
};

struct Probes final : ProbeListener {
  std::vector<bool> results;
  void on_probed(Sink&, bool healthy) noexcept override { results.push_back(healthy); }
};

// A sink on its own loop, delivering batches made by the test.
struct Rig {
  Loop loop;
  MetricsRegistry metrics;
  SinkContext ctx{loop, metrics, "hook", "http", "/tmp"};
  std::unique_ptr<HttpSink> sink;
  std::deque<Batch> batches;
  Answers answers;

  explicit Rig(const HttpSinkConfig& c) {
    auto s = HttpSink::create(c, ctx);
    REQUIRE(s);
    sink = std::move(*s);
  }
  DeliveryResult deliver(Batch b) {
    batches.push_back(std::move(b));
    const std::uint64_t id = batches.size();
    sink->deliver(batches.back(), DeliveryId{id}, answers);
    REQUIRE(test::run_until(loop, 15s, [&] { return answers.results.count(id) == 1; }));
    return answers.results[id];
  }
  double metric(const std::string& name, Labels extra = {}) {
    Labels l = ctx.labels();
    l.insert(l.end(), extra.begin(), extra.end());
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
  }
};

Batch rich_batch() {
  Batch b;
  b.add("hello \"world\"\nsecond line", 1'700'000'000'123'456'789, 0xabcdef);
  b.add_header("host", "web01");
  b.add_field("uid", "42", FieldType::integer);
  b.add("plain", 1'700'000'001'000'000'000, 7);
  return b;
}

}  // namespace

TEST_CASE("http sink config: defaults", "[unit][sinks][http][config]") {
  std::vector<std::string> errors;
  auto c = parse_http(R"([sinks.h]
url = "http://127.0.0.1:8080/in"
)",
                      errors);
  REQUIRE(c.has_value());
  CHECK(errors.empty());
  CHECK(c->format == HttpBodyFormat::ndjson);
  CHECK(c->method == http::Method::post);
  CHECK(c->compression == http::Compression::none);
  CHECK(c->idempotency_header == "Idempotency-Key");
  CHECK(c->request_timeout == 5s);
  CHECK(c->connect_timeout == 5s);
  CHECK(c->max_in_flight == 4);
  CHECK(c->auth_token.empty());
  CHECK(c->tls.verify);
  CHECK(c->tls.min_version == "1.2");
}

TEST_CASE("http sink config: every key is read and the request timeout follows delivery_timeout",
          "[unit][sinks][http][config]") {
  std::vector<std::string> errors;
  auto c = parse_http(R"([sinks.h]
url = "https://hooks.example.com/in"
format = "json"
method = "PUT"
compression = "gzip"
compression_level = 9
auth_token = "s3cret"
idempotency_header = "X-Batch-Id"
delivery_timeout = "7s"
connect_timeout = "1s"
flush_timeout = "2s"
max_in_flight = 8
probe_url = "https://hooks.example.com/health"
probe_method = "GET"
proxy = "http://proxy:3128"
http2 = false
headers = { "X-Tenant" = "a", "Content-Type" = "application/vnd.x+json" }
tls = { verify = false, min_version = "1.3", ca_dir = "/etc/ssl/certs" }
)",
                      errors);
  REQUIRE(c.has_value());
  CHECK(errors.empty());
  CHECK(c->format == HttpBodyFormat::json);
  CHECK(c->method == http::Method::put);
  CHECK(c->compression == http::Compression::gzip);
  CHECK(c->compression_level == 9);
  CHECK(c->auth_token.reveal() == "s3cret");
  CHECK(c->auth_token.origin() == "inline");
  CHECK(c->idempotency_header == "X-Batch-Id");
  CHECK(c->request_timeout == 7s);
  CHECK(c->connect_timeout == 1s);
  CHECK(c->flush_timeout == 2s);
  CHECK(c->max_in_flight == 8);
  CHECK(c->probe_url == "https://hooks.example.com/health");
  CHECK(c->probe_method == http::Method::get);
  CHECK(c->proxy == "http://proxy:3128");
  CHECK_FALSE(c->http2);
  CHECK_FALSE(c->tls.verify);
  CHECK(c->tls.min_version == "1.3");
  CHECK(c->tls.ca_dir == "/etc/ssl/certs");
  REQUIRE(c->headers.size() == 2);
}

TEST_CASE("http sink config: bad values name file line and key", "[unit][sinks][http][config]") {
  std::vector<std::string> errors;
  auto c = parse_http(R"([sinks.h]
url = "ftp://x/y"
format = "xml"
compression = "brotli"
max_in_flight = 0
headers = { "Content-Length" = "5", "X Bad" = "v", "X-Nl" = "a\nb" }
probe_method = "POST"
urll = "x"
)",
                      errors);
  CHECK_FALSE(c.has_value());
  REQUIRE(errors.size() == 9);
  CHECK(errors[0] ==
        "inline.toml:2:7: sinks.h.url: \"ftp://x/y\" is not an http:// or https:// URL");
  CHECK(errors[1] ==
        "inline.toml:3:10: sinks.h.format: must be one of \"json\", \"ndjson\", \"raw\", got "
        "\"xml\"");
  CHECK(errors[2] ==
        "inline.toml:4:15: sinks.h.compression: must be one of \"none\", \"gzip\", \"zstd\", got "
        "\"brotli\"");
  CHECK(errors[3] == "inline.toml:5:17: sinks.h.max_in_flight: must be in [1, 64], got 0");
  CHECK(errors[4] ==
        "inline.toml:7:16: sinks.h.probe_method: must be one of \"HEAD\", \"GET\", got \"POST\"");
  // The headers, in the table's order (toml++ keeps keys sorted).
  CHECK(errors[5] == "inline.toml:6:13: sinks.h.headers.Content-Length: is set by the sink");
  CHECK(errors[6] == "inline.toml:6:37: sinks.h.headers.X Bad: is not a valid header name");
  CHECK(errors[7] ==
        "inline.toml:6:61: sinks.h.headers.X-Nl: a header value must not contain a line break");
  CHECK(errors[8] == "inline.toml:8:1: sinks.h.urll: unknown key (did you mean 'url'?)");
}

TEST_CASE("http sink config: Authorization header and auth_token conflict",
          "[unit][sinks][http][config]") {
  std::vector<std::string> errors;
  auto c = parse_http(R"([sinks.h]
url = "http://127.0.0.1/in"
auth_token = "t"
headers = { Authorization = "Basic eA==" }
)",
                      errors);
  CHECK_FALSE(c.has_value());
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] == "inline.toml:4:13: sinks.h.headers.Authorization: conflicts with auth_token");
}

TEST_CASE("http sink config: auth_token from a missing env var or file",
          "[unit][sinks][http][config]") {
  ::unsetenv("SLUICE_TEST_NO_SUCH_VAR");
  std::vector<std::string> errors;
  auto c = parse_http(R"([sinks.h]
url = "http://127.0.0.1/in"
auth_token = { env = "SLUICE_TEST_NO_SUCH_VAR" }
)",
                      errors);
  CHECK_FALSE(c.has_value());
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] ==
        "inline.toml:3:22: sinks.h.auth_token.env: environment variable "
        "'SLUICE_TEST_NO_SUCH_VAR' is not set");
  errors.clear();
  c = parse_http(R"([sinks.h]
url = "http://127.0.0.1/in"
auth_token = { file = "/nonexistent/token" }
)",
                 errors);
  CHECK_FALSE(c.has_value());
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] ==
        "inline.toml:3:23: sinks.h.auth_token.file: cannot read secret file '/nonexistent/token': "
        "No such file or directory");
}

TEST_CASE("http sink: the json and ndjson bodies are the file sink's json format",
          "[unit][sinks][http]") {
  const Batch b = rich_batch();
  std::string file_json;
  codec::encode_batch(b, codec::OutputFormat::json, file_json);
  std::string ndjson, json, raw;
  HttpSink::encode(b, HttpBodyFormat::ndjson, ndjson);
  HttpSink::encode(b, HttpBodyFormat::json, json);
  HttpSink::encode(b, HttpBodyFormat::raw, raw);
  CHECK(ndjson == file_json);
  const auto nl = file_json.find('\n');
  CHECK(json == "[" + file_json.substr(0, nl) + "," +
                    file_json.substr(nl + 1, file_json.size() - nl - 2) + "]");
  CHECK(json ==
        "[{\"timestamp\":\"2023-11-14T22:13:20.123456789Z\",\"id\":\"0000000000abcdef\","
        "\"headers\":{\"host\":\"web01\"},\"fields\":{\"uid\":42},\"body\":\"hello "
        "\\\"world\\\"\\nsecond line\"},{\"timestamp\":\"2023-11-14T22:13:21.000000000Z\","
        "\"id\":\"0000000000000007\",\"headers\":{},\"fields\":{},\"body\":\"plain\"}]");
  CHECK(raw == "hello \"world\"\nsecond line\nplain\n");
  std::string empty;
  HttpSink::encode(Batch{}, HttpBodyFormat::json, empty);
  CHECK(empty == "[]");
}

TEST_CASE("http sink config: tls.server_name is refused", "[unit][sinks][http][config]") {
  std::vector<std::string> errors;
  auto c = parse_http(R"([sinks.h]
type = "http"
url = "https://hooks.example.com/in"
tls = { server_name = "other.example.com" }
)",
                      errors);
  CHECK_FALSE(c.has_value());
  INFO(errors.size() << " errors, the first: " << (errors.empty() ? "" : errors[0]));
  bool named = false;
  for (const auto& e : errors)
    named = named || e.find(
                         "server_name is not supported by the http sink: the URL's host is "
                         "verified") != std::string::npos;
  CHECK(named);
}

TEST_CASE("http sink: the idempotency key is a function of the event ids", "[unit][sinks][http]") {
  const Batch a = test::make_batch(100, "x", 0);
  const Batch same_ids = test::make_batch(100, "other bodies", 0);
  const Batch b = test::make_batch(100, "x", 1);
  const std::string k = HttpSink::idempotency_key(a);
  CHECK(k.size() == 16 + 1 + 3);
  CHECK(k.ends_with("-100"));
  CHECK(HttpSink::idempotency_key(a) == k);
  REQUIRE(a[0].id() == same_ids[0].id());  // make_batch numbers ids from its third argument
  CHECK(HttpSink::idempotency_key(same_ids) == k);
  // Pinned: a receiver that stored a key must see the same key for a resent batch after an upgrade.
  CHECK(k == "aa9db709495f32c3-100");
  CHECK(HttpSink::idempotency_key(b) != k);
}

TEST_CASE("http sink: a batch arrives with its headers token and idempotency key",
          "[unit][sinks][http]") {
  test::HttpPeer peer;
  HttpSinkConfig c;
  c.url = peer.url("/hook");
  c.auth_token = Secret("tok-123", "inline");
  c.headers = {{"X-Tenant", "acme"}};
  Rig r(c);
  const Batch b = test::make_batch(3, "ev-");
  CHECK(r.deliver(b).is_ok());
  CHECK(r.deliver(b).is_ok());  // resent: the same key
  auto reqs = peer.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].method == "POST");
  CHECK(reqs[0].path == "/hook");
  CHECK(reqs[0].header("authorization") == "Bearer tok-123");
  CHECK(reqs[0].header("x-tenant") == "acme");
  CHECK(reqs[0].header("content-type") == "application/x-ndjson");
  CHECK(reqs[0].header("idempotency-key") == HttpSink::idempotency_key(b));
  CHECK(reqs[1].header("idempotency-key") == reqs[0].header("idempotency-key"));
  std::string expected;
  HttpSink::encode(b, HttpBodyFormat::ndjson, expected);
  CHECK(reqs[0].body == expected);
  CHECK(r.metric("sluice_http_sink_requests_total", {{"code", "2xx"}}) == 2);
  CHECK(r.metric("sluice_http_sink_bytes_total", {{"stage", "uncompressed"}}) ==
        2.0 * static_cast<double>(expected.size()));
  CHECK(r.metric("sluice_http_sink_bytes_total", {{"stage", "compressed"}}) ==
        2.0 * static_cast<double>(expected.size()));
  r.finish();
}

TEST_CASE("http sink: gzip and zstd bodies are counted before and after compression",
          "[unit][sinks][http]") {
  test::HttpPeer peer;
  for (auto comp : {http::Compression::gzip, http::Compression::zstd}) {
    HttpSinkConfig c;
    c.url = peer.url();
    c.format = HttpBodyFormat::raw;
    c.compression = comp;
    Rig r(c);
    const Batch b = test::make_batch(500, "a fairly repetitive event body number ");
    CHECK(r.deliver(b).is_ok());
    std::string raw;
    HttpSink::encode(b, HttpBodyFormat::raw, raw);
    const double before = r.metric("sluice_http_sink_bytes_total", {{"stage", "uncompressed"}});
    const double after = r.metric("sluice_http_sink_bytes_total", {{"stage", "compressed"}});
    CHECK(before == static_cast<double>(raw.size()));
    CHECK(after > 0);
    CHECK(after < before / 5);
    auto reqs = peer.requests();
    REQUIRE_FALSE(reqs.empty());
    CHECK(reqs.back().encoding == std::string(http::content_encoding(comp)));
    CHECK(reqs.back().decode_error.empty());
    CHECK(reqs.back().body == raw);
    CHECK(reqs.back().raw_bytes == static_cast<long>(after));
    r.finish();
  }
}

TEST_CASE("http sink: 400 rejects with the body and 503 retries honouring Retry-After",
          "[unit][sinks][http]") {
  test::HttpPeer peer("400:field uid must be an integer,503:2");
  HttpSinkConfig c;
  c.url = peer.url();
  Rig r(c);
  DeliveryResult res = r.deliver(test::make_batch(4));
  CHECK(res.is_reject());
  CHECK(res.reason == "HTTP 400 Bad Request: field uid must be an integer");
  CHECK(res.rejected.empty());  // the whole batch
  CHECK(r.metric("sluice_http_sink_rejects_total") == 1);
  CHECK(r.metric("sluice_http_sink_requests_total", {{"code", "4xx"}}) == 1);

  res = r.deliver(test::make_batch(4));
  CHECK(res.is_retry());
  CHECK(res.reason == "HTTP 503 Service Unavailable: busy (retry after 2s)");
  CHECK(r.metric("sluice_http_sink_requests_total", {{"code", "5xx"}}) == 1);

  // Within the Retry-After the sink answers Retry at once without sending; the probe says no.
  res = r.deliver(test::make_batch(4));
  CHECK(res.is_retry());
  CHECK(res.reason.starts_with("the server asked to retry after "));
  CHECK(peer.stat("requests") == 2);
  CHECK(r.metric("sluice_http_sink_retry_after_total") == 1);
  Probes probes;
  REQUIRE(r.sink->probe(probes));
  REQUIRE(test::run_until(r.loop, 5s, [&] { return probes.results.size() == 1; }));
  CHECK_FALSE(probes.results[0]);
  // Once it passed, batches go again.
  REQUIRE(test::run_until(r.loop, 5s, [&] { return r.deliver(test::make_batch(4)).is_ok(); }));
  CHECK(r.metric("sluice_http_sink_retries_total") >= 2);
  REQUIRE(r.sink->probe(probes));
  REQUIRE(test::run_until(r.loop, 5s, [&] { return probes.results.size() == 2; }));
  CHECK(probes.results[1]);
  r.finish();
}

TEST_CASE(
    "http sink: a 413 halves the request down to the one event too large which alone is "
    "rejected and the learned limit doubles after 64 accepted requests",
    "[unit][sinks][http][split]") {
  test::HttpPeer peer("", 0, {"--max-body", "400"});
  HttpSinkConfig c;
  c.url = peer.url();
  c.format = HttpBodyFormat::raw;
  Rig r(c);
  // 100 bodies of 10 bytes and, at index 37, one of 500: the raw body is about 1,600 bytes.
  Batch b;
  for (std::uint64_t i = 0; i < 100; ++i) {
    b.add(i == 37 ? std::string(500, 'x') : fmt::format("event-{:04}", i), 1, i);
  }
  DeliveryResult res = r.deliver(std::move(b));
  REQUIRE(res.is_reject());
  CHECK(res.rejected == std::vector<std::uint32_t>{37});
  CHECK(res.reason == "HTTP 413 Content Too Large: body larger than 400 bytes");
  CHECK(r.metric("sluice_http_sink_rejects_total") == 1);
  CHECK(r.metric("sluice_http_sink_splits_total") >= 3);
  // Every other event arrived once, in order.
  std::string got;
  for (const test::PeerRequest& q : peer.requests()) {
    if (q.answer == "ok") got += q.body;
  }
  std::string want;
  for (int i = 0; i < 100; ++i) {
    if (i != 37) want += fmt::format("event-{:04}\n", i);
  }
  CHECK(got == want);
  // The limit is half the smallest refused request with more than one event.
  const double limit = r.metric("sluice_http_sink_request_bytes_limit");
  CHECK(limit > 0);
  CHECK(limit <= 400);
  auto refused = [&] {
    long n = 0;
    for (const test::PeerRequest& q : peer.requests()) n += q.answer == "413";
    return n;
  };
  const long refused_before = refused();
  CHECK(refused_before >= 4);  // 100, 50, 25, ... events, then index 37 alone
  // A batch larger than the limit is cut before it is sent: no further 413.
  REQUIRE(r.deliver(test::make_batch(100, "event-")).is_ok());
  CHECK(refused() == refused_before);
  const long requests = peer.stat("requests");
  // After 64 accepted requests (those of that batch count) the limit doubles.
  int accepted = 0;
  while (r.metric("sluice_http_sink_request_bytes_limit") == limit) {
    REQUIRE(r.deliver(test::make_batch(1, "small-")).is_ok());
    REQUIRE(++accepted <= 64);
  }
  CHECK(accepted >= 1);
  CHECK(r.metric("sluice_http_sink_request_bytes_limit") == 2 * limit);
  CHECK(requests > refused_before + 100 / 40);  // the batch of 100 went in several requests
  r.finish();
}

TEST_CASE("http sink: a connection reset and a timeout answer Retry", "[unit][sinks][http]") {
  test::HttpPeer peer("reset,slow:3000");
  HttpSinkConfig c;
  c.url = peer.url();
  c.request_timeout = 300ms;
  Rig r(c);
  DeliveryResult res = r.deliver(test::make_batch(2));
  CHECK(res.is_retry());
  res = r.deliver(test::make_batch(2));
  CHECK(res.is_retry());
  CHECK(res.reason.starts_with("timeout: "));
  CHECK(r.metric("sluice_http_sink_requests_total", {{"code", "error"}}) == 2);
  CHECK(r.deliver(test::make_batch(2)).is_ok());
  CHECK(r.metric("sluice_http_sink_request_seconds") == 3);  // the histogram's count: answers
  r.finish();
}

TEST_CASE("http sink: the probe reads probe_url and wants 2xx", "[unit][sinks][http][probe]") {
  test::HttpPeer peer;
  HttpSinkConfig c;
  c.url = peer.url();
  c.probe_url = peer.url("/health");
  Rig r(c);
  Probes probes;
  REQUIRE(r.sink->probe(probes));
  CHECK_FALSE(r.sink->probe(probes));  // one at a time
  REQUIRE(test::run_until(r.loop, 5s, [&] { return probes.results.size() == 1; }));
  CHECK(probes.results[0]);
  peer.down();
  REQUIRE(r.sink->probe(probes));
  REQUIRE(test::run_until(r.loop, 5s, [&] { return probes.results.size() == 2; }));
  CHECK_FALSE(probes.results[1]);
  CHECK(peer.stat("health") == 2);
  peer.kill();
  REQUIRE(r.sink->probe(probes));
  REQUIRE(test::run_until(r.loop, 5s, [&] { return probes.results.size() == 3; }));
  CHECK_FALSE(probes.results[2]);
  r.finish();
}

TEST_CASE("http sink: cancel answers Retry soon", "[unit][sinks][http]") {
  test::HttpPeer peer("slow:5000");
  HttpSinkConfig c;
  c.url = peer.url();
  c.request_timeout = 30s;
  Rig r(c);
  r.batches.push_back(test::make_batch(2));
  r.sink->deliver(r.batches.back(), DeliveryId{1}, r.answers);
  REQUIRE(test::run_until(r.loop, 5s, [&] { return peer.stat("requests") == 1; }));
  const auto t0 = std::chrono::steady_clock::now();
  r.sink->cancel(DeliveryId{1});
  REQUIRE(test::run_until(r.loop, 5s, [&] { return r.answers.results.size() == 1; }));
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  CHECK(r.answers.results[1].is_retry());
  CHECK(r.answers.results[1].reason == "cancelled");
  r.finish();
}

TEST_CASE("http sink: the token never appears in a log line or reason", "[unit][sinks][http]") {
  test::HttpPeer peer("401:unauthorized");
  HttpSinkConfig c;
  c.url = peer.url();
  c.auth_token = Secret("tok-very-secret", "inline");
  CHECK(fmt::format("{}", c.auth_token) == "<redacted>");
  Rig r(c);
  DeliveryResult res = r.deliver(test::make_batch(1));
  CHECK(res.is_retry());
  CHECK(res.reason == "HTTP 401 Unauthorized: unauthorized");
  CHECK(res.reason.find("tok-very-secret") == std::string::npos);
  r.finish();
}

TEST_CASE("http sink: a redirect, 401, 403, 404 or 407 keeps the batch (Retry), a 400 rejects it",
          "[unit][sinks][http]") {
  // The url or the credentials are wrong, not the events: rejecting would drop or dead-letter
  // every batch until an operator notices.
  for (const char* action : {"301:moved", "307:moved", "401:expired token", "403:forbidden",
                             "404:no such path", "407:proxy auth", "400:bad record"}) {
    INFO(action);
    test::HttpPeer peer(action);
    HttpSinkConfig c;
    c.url = peer.url();
    Rig r(c);
    const DeliveryResult res = r.deliver(test::make_batch(3));
    if (std::string_view(action).substr(0, 3) == "400") {
      CHECK(res.is_reject());
    } else {
      CHECK(res.is_retry());
      CHECK(res.reason.find(std::string_view(action).substr(4)) != std::string::npos);
      CHECK(r.deliver(test::make_batch(3)).is_ok());  // the script is used up: 200
    }
    r.finish();
  }
}

TEST_CASE("http sink config: a header value may come from the environment",
          "[unit][sinks][http][config]") {
  ::setenv("SLUICE_TEST_API_KEY", "k-123", 1);
  std::vector<std::string> errors;
  auto c = parse_http(R"([sinks.h]
url = "http://127.0.0.1/in"
headers = { "X-Api-Key" = { env = "SLUICE_TEST_API_KEY" }, "X-Plain" = "p" }
)",
                      errors);
  REQUIRE(c.has_value());
  REQUIRE(c->headers.size() == 2);
  CHECK(c->headers[0] == std::pair<std::string, std::string>{"X-Api-Key", "k-123"});
  CHECK(c->headers[1] == std::pair<std::string, std::string>{"X-Plain", "p"});
}

TEST_CASE("http sink config: a password in the URL is not repeated in an error",
          "[unit][sinks][http][config]") {
  std::vector<std::string> errors;
  auto c = parse_http(R"([sinks.h]
url = "ftp://user:pw@host/x"
)",
                      errors);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] ==
        "inline.toml:2:7: sinks.h.url: \"ftp://***@host/x\" is not an http:// or https:// URL");
}

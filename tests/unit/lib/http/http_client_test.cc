#include "lib/http/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/http_peer.h"
#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<http::Client> make_client(Loop& loop, http::ClientOptions o = {}) {
  auto c = http::Client::create(loop, std::move(o));
  REQUIRE(c.has_value());
  return std::move(*c);
}

http::ClientRequest post(const std::string& url, std::string body) {
  http::ClientRequest r;
  r.method = http::Method::post;
  r.url = url;
  r.headers = {{"Content-Type", "application/x-ndjson"}, {"X-Test", "yes"}};
  r.body = std::move(body);
  return r;
}

template <class F>
http::ClientOptions options(F set) {
  http::ClientOptions o;
  set(o);
  return o;
}

http::ClientResponse cancelled_response() {
  http::ClientResponse r;
  r.cancelled = true;
  return r;
}

// A port on 127.0.0.1 where nothing listens (bound, then closed).
int closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Runs one request to completion.
http::ClientResponse run_one(Loop& loop, http::Client& client, http::ClientRequest req) {
  std::optional<http::ClientResponse> got;
  client.submit(std::move(req), [&](http::ClientResponse&& r) { got = std::move(r); });
  REQUIRE(run_until(loop, 15s, [&] { return got.has_value(); }));
  return std::move(*got);
}

}  // namespace

TEST_CASE("http client: POST reaches the peer with its headers and body", "[unit][http]") {
  HttpPeer peer;
  Loop loop;
  auto client = make_client(loop);
  http::ClientResponse r = run_one(loop, *client, post(peer.url("/in?x=1"), "a\nb\n"));
  CHECK(r.status == 200);
  CHECK(r.curl_code == 0);
  CHECK(r.http_version == 11);  // plain http: HTTP/1.1
  CHECK(r.body == "ok");
  CHECK(r.header("content-length") == "2");
  CHECK(r.header("Content-Length") == "2");
  CHECK(r.bytes_sent == 4);
  CHECK(r.elapsed > Duration::zero());
  auto reqs = peer.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].method == "POST");
  CHECK(reqs[0].path == "/in?x=1");
  CHECK(reqs[0].body == "a\nb\n");
  CHECK(reqs[0].header("content-type") == "application/x-ndjson");
  CHECK(reqs[0].header("x-test") == "yes");
  CHECK(reqs[0].header("user-agent") == "sluice");
  CHECK(reqs[0].header("expect").empty());  // no 100-continue round trip
  client.reset();
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: many requests share max_in_flight kept-alive connections", "[unit][http]") {
  HttpPeer peer;
  Loop loop;
  auto client = make_client(loop, options([](http::ClientOptions& o) { o.max_in_flight = 3; }));
  std::vector<int> statuses;
  std::size_t max_seen = 0;
  for (int i = 0; i < 30; ++i) {
    client->submit(post(peer.url(), "line " + std::to_string(i) + "\n"),
                   [&](http::ClientResponse&& r) { statuses.push_back(r.status); });
    max_seen = std::max(max_seen, client->in_flight());
  }
  CHECK(client->pending() == 30);
  REQUIRE(run_until(loop, 20s, [&] {
    max_seen = std::max(max_seen, client->in_flight());
    return statuses.size() == 30;
  }));
  CHECK(std::count(statuses.begin(), statuses.end(), 200) == 30);
  CHECK(max_seen == 3);
  CHECK(client->pending() == 0);
  CHECK(client->connections_opened() <= 3);
  CHECK(peer.stat("connections") <= 3);
  CHECK(peer.stat("requests") == 30);
  // Keep-alive: a later request reuses an idle connection.
  CHECK(run_one(loop, *client, post(peer.url(), "again\n")).status == 200);
  CHECK(client->connections_opened() <= 3);
  // Submit order is kept for the queued requests.
  auto reqs = peer.requests();
  REQUIRE(reqs.size() == 31);
  client.reset();
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: answers classify as ok retry and reject", "[unit][http]") {
  HttpPeer peer("503:7,429:2,400:field 'x' is bad,500,reset,reset,404");
  Loop loop;
  auto client = make_client(loop, options([](http::ClientOptions& o) { o.max_in_flight = 1; }));

  http::ClientResponse r = run_one(loop, *client, post(peer.url(), "1\n"));
  CHECK(r.status == 503);
  CHECK(r.header("retry-after") == "7");
  http::Classification c = http::classify(r);
  CHECK(c.verdict == http::Verdict::retry);
  CHECK(c.reason == "HTTP 503 Service Unavailable: busy");
  REQUIRE(c.retry_after.has_value());
  CHECK(*c.retry_after == 7s);

  c = http::classify(run_one(loop, *client, post(peer.url(), "2\n")));
  CHECK(c.verdict == http::Verdict::retry);
  CHECK(c.reason == "HTTP 429 Too Many Requests: busy");
  CHECK(c.retry_after == std::optional<Duration>(2s));

  c = http::classify(run_one(loop, *client, post(peer.url(), "3\n")));
  CHECK(c.verdict == http::Verdict::reject);
  CHECK(c.reason == "HTTP 400 Bad Request: field 'x' is bad");
  CHECK_FALSE(c.retry_after.has_value());

  c = http::classify(run_one(loop, *client, post(peer.url(), "4\n")));
  CHECK(c.verdict == http::Verdict::retry);
  CHECK(c.reason == "HTTP 500 Internal Server Error: internal error");

  // A reset on a kept-alive connection before any answer byte: curl sends the request once
  // more on a fresh connection (so a receiver may see it twice: the Idempotency-Key is for that),
  // and that one is reset too.
  r = run_one(loop, *client, post(peer.url(), "5\n"));
  CHECK(r.status == 0);
  CHECK(r.curl_code != 0);
  CHECK(r.error.find("reset") != std::string::npos);
  c = http::classify(r);
  CHECK(c.verdict == http::Verdict::retry);
  CHECK_FALSE(c.reason.empty());
  auto seen = peer.requests();
  REQUIRE(seen.size() == 6);
  CHECK(seen[4].body == "5\n");
  CHECK(seen[5].body == "5\n");

  c = http::classify(run_one(loop, *client, post(peer.url(), "6\n")));
  CHECK(c.verdict == http::Verdict::reject);
  CHECK(c.reason == "HTTP 404 Not Found: bad request: rejected by peer");

  // The script is used up: ok again, on a fresh connection after the reset.
  CHECK(http::classify(run_one(loop, *client, post(peer.url(), "7\n"))).verdict ==
        http::Verdict::ok);
  client.reset();
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: a slow answer times out and a closed port is a retry", "[unit][http]") {
  HttpPeer peer("slow:3000");
  Loop loop;
  auto client =
      make_client(loop, options([](http::ClientOptions& o) { o.request_timeout = 300ms; }));
  const auto t0 = std::chrono::steady_clock::now();
  http::ClientResponse r = run_one(loop, *client, post(peer.url(), "x\n"));
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  CHECK(r.status == 0);
  CHECK(r.timed_out);
  http::Classification c = http::classify(r);
  CHECK(c.verdict == http::Verdict::retry);
  CHECK(c.reason.starts_with("timeout: "));

  r = run_one(loop, *client,
              post("http://127.0.0.1:" + std::to_string(closed_port()) + "/in", "x\n"));
  CHECK(r.status == 0);
  CHECK_FALSE(r.timed_out);
  CHECK(r.error.find("onnect") != std::string::npos);
  CHECK(http::classify(r).verdict == http::Verdict::retry);
  client.reset();
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: the response body is capped", "[unit][http]") {
  HttpPeer peer("400:" + std::string(5000, 'e'));
  Loop loop;
  auto client =
      make_client(loop, options([](http::ClientOptions& o) { o.max_response_body = 100; }));
  http::ClientResponse r = run_one(loop, *client, post(peer.url(), "x\n"));
  CHECK(r.status == 400);
  CHECK(r.body == std::string(100, 'e'));
  CHECK(r.body_truncated);
  http::Classification c = http::classify(r, 20);
  CHECK(c.reason == "HTTP 400 Bad Request: " + std::string(20, 'e') + "...(100 bytes)");
  client.reset();
  REQUIRE(loop.close() == 0);
}

// A 2xx whose body goes on past the cap (here: announced as 100 MB, 256 KiB sent, then silence)
// is an answer as soon as the cap is reached: waiting for the rest would time the request out and
// send an accepted batch again.
TEST_CASE("http client: a 2xx with an endless body is answered at the cap", "[unit][http]") {
  const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(lfd, 4) == 0);
  socklen_t len = sizeof a;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  std::thread server([lfd] {
    const int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) return;
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      req.append(buf, static_cast<std::size_t>(n));
    }
    std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n";
    answer += std::string(256 << 10, 'o');
    for (std::size_t off = 0; off < answer.size();) {
      const ssize_t n = ::write(fd, answer.data() + off, answer.size() - off);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    // Silence until the client goes away.
    while (::read(fd, buf, sizeof buf) > 0) {
    }
    ::close(fd);
  });
  Loop loop;
  auto client = make_client(loop, options([](http::ClientOptions& o) {
                              o.max_response_body = 1000;
                              o.request_timeout = 10s;
                            }));
  const auto t0 = std::chrono::steady_clock::now();
  http::ClientResponse r =
      run_one(loop, *client, post("http://127.0.0.1:" + std::to_string(port) + "/in", "x\n"));
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(r.status == 200);
  CHECK_FALSE(r.timed_out);
  CHECK(r.body == std::string(1000, 'o'));
  CHECK(r.body_truncated);
  CHECK(http::classify(r).verdict == http::Verdict::ok);
  client.reset();
  REQUIRE(loop.close() == 0);
  server.join();
  ::close(lfd);
}

TEST_CASE("http client: HEAD and GET probes", "[unit][http]") {
  HttpPeer peer;
  Loop loop;
  auto client = make_client(loop);
  http::ClientRequest head;
  head.method = http::Method::head;
  head.url = peer.url("/health");
  CHECK(run_one(loop, *client, head).status == 200);
  peer.down();
  http::ClientRequest get = head;
  get.method = http::Method::get;
  http::ClientResponse r = run_one(loop, *client, get);
  CHECK(r.status == 503);
  CHECK(r.body == "down");
  CHECK(peer.stat("health") == 2);
  CHECK(peer.stat("requests") == 0);
  client.reset();
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: cancel answers later with cancelled", "[unit][http]") {
  HttpPeer peer("slow:5000,slow:5000");
  Loop loop;
  auto client = make_client(loop, options([](http::ClientOptions& o) { o.max_in_flight = 1; }));
  std::vector<std::string> order;
  const http::RequestId a = client->submit(post(peer.url(), "a\n"), [&](http::ClientResponse&& r) {
    order.push_back(std::string("a:") + (r.cancelled ? "cancelled" : std::to_string(r.status)));
  });
  const http::RequestId b = client->submit(post(peer.url(), "b\n"), [&](http::ClientResponse&& r) {
    order.push_back(std::string("b:") + (r.cancelled ? "cancelled" : std::to_string(r.status)));
  });
  CHECK(a != b);
  REQUIRE(run_until(loop, 5s, [&] { return peer.stat("requests") == 1; }));
  client->cancel(b);     // queued
  client->cancel(a);     // in flight
  CHECK(order.empty());  // never from inside cancel()
  REQUIRE(run_until(loop, 2s, [&] { return order.size() == 2; }));
  CHECK(order == std::vector<std::string>{"b:cancelled", "a:cancelled"});
  CHECK(http::classify(cancelled_response()).verdict == http::Verdict::retry);
  CHECK(client->pending() == 0);
  client.reset();
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: close with requests in flight runs no callback", "[unit][http]") {
  HttpPeer peer("slow:5000,slow:5000,slow:5000");
  Loop loop;
  auto client = make_client(loop, options([](http::ClientOptions& o) { o.max_in_flight = 2; }));
  int callbacks = 0;
  for (int i = 0; i < 3; ++i) {
    client->submit(post(peer.url(), "x\n"), [&](http::ClientResponse&&) { ++callbacks; });
  }
  REQUIRE(run_until(loop, 5s, [&] { return peer.stat("requests") == 2; }));
  client->close();
  client->close();  // idempotent
  CHECK(client->submit(post(peer.url(), "late\n"), [&](http::ClientResponse&&) { ++callbacks; }) ==
        0);
  run_until(loop, 300ms, [] { return false; });
  CHECK(callbacks == 0);
  client.reset();
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: destroyed from inside its own callback", "[unit][http]") {
  HttpPeer peer("ok,ok,slow:3000");
  Loop loop;
  auto client = make_client(loop, options([](http::ClientOptions& o) { o.max_in_flight = 3; }));
  int callbacks = 0;
  for (int i = 0; i < 3; ++i) {
    client->submit(post(peer.url(), "x\n"), [&](http::ClientResponse&&) {
      ++callbacks;
      client.reset();  // the sink stops and frees its client while answers are being dispatched
    });
  }
  REQUIRE(run_until(loop, 10s, [&] { return callbacks > 0; }));
  run_until(loop, 300ms, [] { return false; });
  CHECK(callbacks == 1);
  CHECK(client == nullptr);
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: HTTPS with a CA file and a client certificate", "[unit][http]") {
  TempDir pki;
  REQUIRE(std::system(
              ("bash " + source_dir() + "/tests/support/make_pki.sh " + pki.path()).c_str()) == 0);
  HttpPeer peer("", 0,
                {"--tls-cert", pki.file("server.pem"), "--tls-key", pki.file("server.key"),
                 "--tls-client-ca", pki.file("ca.pem")});
  const std::string url = "https://" + peer.address() + "/in";
  Loop loop;
  {
    http::ClientOptions o;
    o.tls.ca_file = pki.file("ca.pem");
    o.tls.cert_file = pki.file("client.pem");
    o.tls.key_file = pki.file("client.key");
    auto client = make_client(loop, o);
    http::ClientResponse r = run_one(loop, *client, post(url, "tls\n"));
    CHECK(r.status == 200);
    CHECK(r.error.empty());
  }
  {
    // A CA that did not sign the server: verification fails, which is a retry (not a reject).
    http::ClientOptions o;
    o.tls.ca_file = pki.file("other-ca.pem");
    o.tls.cert_file = pki.file("client.pem");
    o.tls.key_file = pki.file("client.key");
    auto client = make_client(loop, o);
    http::ClientResponse r = run_one(loop, *client, post(url, "tls\n"));
    CHECK(r.status == 0);
    CHECK(r.curl_code != 0);
    CHECK(http::classify(r).verdict == http::Verdict::retry);
  }
  auto reqs = peer.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].body == "tls\n");
  REQUIRE(loop.close() == 0);
}

// A hashed CA directory (c_rehash / openssl rehash layout) instead of a CA file.
TEST_CASE("http client: HTTPS trusting a hashed CA directory", "[unit][http]") {
  TempDir pki;
  REQUIRE(std::system(
              ("bash " + source_dir() + "/tests/support/make_pki.sh " + pki.path()).c_str()) == 0);
  const std::string dir = pki.file("cadir");
  REQUIRE(std::system(("mkdir -p " + dir + " && cp " + pki.file("ca.pem") + " " + dir +
                       "/$(openssl x509 -hash -noout -in " + pki.file("ca.pem") + ").0")
                          .c_str()) == 0);
  HttpPeer peer("", 0, {"--tls-cert", pki.file("server.pem"), "--tls-key", pki.file("server.key")});
  const std::string url = "https://" + peer.address() + "/in";
  Loop loop;
  {
    http::ClientOptions o;
    o.tls.ca_dir = dir;
    auto client = make_client(loop, o);
    http::ClientResponse r = run_one(loop, *client, post(url, "dir\n"));
    CHECK(r.status == 200);
    CHECK(r.error.empty());
  }
  {
    http::ClientOptions o;
    o.tls.ca_dir = pki.path();  // no hashed names in it: the server is not trusted
    auto client = make_client(loop, o);
    http::ClientResponse r = run_one(loop, *client, post(url, "dir\n"));
    CHECK(r.status == 0);
    CHECK(http::classify(r).verdict == http::Verdict::retry);
  }
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: gzip and zstd bodies decode at the peer", "[unit][http]") {
  HttpPeer peer;
  Loop loop;
  auto client = make_client(loop);
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "{\"n\":" + std::to_string(i) + ",\"msg\":\"hello\"}\n";
  for (auto c : {http::Compression::gzip, http::Compression::zstd, http::Compression::deflate}) {
    std::string body;
    REQUIRE(http::compress(c, text, body).ok());
    CHECK(body.size() < text.size() / 4);
    http::ClientRequest req = post(peer.url(), body);
    req.headers.emplace_back("Content-Encoding", std::string(http::content_encoding(c)));
    CHECK(run_one(loop, *client, req).status == 200);
  }
  auto reqs = peer.requests();
  REQUIRE(reqs.size() == 3);
  CHECK(reqs[0].encoding == "gzip");
  CHECK(reqs[1].encoding == "zstd");
  CHECK(reqs[2].encoding == "deflate");
  for (const auto& r : reqs) {
    CHECK(r.decode_error.empty());
    CHECK(r.body == text);
  }
  client.reset();
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: compress and decompress round trip", "[unit][http]") {
  const std::string text(100'000, 'x');
  for (auto c : {http::Compression::none, http::Compression::gzip, http::Compression::zstd,
                 http::Compression::deflate}) {
    std::string z, back;
    REQUIRE(http::compress(c, text, z).ok());
    REQUIRE(http::decompress(c, z, back).ok());
    CHECK(back == text);
    // A bomb is bounded.
    CHECK(http::decompress(c, z, back, 1000).code() == Errc::invalid_data);
  }
  std::string back;
  CHECK(http::decompress(http::Compression::gzip, "not gzip", back).code() == Errc::invalid_data);
  CHECK(http::decompress(http::Compression::zstd, "not zstd", back).code() == Errc::invalid_data);
  CHECK(http::content_encoding(http::Compression::none).empty());
  CHECK(http::content_encoding(http::Compression::zstd) == "zstd");
}

TEST_CASE("http client: Retry-After as seconds or an HTTP-date", "[unit][http]") {
  // 2015-10-21 07:28:00 UTC
  const std::int64_t when = 1445412480;
  CHECK(http::parse_retry_after("120", 0) == std::optional<Duration>(120s));
  CHECK(http::parse_retry_after(" 0 ", 0) == std::optional<Duration>(0s));
  CHECK(http::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", when - 30) ==
        std::optional<Duration>(30s));
  CHECK(http::parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", when - 5) ==
        std::optional<Duration>(5s));
  CHECK(http::parse_retry_after("Wed Oct 21 07:28:00 2015", when - 1) ==
        std::optional<Duration>(1s));
  // Far in the future: bounded like a huge number of seconds, never an overflow into the past.
  CHECK(http::parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", when) ==
        std::optional<Duration>(999'999'999s));
  CHECK(http::parse_retry_after("Fri Dec 31 23:59:59 999999999", when) ==
        std::optional<Duration>(999'999'999s));
  // In the past: now.
  CHECK(http::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", when + 100) ==
        std::optional<Duration>(0s));
  CHECK_FALSE(http::parse_retry_after("soon", 0).has_value());
  CHECK_FALSE(http::parse_retry_after("-5", 0).has_value());
  CHECK_FALSE(http::parse_retry_after("Wed, 21 Foo 2015 07:28:00 GMT", 0).has_value());
  CHECK_FALSE(http::parse_retry_after("", 0).has_value());
}

TEST_CASE("http client: classify status classes", "[unit][http]") {
  auto verdict = [](int status) {
    http::ClientResponse r;
    r.status = status;
    return http::classify(r).verdict;
  };
  CHECK(verdict(200) == http::Verdict::ok);
  CHECK(verdict(204) == http::Verdict::ok);
  CHECK(verdict(408) == http::Verdict::retry);
  CHECK(verdict(429) == http::Verdict::retry);
  CHECK(verdict(502) == http::Verdict::retry);
  CHECK(verdict(599) == http::Verdict::retry);
  CHECK(verdict(401) == http::Verdict::reject);
  CHECK(verdict(413) == http::Verdict::reject);
  CHECK(verdict(301) == http::Verdict::reject);
  http::ClientResponse r;
  r.status = 503;
  r.headers = {{"retry-after", "Wed, 21 Oct 2015 07:28:10 GMT"}};
  CHECK(http::classify(r, 256, 1445412480).retry_after == std::optional<Duration>(10s));
  r.status = 400;  // Retry-After means nothing on a reject
  CHECK_FALSE(http::classify(r, 256, 1445412480).retry_after.has_value());
  r.body = "bad\x1b[31m\n";
  CHECK(http::classify(r).reason == "HTTP 400 Bad Request: bad\\x1b[31m");
}

TEST_CASE("http client: a proxy receives the request with the absolute URL", "[unit][http]") {
  HttpPeer proxy;  // answers like a forward proxy that accepted the request
  Loop loop;
  http::ClientOptions o;
  o.proxy = "http://" + proxy.address();
  auto client = make_client(loop, o);
  http::ClientResponse r = run_one(loop, *client, post("http://hooks.invalid/in", "via proxy\n"));
  CHECK(r.status == 200);
  auto reqs = proxy.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].path == "http://hooks.invalid/in");
  CHECK(reqs[0].header("host") == "hooks.invalid");
  CHECK(reqs[0].body == "via proxy\n");
  client.reset();
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: proxy environment variables are ignored without a proxy option",
          "[unit][http]") {
  HttpPeer peer;
  ::setenv("http_proxy", "http://127.0.0.1:1", 1);
  Loop loop;
  auto client = make_client(loop);
  http::ClientResponse r = run_one(loop, *client, post(peer.url(), "direct\n"));
  ::unsetenv("http_proxy");
  CHECK(r.status == 200);
  CHECK(peer.requests().size() == 1);
  client.reset();
  REQUIRE(loop.close() == 0);
}

TEST_CASE("http client: CompressJob compresses on the threadpool and can be abandoned",
          "[unit][http]") {
  Loop loop;
  const std::string text(200'000, 'z');
  std::optional<std::string> got;
  Status status;
  std::thread::id ran_on;
  Status error;
  http::CompressJob* job = http::CompressJob::start(
      loop, http::Compression::gzip, 0, text,
      [&](Status st, std::string&& out) {
        status = std::move(st);
        got = std::move(out);
        ran_on = std::this_thread::get_id();
      },
      error);
  REQUIRE(job != nullptr);
  CHECK_FALSE(got.has_value());  // never inline
  REQUIRE(run_until(loop, 5s, [&] { return got.has_value(); }));
  CHECK(status.ok());
  CHECK(ran_on == std::this_thread::get_id());
  std::string back;
  REQUIRE(http::decompress(http::Compression::gzip, *got, back).ok());
  CHECK(back == text);

  bool called = false;
  job = http::CompressJob::start(
      loop, http::Compression::zstd, 0, text, [&](Status, std::string&&) { called = true; }, error);
  REQUIRE(job != nullptr);
  job->abandon();
  run_until(loop, 300ms, [] { return false; });
  CHECK_FALSE(called);
  REQUIRE(loop.close() == 0);
}

// Debian's nghttp2-server (nghttpd) speaks HTTP/2 over TLS; it answers a POST to a file with it.
TEST_CASE("http client: HTTP/2 over TLS multiplexes requests on one connection",
          "[unit][http][http2]") {
  TempDir dir;
  REQUIRE(std::system(
              ("bash " + source_dir() + "/tests/support/make_pki.sh " + dir.file("pki")).c_str()) ==
          0);
  REQUIRE(::mkdir(dir.file("www").c_str(), 0755) == 0);
  write_file(dir.file("www/in"), "ok\n");
  const int port = closed_port();
  ChildProcess server({"/usr/sbin/nghttpd", "--htdocs=" + dir.file("www"), std::to_string(port),
                       dir.file("pki/server.key"), dir.file("pki/server.pem")},
                      dir.file("nghttpd.log"));
  const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/in";
  Loop loop;
  http::ClientOptions o;
  o.tls.ca_file = dir.file("pki/ca.pem");
  o.max_in_flight = 4;
  auto client = make_client(loop, o);
  // The first request opens the connection and learns that it multiplexes.
  http::ClientResponse first;
  REQUIRE(eventually(10s, [&] {
    first = run_one(loop, *client, post(url, "first\n"));
    return first.status == 200;
  }));
  CHECK(first.http_version == 20);
  CHECK(first.body == "ok\n");
  const std::uint64_t before = client->connections_opened();
  std::vector<http::ClientResponse> answers;
  for (int i = 0; i < 8; ++i) {
    client->submit(post(url, "batch " + std::to_string(i) + "\n"),
                   [&](http::ClientResponse&& r) { answers.push_back(std::move(r)); });
  }
  REQUIRE(run_until(loop, 15s, [&] { return answers.size() == 8; }));
  for (const auto& r : answers) {
    CHECK(r.status == 200);
    CHECK(r.http_version == 20);
  }
  CHECK(client->connections_opened() == before);  // all on the kept-alive HTTP/2 connection
  client.reset();
  REQUIRE(loop.close() == 0);
}

#include "lib/http/http_server.h"

#include <catch2/catch.hpp>
#include <optional>
#include <thread>

#include "tests/support/test_support.h"

using namespace sluice;
using namespace std::chrono_literals;

namespace {

// Runs a server on its own loop thread for the length of a test.
struct ServerThread {
  Loop loop;
  MetricsRegistry metrics;
  std::unique_ptr<http::Server> server;
  std::thread thread;
  uv_async_t stop_async{};
  std::string address;

  static void echo(http::Request& req, http::Responder r) {
    http::Response resp;
    resp.body = std::string(http_method_str(req.method)) + " " + req.url + " " + req.body;
    r.respond(std::move(resp));
  }
  explicit ServerThread(http::Handler handler = &ServerThread::echo,
                        http::ServerLimits limits = {
                            .max_header_bytes = 1024, .max_body_bytes = 64, .max_connections = 8}) {
    server = std::make_unique<http::Server>(loop, limits, std::move(handler), &metrics,
                                            Labels{{"component", "t"}, {"type", "http"}});
    REQUIRE(server->listen("127.0.0.1:0").ok());
    address = server->bound_address();
    uv_async_init(loop.uv(), &stop_async, [](uv_async_t* a) {
      auto* self = static_cast<ServerThread*>(a->data);
      self->server->close();
      uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    });
    stop_async.data = this;
    thread = std::thread([this] { loop.run(); });
  }
  ~ServerThread() {
    uv_async_send(&stop_async);
    thread.join();
    server.reset();
    CHECK(loop.close() == 0);
  }
};

}  // namespace

TEST_CASE("http server answers, keeps connections alive, and refuses bad input", "[unit][http]") {
  ServerThread s;
  SECTION("a GET") {
    auto r = test::http_get(s.address, "/x?y=1");
    CHECK(r.status == 200);
    CHECK(r.body == "GET /x?y=1 ");
  }
  SECTION("two requests on one connection, pipelined") {
    auto r = test::http_request(
        s.address,
        "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nde");
    CHECK(r.status == 200);
    CHECK(r.body.find("POST /a abc") == 0);
    CHECK(r.body.find("HTTP/1.1 200 OK") != std::string::npos);
    CHECK(r.body.find("POST /b de") != std::string::npos);
  }
  SECTION("malformed request: 400 and the connection closes") {
    auto r = test::http_request(s.address, "GARBAGE\r\n\r\n");
    CHECK(r.status == 400);
    CHECK(r.body.find("malformed request") == 0);
  }
  SECTION("body over the limit: 413") {
    auto r =
        test::http_request(s.address, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" +
                                          std::string(100, 'x'));
    CHECK(r.status == 413);
  }
  SECTION("chunked body over the limit: 413") {
    auto r = test::http_request(
        s.address, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n" +
                       std::string(80, 'x') + "\r\n0\r\n\r\n");
    CHECK(r.status == 413);
  }
  SECTION("headers over the limit: 431") {
    auto r = test::http_request(s.address,
                                "GET / HTTP/1.1\r\nX-Big: " + std::string(2000, 'h') + "\r\n\r\n");
    CHECK(r.status == 431);
  }
}

TEST_CASE("http server: a late second answer never answers the next request", "[unit][http]") {
  // As the HTTP source does at ack_timeout: answer 503 at once, then the put's late answer.
  std::optional<http::Responder> first;
  ServerThread s([&first](http::Request& req, http::Responder r) {
    http::Response resp;
    if (req.path() == "/1") {
      first = r;
      resp.status = 503;
      r.respond(std::move(resp));
      return;
    }
    http::Response late;
    late.body = "late answer for /1";
    first->respond(std::move(late));  // dropped: /1 was answered
    resp.body = "answer for /2";
    r.respond(std::move(resp));
  });
  auto r = test::http_request(s.address,
                              "GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  CHECK(r.status == 503);
  CHECK(r.body.find("late answer") == std::string::npos);
  CHECK(r.body.find("answer for /2") != std::string::npos);
}

TEST_CASE("split_host_port", "[unit][http]") {
  std::string host;
  int port = 0;
  CHECK(http::split_host_port("127.0.0.1:24280", host, port));
  CHECK(host == "127.0.0.1");
  CHECK(port == 24280);
  CHECK(http::split_host_port("[::1]:0", host, port));
  CHECK(host == "::1");
  CHECK_FALSE(http::split_host_port("localhost", host, port));
  CHECK_FALSE(http::split_host_port("h:99999", host, port));
  CHECK_FALSE(http::split_host_port(":80", host, port));
  CHECK_FALSE(http::split_host_port("::1:80", host, port));
}

#include "lib/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <optional>
#include <thread>
#include <vector>

#include "lib/net/tcp_server.h"
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
    resp.body = std::string(http_method_str(req.method)) + " " + req.url + " " +
                std::string(req.body.view());
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

// A blocking client connection (TCP_NODELAY, reads time out after 5 s).
int connect_to(const std::string& address) {
  std::string host;
  int port = 0;
  REQUIRE(net::split_host_port(address, host, port));
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &sa.sin_addr);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  return fd;
}

// Everything until the server closes.
std::string read_all(int fd) {
  std::string all;
  char buf[4096];
  ssize_t n = 0;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) all.append(buf, static_cast<std::size_t>(n));
  return all;
}

// Sends `pieces` on one connection, pausing between them so that the server reads each one
// separately (the checks under test keep state across reads), and returns the status line.
std::string send_pieces(const std::string& address, const std::vector<std::string>& pieces) {
  const int fd = connect_to(address);
  for (const std::string& p : pieces) {
    ::send(fd, p.data(), p.size(), MSG_NOSIGNAL);
    std::this_thread::sleep_for(30ms);  // not a wait for a condition: it separates the reads
  }
  const std::string all = read_all(fd);
  ::close(fd);
  return all.substr(0, all.find("\r\n"));
}

}  // namespace

TEST_CASE("http server: RFC 9112 checks hold when a request arrives in pieces", "[unit][http]") {
  // Written on the server's loop thread before it answers, read here after the answers.
  std::vector<std::pair<int, std::string>> refused;
  std::vector<std::string> peers;
  ServerThread s;
  s.server->set_on_refused([&](int status, std::string_view peer, std::string_view why) {
    refused.emplace_back(status, why);
    peers.emplace_back(peer);
  });
  const std::string head =
      "POST /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
  // The CRLF after a chunk's data, split from it and split in two: fine.
  CHECK(send_pieces(s.address, {head + "3\r\nabc", "\r", "\n0\r\n\r\n"}) == "HTTP/1.1 200 OK");
  CHECK(send_pieces(s.address, {head + "3\r\nab", "c\r\n0\r\n\r\n"}) == "HTTP/1.1 200 OK");
  // The same places with other bytes: 400.
  CHECK(send_pieces(s.address, {head + "3\r\nabc", "X\n0\r\n\r\n"}) == "HTTP/1.1 400 Bad Request");
  CHECK(send_pieces(s.address, {head + "3\r\nabc\r", "X0\r\n\r\n"}) == "HTTP/1.1 400 Bad Request");
  // A folded header line whose leading space comes in the next read.
  CHECK(send_pieces(s.address, {"GET / HTTP/1.1\r\nHost: t\r\nX-A: one\r\n", " two\r\n\r\n"}) ==
        "HTTP/1.1 400 Bad Request");
  // A body line that starts with a space is not a fold.
  CHECK(send_pieces(s.address, {"POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                                "Content-Length: 6\r\n\r\n",
                                "\n x\n y"}) == "HTTP/1.1 200 OK");
  REQUIRE(refused.size() == 3);
  CHECK(peers[0].rfind("127.0.0.1:", 0) == 0);
  CHECK(refused[0] ==
        std::pair<int, std::string>{400, "malformed request: chunk data not followed by CRLF"});
  CHECK(refused[2] == std::pair<int, std::string>{
                          400, "malformed request: obsolete line folding in the headers"});
}

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

TEST_CASE("http server: a client that pipelines and never reads stops being read, loses nothing",
          "[unit][http]") {
  // Answers of 128 KiB to 1,000 pipelined GETs (125 MiB, more than the kernel's socket buffers
  // take): with answers bounded per connection the server stops answering (and reading) once
  // what the client has not read passes the bound, instead of queueing every answer in memory.
  std::atomic<int> handled{0};
  const std::string answer(128 * 1024, 'a');
  ServerThread s([&](http::Request&, http::Responder r) {
    ++handled;
    http::Response resp;
    resp.body = answer;
    r.respond(std::move(resp));
  });
  constexpr int kRequests = 1000;
  std::string requests;
  for (int i = 1; i < kRequests; ++i) requests += "GET /p HTTP/1.1\r\nHost: t\r\n\r\n";
  requests += "GET /p HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  const int fd = connect_to(s.address);
  // The server may stop reading before it has every request: send from another thread.
  std::thread sender([&] {
    std::size_t off = 0;
    while (off < requests.size()) {
      const ssize_t n = ::send(fd, requests.data() + off, requests.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
  });
  // Wait until the server stops answering (the count holds still for 300 ms).
  int last = -1;
  auto still_since = std::chrono::steady_clock::now();
  REQUIRE(test::eventually(20s, [&] {
    const int now = handled.load();
    if (now != last) {
      last = now;
      still_since = std::chrono::steady_clock::now();
    }
    return std::chrono::steady_clock::now() - still_since > 300ms;
  }));
  std::printf("http pipelining: %d of %d requests answered while the client did not read\n", last,
              kRequests);
  CHECK(last < kRequests);
  CHECK(s.metrics.render().find(R"(sluice_http_reads_paused_total{component="t",type="http"})") !=
        std::string::npos);
  // Once the client reads, every answer arrives.
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string all = read_all(fd);
  sender.join();
  ::close(fd);
  std::size_t answers = 0;
  for (auto at = all.find("HTTP/1.1 200 OK"); at != std::string::npos;
       at = all.find("HTTP/1.1 200 OK", at + 1)) {
    ++answers;
  }
  CHECK(answers == kRequests);
  CHECK(handled == kRequests);
}

TEST_CASE("http server: connection metrics are the TCP server's, under sluice_http",
          "[unit][http]") {
  ServerThread s(&ServerThread::echo, {.max_connections = 1, .header_timeout = 200ms});
  const int a = connect_to(s.address);
  const std::string partial = "GET / HTTP/1.1\r\nHo";
  ::send(a, partial.data(), partial.size(), MSG_NOSIGNAL);
  const int b = connect_to(s.address);  // accepted after a: refused, every slot is taken
  CHECK(read_all(b).empty());
  const auto t0 = std::chrono::steady_clock::now();
  const std::string answer = read_all(a);  // 408 at header_timeout, then the close
  CHECK(std::chrono::steady_clock::now() - t0 >= 150ms);
  CHECK(answer.rfind("HTTP/1.1 408 Request Timeout\r\n", 0) == 0);
  CHECK(answer.find("request headers not complete within 200 ms") != std::string::npos);
  ::close(a);
  ::close(b);
  const std::string m = s.metrics.render();
  CHECK(
      m.find(
          R"(sluice_http_connections_refused_total{component="t",type="http",reason="max_connections"} 1)") !=
      std::string::npos);
  CHECK(
      m.find(
          R"(sluice_http_connections_closed_total{component="t",type="http",reason="request_timeout"} 1)") !=
      std::string::npos);
  CHECK(m.find(R"(sluice_http_bad_requests_total{component="t",type="http"} 1)") !=
        std::string::npos);
  CHECK(m.find("sluice_http_refused_connections_total") == std::string::npos);  // renamed
}

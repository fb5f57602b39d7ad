#include "lib/net/tcp_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "tests/support/test_support.h"

using namespace sluice;
using namespace std::chrono_literals;
using net::CloseReason;
using net::RefuseReason;
using test::run_until;

namespace {

// A protocol for tests: records what happens; `data` decides what to do with the bytes.
struct Recorder final : net::ConnectionHandler {
  std::vector<net::Connection*> open;
  std::vector<CloseReason> closed;
  std::string received;
  std::function<void(net::Connection&, std::string_view)> data;
  std::vector<CloseReason> timeouts;
  // Which connections the protocol lets the server evict at max_connections.
  std::function<bool(const net::Connection&)> may_evict;
  bool evictable(const net::Connection& c) override { return may_evict && may_evict(c); }
  int drained = 0;
  std::size_t drained_unsent = 0;  // the most unsent output seen by on_output_drained
  void on_output_drained(net::Connection& c) override {
    ++drained;
    drained_unsent = std::max(drained_unsent, c.unsent_bytes());
  }
  void on_timeout(net::Connection& c, CloseReason why) override {
    timeouts.push_back(why);
    c.send("timed out\n");  // a last answer, as HTTP's 408
  }
  void on_open(net::Connection& c) override { open.push_back(&c); }
  void on_data(net::Connection& c, std::string_view d) override {
    received.append(d);
    if (data) data(c, d);
  }
  void on_close(net::Connection& c, CloseReason why) override {
    closed.push_back(why);
    std::erase(open, &c);
  }
};

struct Fixture {
  Loop loop;
  MetricsRegistry metrics;
  Recorder handler;
  std::unique_ptr<net::TcpServer> server;

  explicit Fixture(net::ServerOptions o) {
    o.metric_prefix = "sluice_test";
    server = std::make_unique<net::TcpServer>(loop, o, handler, &metrics,
                                              Labels{{"component", "t"}, {"type", "test"}});
    REQUIRE(server->listen("127.0.0.1:0").ok());
  }
  bool until(const std::function<bool()>& cond, std::chrono::milliseconds t = 5s) {
    return run_until(loop, t, cond);
  }
};

// A non-blocking client socket, optionally bound to another loopback address.
struct Client {
  int fd = -1;
  explicit Client(const std::string& address, const char* from = nullptr) {
    const auto colon = address.rfind(':');
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
    inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr);
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (from != nullptr) {
      sockaddr_in b{};
      b.sin_family = AF_INET;
      inet_pton(AF_INET, from, &b.sin_addr);
      REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&b), sizeof b) == 0);
    }
    const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    REQUIRE((rc == 0 || errno == EINPROGRESS));
  }
  ~Client() { ::close(fd); }
  // Sends what the socket takes now; returns the bytes taken.
  std::size_t send_some(std::string_view data) const {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    return n < 0 ? 0 : static_cast<std::size_t>(n);
  }
  // Reads what is there now into `out`; false once the server closed (EOF or reset).
  bool read_some(std::string& out) const {
    char buf[65536];
    while (true) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        out.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
  }
};

}  // namespace

TEST_CASE("tcp server: echoes, and on_close runs once when the client leaves", "[unit][net]") {
  Fixture f({});
  f.handler.data = [](net::Connection& c, std::string_view d) { c.send(d); };
  {
    Client c(f.server->bound_address());
    REQUIRE(f.until([&] { return f.handler.open.size() == 1; }));
    CHECK(f.handler.open[0]->peer().find("127.0.0.1:") == 0);
    REQUIRE(c.send_some("hello") == 5);
    std::string got;
    REQUIRE(f.until([&] { return c.read_some(got) && got == "hello"; }));
    CHECK(f.server->connections() == 1);
  }
  REQUIRE(f.until([&] { return f.handler.closed.size() == 1; }));
  CHECK(f.handler.closed[0] == CloseReason::peer);
  CHECK(f.server->connections() == 0);
  CHECK(f.metrics.render().find(
            R"(sluice_test_connections_closed_total{component="t",type="test",reason="peer"} 1)") !=
        std::string::npos);
  REQUIRE(f.until([&] { return f.server->draining() == 0; }));
  f.server.reset();
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("tcp server: a client that never reads stops being read, and loses nothing once it reads",
          "[unit][net]") {
  Fixture f({.max_unsent_bytes = 4096});
  // Each byte read is answered with 100: a pipelining client that does not read.
  f.handler.data = [](net::Connection& c, std::string_view d) {
    c.send(std::string(d.size() * 100, 'a'));
  };
  Client c(f.server->bound_address());
  REQUIRE(f.until([&] { return f.handler.open.size() == 1; }));
  net::Connection& conn = *f.handler.open[0];
  const std::string request(64 * 1024, 'r');
  std::size_t sent = 0;
  // Send until the server stops reading: the kernel buffers fill and send takes nothing.
  const bool paused = f.until(
      [&] {
        sent += c.send_some(request);
        return !conn.reading();
      },
      10s);
  REQUIRE(paused);
  CHECK(f.server->reads_paused() >= 1);
  CHECK(conn.unsent_bytes() > 4096);
  // What is queued is bounded by the bound plus the answers to one read.
  CHECK(conn.unsent_bytes() <= 4096 + 100 * f.server->options().read_buffer_bytes);
  const std::size_t read_when_paused = f.handler.received.size();
  f.until([&] { return false; }, 200ms);
  CHECK(f.handler.received.size() == read_when_paused);  // stays paused
  CHECK(f.handler.drained == 0);
  // The client reads: everything arrives, the server reads again and answers the rest.
  std::string got;
  REQUIRE(f.until(
      [&] {
        c.read_some(got);
        return f.handler.received.size() == sent && got.size() == sent * 100;
      },
      20s));
  CHECK(conn.reading());
  // The protocol was told each time its output fell back under the bound (to go on with work
  // it held back, e.g. HTTP's next pipelined request).
  CHECK(f.handler.drained >= 1);
  CHECK(f.handler.drained_unsent <= 4096);
  REQUIRE(f.until([&] { return f.server->buffered_bytes() == 0; }));
  f.server.reset();
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("tcp server: a flooding connection yields the loop after max_read_bytes_per_turn",
          "[unit][net]") {
  Fixture f({.read_buffer_bytes = 4096, .max_read_bytes_per_turn = 16384});
  std::map<const net::Connection*, std::size_t> got;
  f.handler.data = [&](net::Connection& c, std::string_view d) { got[&c] += d.size(); };
  Client flood(f.server->bound_address());
  REQUIRE(f.until([&] { return f.handler.open.size() == 1; }));
  const net::Connection* flooding = f.handler.open[0];
  Client other(f.server->bound_address());
  REQUIRE(f.until([&] { return f.handler.open.size() == 2; }));
  const net::Connection* quiet = f.handler.open[1];
  // Far more than one turn's budget waits in the kernel before the loop reads any of it.
  const std::string block(256 * 1024, 'f');
  const std::size_t sent = flood.send_some(block);
  REQUIRE(sent >= 64 * 1024);
  REQUIRE(other.send_some("q") == 1);
  // Each turn reads at most the budget from the flooding socket (libuv alone would read 32
  // buffers, 128 KiB here), and the quiet one is served in the first turns, not after the flood.
  std::size_t most_in_a_turn = 0, turns = 0, flood_before_quiet = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (got[flooding] < sent && std::chrono::steady_clock::now() < deadline) {
    const std::size_t before = got[flooding];
    f.loop.run_once();
    ++turns;
    most_in_a_turn = std::max(most_in_a_turn, got[flooding] - before);
    if (got[quiet] == 0) flood_before_quiet = got[flooding];
  }
  INFO("turns " << turns << ", most read in one turn " << most_in_a_turn << ", flood before quiet "
                << flood_before_quiet);
  CHECK(got[flooding] == sent);  // nothing lost, only spread over turns
  CHECK(most_in_a_turn <= 16384);
  CHECK(got[quiet] == 1);
  CHECK(flood_before_quiet <= 2 * 16384);
  CHECK(f.server->connections() == 2);
  f.server.reset();
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("tcp server: many flooding connections together read at most the server's turn budget",
          "[unit][net]") {
  // Each connection alone stays under its own limit in one read; twenty together would read
  // 20 x 4 KiB a turn without the server-wide budget.
  Fixture f({.read_buffer_bytes = 4096,
             .max_read_bytes_per_turn = 16384,
             .max_server_read_bytes_per_turn = 16384});
  std::map<const net::Connection*, std::size_t> got;
  std::size_t total = 0;
  f.handler.data = [&](net::Connection& c, std::string_view d) {
    got[&c] += d.size();
    total += d.size();
  };
  constexpr int kClients = 20;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<Client>(f.server->bound_address()));
    REQUIRE(f.until([&] { return f.handler.open.size() == clients.size(); }));
  }
  const std::string block(64 * 1024, 'f');
  std::size_t sent = 0;
  for (auto& c : clients) sent += c->send_some(block);
  REQUIRE(sent >= kClients * 16 * 1024);
  std::size_t most_in_a_turn = 0, turns = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (total < sent && std::chrono::steady_clock::now() < deadline) {
    const std::size_t before = total;
    f.loop.run_once();
    ++turns;
    most_in_a_turn = std::max(most_in_a_turn, total - before);
  }
  INFO("turns " << turns << ", most read in one turn " << most_in_a_turn);
  CHECK(total == sent);  // nothing lost, only spread over turns
  // The budget, plus the read that crossed it.
  CHECK(most_in_a_turn <= 16384 + 4096);
  // Every connection was served, none starved.
  for (const auto* c : f.handler.open) CHECK(got[c] > 0);
  f.server.reset();
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("tcp server: over the shared budget, connections with unsent output are not read",
          "[unit][net]") {
  // The per-connection bound is far away: only the shared budget can pause.
  Fixture f({.max_unsent_bytes = 64 << 20, .max_buffered_bytes = 256 * 1024});
  f.handler.data = [](net::Connection& c, std::string_view) { c.send(std::string(1 << 20, 'a')); };
  Client c(f.server->bound_address());
  REQUIRE(f.until([&] { return f.handler.open.size() == 1; }));
  net::Connection& conn = *f.handler.open[0];
  REQUIRE(f.until(
      [&] {
        c.send_some("x");
        return !conn.reading();
      },
      10s));
  CHECK(f.server->over_budget());
  CHECK(conn.unsent_bytes() < (64 << 20));
  CHECK(f.server->reads_paused() >= 1);
  // Input charged by the protocol counts too: the budget stays exceeded after the output drains.
  f.server->charge_input(512 * 1024);
  std::string got;
  REQUIRE(f.until([&] {
    c.read_some(got);
    return conn.unsent_bytes() == 0;
  }));
  CHECK(f.server->over_budget());
  CHECK(conn.reading());  // nothing of its own queued: it may be read
  f.server->charge_input(-512 * 1024);
  CHECK(f.server->buffered_bytes() == 0);
  f.server.reset();
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("tcp server: message and idle deadlines close, counted by reason", "[unit][net]") {
  Fixture f({.idle_timeout = 200ms, .message_timeout = 150ms});
  f.handler.data = [](net::Connection& c, std::string_view d) {
    // Reads may merge what the client sent in several calls.
    if (d.find("begin") != std::string_view::npos) c.begin_message();
    if (d.find("busy") != std::string_view::npos) c.set_busy(true);
    if (d.find("done") != std::string_view::npos) c.set_busy(false);
  };
  SECTION("a message that never ends, however steadily it trickles") {
    Client c(f.server->bound_address());
    REQUIRE(f.until([&] { return f.handler.open.size() == 1; }));
    const auto start = std::chrono::steady_clock::now();
    c.send_some("begin");
    // Keep sending (so the connection is never idle) until the server closes it.
    REQUIRE(f.until([&] {
      c.send_some("x");
      f.until([] { return false; }, 20ms);
      return !f.handler.closed.empty();
    }));
    CHECK(f.handler.closed[0] == CloseReason::message_timeout);
    CHECK(f.handler.timeouts == std::vector<CloseReason>{CloseReason::message_timeout});
    CHECK(std::chrono::steady_clock::now() - start >= 140ms);
    std::string got;
    REQUIRE(f.until([&] { return !c.read_some(got); }));
    CHECK(got == "timed out\n");  // the last answer was sent before the close
    CHECK(f.server->closed_count(CloseReason::message_timeout) == 1);
  }
  SECTION("idle, but not while busy") {
    Client c(f.server->bound_address());
    REQUIRE(f.until([&] { return f.handler.open.size() == 1; }));
    c.send_some("busy");
    f.until([] { return false; }, 500ms);
    CHECK(f.handler.closed.empty());
    c.send_some("done");
    const auto start = std::chrono::steady_clock::now();
    REQUIRE(f.until([&] { return !f.handler.closed.empty(); }));
    CHECK(f.handler.closed[0] == CloseReason::idle);
    CHECK(std::chrono::steady_clock::now() - start >= 150ms);
    std::string got;
    REQUIRE(f.until([&] { return !c.read_some(got); }));  // the client sees the close
  }
  f.server.reset();
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("tcp server: max_connections and max_connections_per_address refuse, counted",
          "[unit][net]") {
  Fixture f({.max_connections = 3, .max_connections_per_address = 2});
  const std::string at = f.server->bound_address();
  Client a(at), b(at);
  REQUIRE(f.until([&] { return f.handler.open.size() == 2; }));
  Client c(at);  // a third from 127.0.0.1
  REQUIRE(f.until(
      [&] { return f.server->refused_count(RefuseReason::max_connections_per_address) == 1; }));
  Client d(at, "127.0.0.2");  // another address still gets in
  REQUIRE(f.until([&] { return f.handler.open.size() == 3; }));
  Client e(at, "127.0.0.3");  // but every slot is taken
  REQUIRE(f.until([&] { return f.server->refused_count(RefuseReason::max_connections) == 1; }));
  std::string got;
  REQUIRE(f.until([&] { return !c.read_some(got) && !e.read_some(got); }));
  CHECK(
      f.metrics.render().find(
          R"(sluice_test_connections_refused_total{component="t",type="test",reason="max_connections_per_address"} 1)") !=
      std::string::npos);
  CHECK(f.server->connections() == 3);
  CHECK(f.handler.closed.empty());  // refused connections never reach the protocol
  f.server.reset();
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("tcp server: closing sends what was queued first, or cuts off after close_timeout",
          "[unit][net]") {
  Fixture f({.close_timeout = 300ms});
  const std::string big(8 << 20, 'z');
  f.handler.data = [&](net::Connection& c, std::string_view) {
    c.send(big);
    c.close(CloseReason::bad_input);
    c.send("ignored once closing");
  };
  SECTION("a client that reads gets every byte, then the close") {
    Client c(f.server->bound_address());
    c.send_some("go");
    std::string got;
    REQUIRE(f.until([&] { return !c.read_some(got); }, 10s));
    CHECK(got.size() == big.size());
    CHECK(f.handler.closed == std::vector<CloseReason>{CloseReason::bad_input});
  }
  SECTION("a client that does not read is cut off") {
    Client c(f.server->bound_address());
    c.send_some("go");
    REQUIRE(f.until([&] { return f.server->draining() == 1; }));
    CHECK(f.server->buffered_bytes() > 0);
    const auto start = std::chrono::steady_clock::now();
    REQUIRE(f.until([&] { return f.server->draining() == 0; }));
    CHECK(std::chrono::steady_clock::now() - start >= 200ms);
    CHECK(f.server->buffered_bytes() == 0);
  }
  f.server.reset();
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("tcp server: destroyed with open and draining connections, it leaks nothing",
          "[unit][net]") {
  Fixture f({});
  f.handler.data = [&](net::Connection& c, std::string_view d) {
    c.send(std::string(4 << 20, 'q'));
    if (d == "close") c.close(CloseReason::bad_input);
  };
  Client a(f.server->bound_address()), b(f.server->bound_address());
  a.send_some("close");
  b.send_some("stay");
  REQUIRE(f.until([&] { return f.server->draining() == 1 && f.server->connections() == 1; }));
  const std::size_t closes = f.handler.closed.size();
  f.server.reset();  // the handler is not called from the destructor
  CHECK(f.handler.closed.size() == closes);
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("tcp server: at max_connections it evicts the least active evictable connection",
          "[unit][net]") {
  Fixture f({.max_connections = 2, .evict_when_full = true});
  // The protocol marks a connection evictable once it said "evictable" (by id: ids are never
  // reused, addresses may be).
  std::vector<std::uint64_t> marked;
  f.handler.data = [&](net::Connection& c, std::string_view d) {
    if (d.find("evictable") != std::string_view::npos) marked.push_back(c.id());
  };
  f.handler.may_evict = [&](const net::Connection& c) {
    return std::find(marked.begin(), marked.end(), c.id()) != marked.end();
  };
  const std::string at = f.server->bound_address();
  Client a(at);
  REQUIRE(f.until([&] { return f.handler.open.size() == 1; }));
  Client b(at);
  REQUIRE(f.until([&] { return f.handler.open.size() == 2; }));
  // Nobody evictable: refused as without eviction.
  Client c(at);
  REQUIRE(f.until([&] { return f.server->refused_count(RefuseReason::max_connections) == 1; }));
  // Both evictable, a the least recently active: a goes, d comes in.
  a.send_some("evictable");
  REQUIRE(f.until([&] { return marked.size() == 1; }));
  f.until([] { return false; }, 20ms);
  b.send_some("evictable");
  REQUIRE(f.until([&] { return marked.size() == 2; }));
  const std::uint64_t first = marked[0];
  Client d(at);
  REQUIRE(f.until([&] { return f.server->closed_count(CloseReason::evicted) == 1; }));
  CHECK(f.handler.closed == std::vector<CloseReason>{CloseReason::evicted});
  REQUIRE(f.until([&] { return f.handler.open.size() == 2; }));
  CHECK(std::none_of(f.handler.open.begin(), f.handler.open.end(),
                     [&](net::Connection* o) { return o->id() == first; }));
  std::string got;
  REQUIRE(f.until([&] { return !a.read_some(got); }));  // a sees the close
  CHECK(b.read_some(got));                              // b stays
  CHECK(f.server->refused_count(RefuseReason::max_connections) == 1);
  CHECK(
      f.metrics.render().find(
          R"(sluice_test_connections_closed_total{component="t",type="test",reason="evicted"} 1)") !=
      std::string::npos);
  f.server.reset();
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("tcp server: a message's deadline can change, counted from its start", "[unit][net]") {
  Fixture f({.message_timeout = 10s});
  std::chrono::steady_clock::time_point start;
  f.handler.data = [&](net::Connection& c, std::string_view d) {
    // A short first phase (HTTP's header_timeout), then a longer one from the same start.
    if (d.find("begin") != std::string_view::npos) {
      start = std::chrono::steady_clock::now();
      c.begin_message(150ms);
    }
    if (d.find("phase2") != std::string_view::npos) c.set_message_timeout(400ms);
  };
  SECTION("the first deadline holds without the second phase") {
    Client c(f.server->bound_address());
    c.send_some("begin");
    REQUIRE(f.until([&] { return !f.handler.closed.empty(); }));
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(f.handler.closed[0] == CloseReason::message_timeout);
    CHECK(took >= 140ms);
    CHECK(took < 390ms);
  }
  SECTION("the second deadline counts from the message's start") {
    Client c(f.server->bound_address());
    c.send_some("begin");
    f.until([] { return false; }, 100ms);
    c.send_some("phase2");
    REQUIRE(f.until([&] { return !f.handler.closed.empty(); }));
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(f.handler.closed[0] == CloseReason::message_timeout);
    CHECK(took >= 390ms);
    CHECK(took < 2s);
  }
  f.server.reset();
  REQUIRE(f.loop.close() == 0);
}

TEST_CASE("split_host_port", "[unit][net]") {
  std::string host;
  int port = 0;
  CHECK(net::split_host_port("127.0.0.1:24280", host, port));
  CHECK(host == "127.0.0.1");
  CHECK(port == 24280);
  CHECK(net::split_host_port("[::1]:0", host, port));
  CHECK(host == "::1");
  CHECK_FALSE(net::split_host_port("localhost", host, port));
  CHECK_FALSE(net::split_host_port("h:99999", host, port));
  CHECK_FALSE(net::split_host_port(":80", host, port));
  CHECK_FALSE(net::split_host_port("::1:80", host, port));
}

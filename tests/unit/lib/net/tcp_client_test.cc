#include "lib/net/tcp_client.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <vector>

#include "lib/codec/zstream.h"
#include "lib/net/tcp_server.h"
#include "tests/support/agent_process.h"
#include "tests/support/fault_peers.h"
#include "tests/support/test_support.h"
#include "tests/unit/lib/net/tcp_client_peer.h"

using namespace sluice;
using namespace std::chrono_literals;
using net::TcpClient;
using test::LinePeer;
using test::run_until;

namespace {

struct Events final : net::TcpClientHandler {
  int connected = 0;
  std::vector<std::uint64_t> marks;
  std::vector<Status> lost;
  std::string data;
  std::function<void()> then;  // runs after on_connected
  void on_connected() override {
    ++connected;
    if (then) then();
  }
  void on_written(std::uint64_t mark) override { marks.push_back(mark); }
  void on_disconnected(const Status& why) override { lost.push_back(why); }
  void on_data(std::string_view d) override { data.append(d); }
};

net::TcpClientOptions options(const std::string& address) {
  net::TcpClientOptions o;
  o.address = address;
  o.connect_timeout = 2s;
  o.write_timeout = 2s;
  return o;
}

}  // namespace

TEST_CASE("tcp client: writes reach the peer in order and on_written reports their marks",
          "[unit][net][tcp_client]") {
  Loop loop;
  {
    LinePeer peer;
    Events ev;
    TcpClient c(loop, options(peer.address()), ev);
    c.connect();
    CHECK(c.state() == TcpClient::State::connecting);
    REQUIRE(run_until(loop, 5s, [&] { return ev.connected == 1; }));
    CHECK(c.write("one\n") == 4);
    CHECK(c.write("two\n") == 8);
    std::string big(1 << 20, 'x');
    CHECK(c.write(big) == 8 + big.size());
    REQUIRE(run_until(loop, 5s, [&] { return c.written_mark() == 8 + big.size(); }));
    CHECK(ev.marks.back() == 8 + big.size());
    CHECK(c.unsent_bytes() == 0);
    REQUIRE(run_until(loop, 5s, [&] { return peer.received_bytes() == 8 + big.size(); }));
    CHECK(peer.received().substr(0, 8) == "one\ntwo\n");
    CHECK(ev.lost.empty());
    c.close();
    REQUIRE(run_until(loop, 5s, [&] { return peer.ended() == 1; }));
    CHECK(ev.lost.empty());  // close() reports nothing
  }
  REQUIRE(loop.close() == 0);
}

TEST_CASE("tcp client: a refused connect is reported and the next waits a doubling backoff",
          "[unit][net][tcp_client]") {
  Loop loop;
  {
    Events ev;
    auto o = options("127.0.0.1:1");
    o.backoff_initial = 200ms;
    o.backoff_max = 400ms;
    TcpClient c(loop, o, ev);
    c.connect();
    REQUIRE(run_until(loop, 5s, [&] { return ev.lost.size() == 1; }));
    CHECK(ev.lost[0].message() == "connect 127.0.0.1:1: ECONNREFUSED (connection refused)");
    CHECK(c.state() == TcpClient::State::backoff);
    const auto t0 = std::chrono::steady_clock::now();
    c.connect();  // during the backoff: connects when it ends
    REQUIRE(run_until(loop, 5s, [&] { return ev.lost.size() == 2; }));
    const auto first = std::chrono::steady_clock::now() - t0;
    CHECK(first >= 190ms);
    c.connect();
    REQUIRE(run_until(loop, 5s, [&] { return ev.lost.size() == 3; }));
    const auto second = std::chrono::steady_clock::now() - t0 - first;
    CHECK(second >= 390ms);  // doubled, capped at backoff_max
    CHECK(ev.connected == 0);
  }
  REQUIRE(loop.close() == 0);
}

TEST_CASE("tcp client: a name is resolved and an unknown name is reported",
          "[unit][net][tcp_client]") {
  Loop loop;
  {
    LinePeer peer;
    Events ev;
    TcpClient c(loop, options("localhost:" + peer.address().substr(10)), ev);
    c.connect();
    REQUIRE(run_until(loop, 5s, [&] { return ev.connected == 1 || !ev.lost.empty(); }));
    CHECK(ev.connected == 1);
    Events ev2;
    TcpClient bad(loop, options("no-such-host.invalid:9009"), ev2);
    bad.connect();
    REQUIRE(run_until(loop, 10s, [&] { return !ev2.lost.empty(); }));
    CHECK(ev2.lost[0].message().rfind("cannot resolve no-such-host.invalid:9009", 0) == 0);
  }
  REQUIRE(loop.close() == 0);
}

TEST_CASE("tcp client: a peer that never reads fails the write after write_timeout",
          "[unit][net][tcp_client]") {
  Loop loop;
  {
    LinePeer peer(LinePeer::Mode::never_read, 0, 4096);
    Events ev;
    auto o = options(peer.address());
    o.write_timeout = 300ms;
    TcpClient c(loop, o, ev);
    c.connect();
    REQUIRE(run_until(loop, 5s, [&] { return ev.connected == 1; }));
    const std::string chunk(1 << 20, 'x');
    for (int i = 0; i < 64; ++i) c.write(chunk);  // far more than the socket buffers hold
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(run_until(loop, 10s, [&] { return !ev.lost.empty(); }));
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took >= 250ms);
    CHECK(took < 3s);
    CHECK(ev.lost[0].code() == Errc::timeout);
    CHECK(ev.lost[0].message() == "a write to " + peer.address() +
                                      " did not complete within 300ms (the peer is not reading)");
    CHECK(c.written_mark() < 64u << 20);
    CHECK(c.unsent_bytes() == 0);  // what the kernel never took is dropped with the socket
    CHECK(c.state() == TcpClient::State::backoff);
  }
  REQUIRE(loop.close() == 0);
}

TEST_CASE("tcp client: the peer closing is reported and a new connect works",
          "[unit][net][tcp_client]") {
  Loop loop;
  {
    LinePeer peer(LinePeer::Mode::close_graceful, 4);
    Events ev;
    TcpClient c(loop, options(peer.address()), ev);
    c.connect();
    REQUIRE(run_until(loop, 5s, [&] { return ev.connected == 1; }));
    c.write("abcd");
    REQUIRE(run_until(loop, 5s, [&] { return !ev.lost.empty(); }));
    CHECK(ev.lost[0].message() == peer.address() + " closed the connection");
    // It had nothing outstanding and had worked: no backoff before the next connect.
    CHECK(c.state() == TcpClient::State::idle);
    c.connect();
    REQUIRE(run_until(loop, 5s, [&] { return ev.connected == 2; }));
    c.write("efgh");
    REQUIRE(run_until(loop, 5s, [&] { return peer.received() == "abcdefgh"; }));
    CHECK(c.connects() == 2);
  }
  REQUIRE(loop.close() == 0);
}

TEST_CASE("tcp client: after close nothing calls back, in any state", "[unit][net][tcp_client]") {
  Loop loop;
  {
    test::Blackhole hole;
    LinePeer peer(LinePeer::Mode::never_read, 0, 4096);
    Events ev;
    {
      TcpClient connecting(loop, options(hole.address()), ev);
      connecting.connect();
      run_until(loop, 50ms, [] { return false; });
      connecting.close();
    }
    TcpClient writing(loop, options(peer.address()), ev);
    writing.connect();
    REQUIRE(run_until(loop, 5s, [&] { return ev.connected == 1; }));
    for (int i = 0; i < 16; ++i) writing.write(std::string(1 << 20, 'y'));
    writing.close();
    auto refused = std::make_unique<TcpClient>(loop, options("127.0.0.1:1"), ev);
    refused->connect();
    refused->abort(Status(Errc::io, "given up"));  // reported on a later turn...
    refused.reset();                               // ...unless destroyed first
    run_until(loop, 300ms, [] { return false; });
    CHECK(ev.lost.empty());
    CHECK(ev.marks.empty());
  }
  REQUIRE(loop.close() == 0);
}

TEST_CASE("tcp client: TLS to the project's TLS server, verified against its CA",
          "[unit][net][tcp_client][tls]") {
  test::TempDir tmp;
  REQUIRE(std::system(("bash " + test::source_dir() + "/tests/support/make_pki.sh " + tmp.path())
                          .c_str()) == 0);
  Loop loop;
  MetricsRegistry metrics;
  {
    struct Sink final : net::ConnectionHandler {
      std::string received;
      void on_open(net::Connection&) override {}
      void on_data(net::Connection& c, std::string_view d) override {
        received.append(d);
        c.send("ack\n");
      }
      void on_close(net::Connection&, net::CloseReason) override {}
    } handler;
    net::TcpServer server(loop, {}, handler, &metrics, {{"component", "srv"}});
    tls::TlsConfig sc;
    sc.enabled = true;
    sc.cert = tmp.file("server.pem");
    sc.key = tmp.file("server.key");
    auto sctx = tls::TlsContext::make(sc, true);
    REQUIRE(sctx);
    server.set_tls(*sctx);
    REQUIRE(server.listen("127.0.0.1:0").ok());

    tls::TlsConfig cc;
    cc.enabled = true;
    cc.ca = tmp.file("ca.pem");
    auto cctx = tls::TlsContext::make(cc, false);
    REQUIRE(cctx);
    Events ev;
    auto o = options(server.bound_address());
    o.tls = *cctx;
    Counter tls_errors;
    TcpClient c(loop, o, ev, &tls_errors);
    c.connect();
    REQUIRE(run_until(loop, 5s, [&] { return ev.connected == 1; }));
    c.write("secret line\n");
    REQUIRE(run_until(loop, 5s, [&] { return handler.received == "secret line\n"; }));
    REQUIRE(run_until(loop, 5s, [&] { return ev.data == "ack\n"; }));
    CHECK(ev.marks.back() == 12);

    // A CA that did not sign the server's certificate: the handshake fails, counted.
    tls::TlsConfig other = cc;
    other.ca = tmp.file("other-ca.pem");
    auto octx = tls::TlsContext::make(other, false);
    REQUIRE(octx);
    Events ev2;
    auto o2 = options(server.bound_address());
    o2.tls = *octx;
    TcpClient untrusting(loop, o2, ev2, &tls_errors);
    untrusting.connect();
    REQUIRE(run_until(loop, 5s, [&] { return !ev2.lost.empty(); }));
    CHECK(ev2.lost[0].message().find("certificate") != std::string::npos);
    CHECK(tls_errors.value() == 1);
    CHECK(ev2.connected == 0);
    c.close();
  }
  REQUIRE(loop.close() == 0);
}

namespace {

// zlib both ways, one stream per direction, as Flume 1.10 layers it outside TLS.
struct ZlibCodec final : net::WireCodec {
  codec::Deflater deflate{6};
  codec::Inflater inflate{std::size_t{1} << 20};
  int* encodes = nullptr;
  Status decode(std::string_view wire, std::string& out) override {
    return inflate.write(wire, out);
  }
  void encode(std::string_view data, std::string& out) override {
    if (encodes != nullptr) ++*encodes;
    deflate.write(data, out);
  }
};

}  // namespace

TEST_CASE("tcp client: a wire codec wraps the TLS records both ways and is made per connection",
          "[unit][net][tcp_client][tls]") {
  test::TempDir tmp;
  REQUIRE(std::system(("bash " + test::source_dir() + "/tests/support/make_pki.sh " + tmp.path())
                          .c_str()) == 0);
  Loop loop;
  MetricsRegistry metrics;
  {
    struct Sink final : net::ConnectionHandler {
      std::string received;
      void on_open(net::Connection& c) override { c.set_wire_codec(std::make_unique<ZlibCodec>()); }
      void on_data(net::Connection& c, std::string_view d) override {
        received.append(d);
        c.send("ack\n");
      }
      void on_close(net::Connection&, net::CloseReason) override {}
    } handler;
    net::TcpServer server(loop, {}, handler, &metrics, {{"component", "srv"}});
    tls::TlsConfig sc;
    sc.enabled = true;
    sc.cert = tmp.file("server.pem");
    sc.key = tmp.file("server.key");
    auto sctx = tls::TlsContext::make(sc, true);
    REQUIRE(sctx);
    server.set_tls(*sctx);
    REQUIRE(server.listen("127.0.0.1:0").ok());

    tls::TlsConfig cc;
    cc.enabled = true;
    cc.ca = tmp.file("ca.pem");
    auto cctx = tls::TlsContext::make(cc, false);
    REQUIRE(cctx);
    Events ev;
    auto o = options(server.bound_address());
    o.tls = *cctx;
    int made = 0, encodes = 0;
    o.wire_codec = [&] {
      ++made;
      auto z = std::make_unique<ZlibCodec>();
      z->encodes = &encodes;
      return z;
    };
    TcpClient c(loop, o, ev);
    c.connect();
    REQUIRE(run_until(loop, 5s, [&] { return ev.connected == 1; }));
    CHECK(made == 1);
    CHECK(encodes >= 1);                    // the TLS hello went through it
    CHECK(c.write("secret line\n") == 12);  // marks count what the user wrote, not the wire
    REQUIRE(run_until(loop, 5s, [&] { return handler.received == "secret line\n"; }));
    REQUIRE(run_until(loop, 5s, [&] { return ev.data == "ack\n"; }));
    CHECK(ev.marks.back() == 12);

    // A new connection gets a new codec: a zlib stream cannot go on across connections.
    c.close();
    c.connect();
    REQUIRE(run_until(loop, 5s, [&] { return ev.connected == 2; }));
    CHECK(made == 2);
    c.write("again\n");
    REQUIRE(run_until(loop, 5s, [&] { return handler.received == "secret line\nagain\n"; }));
    REQUIRE(run_until(loop, 5s, [&] { return ev.data == "ack\nack\n"; }));
    CHECK(ev.lost.empty());
    c.close();
  }
  REQUIRE(loop.close() == 0);
}

TEST_CASE("tcp client: bytes the wire codec cannot decode drop the connection, reported once",
          "[unit][net][tcp_client]") {
  Loop loop;
  MetricsRegistry metrics;
  {
    // Answers in plaintext, which the client's zlib layer rejects.
    struct Plain final : net::ConnectionHandler {
      void on_open(net::Connection&) override {}
      void on_data(net::Connection& c, std::string_view) override { c.send("not zlib at all\n"); }
      void on_close(net::Connection&, net::CloseReason) override {}
    } handler;
    net::TcpServer server(loop, {}, handler, &metrics, {{"component", "srv"}});
    REQUIRE(server.listen("127.0.0.1:0").ok());
    Events ev;
    auto o = options(server.bound_address());
    o.wire_codec = [] { return std::make_unique<ZlibCodec>(); };
    TcpClient c(loop, o, ev);
    c.connect();
    REQUIRE(run_until(loop, 5s, [&] { return ev.connected == 1; }));
    c.write("hello\n");
    REQUIRE(run_until(loop, 5s, [&] { return ev.lost.size() == 1; }));
    CHECK(ev.data.empty());
    CHECK_FALSE(ev.lost[0].ok());
    CHECK_FALSE(c.connected());
    run_until(loop, 50ms, [] { return false; });
    CHECK(ev.lost.size() == 1);
    c.close();
  }
  REQUIRE(loop.close() == 0);
}

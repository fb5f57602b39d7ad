// The tcp sink in the real binary: taildir -> channel -> tcp sink -> a local listener.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "tests/support/agent_process.h"
#include "tests/unit/lib/net/tcp_client_peer.h"

using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<AgentProcess> start_agent(const TempDir& tmp, const std::string& sink,
                                          const std::string& channel = "type = \"memory\"") {
  const std::string path = tmp.file("agent.toml");
  write_file(path, R"([agent]
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"
shutdown_timeout = "20s"
[sources.tail]
type = "taildir"
paths = [")" + tmp.file("logs") +
                       R"(/*.log"]
rescan_interval = "200ms"
poll_interval = "50ms"
channel = "buf"
[channels.buf]
)" + channel + R"(
[sinks.out]
type = "tcp"
channel = "buf"
)" + sink);
  AgentProcess::Options o;
  o.config_file = path;
  return std::make_unique<AgentProcess>("", o);
}

std::set<long> distinct_numbers(const std::string& text) {
  std::set<long> out;
  for (long n : numbers_of(text)) out.insert(n);
  return out;
}

}  // namespace

TEST_CASE("tcp sink: a listener that closes mid-batch still gets every line",
          "[integration][tcp_sink]") {
  // The listener half-closes after 100 KB (in the middle of a batch) and reads on: the agent sees
  // the close, resends what was not taken and reconnects.
  LinePeer peer(LinePeer::Mode::close_graceful, 100'000);
  TempDir tmp;
  fs::create_directories(tmp.file("logs"));
  append_numbers(tmp.file("logs") + "/a.log", 1, 25'000);  // 139 KB: past the close
  auto agent =
      start_agent(tmp, "address = \"" + peer.address() + "\"\nreconnect_backoff = \"50ms\"\n");
  REQUIRE(agent->wait_ready());
  // The agent closes its side once it sees the peer's; what follows needs a new connection.
  REQUIRE(eventually(20s, [&] { return peer.ended() == 1; }));
  append_numbers(tmp.file("logs") + "/a.log", 25'001, 50'000);
  REQUIRE(eventually(30s, [&] { return distinct_numbers(peer.received()).size() == 50'000; }));
  const auto got = distinct_numbers(peer.received());
  CHECK(*got.begin() == 1);
  CHECK(*got.rbegin() == 50'000);
  CHECK(peer.connections() >= 2);
  CHECK(agent->metric(R"(sluice_tcp_sink_connects_total{component="out",type="tcp"})") >= 2.0);
  CHECK(agent->terminate() == 0);
}

TEST_CASE("tcp sink: TLS and octet counting to a python3 ssl listener", "[integration][tcp_sink]") {
  TempDir tmp;
  REQUIRE(std::system(
              ("bash " + source_dir() + "/tests/support/make_pki.sh " + tmp.file("pki")).c_str()) ==
          0);
  const std::string script = R"(
import socket, ssl, sys, os
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1] + "/server.pem", sys.argv[1] + "/server.key")
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
open(sys.argv[2] + ".tmp", "w").write("127.0.0.1:%d\n" % s.getsockname()[1])
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
c, _ = s.accept(); c = ctx.wrap_socket(c, server_side=True)
with open(sys.argv[3], "ab") as out:
    while True:
        d = c.recv(65536)
        if not d: break
        out.write(d); out.flush()
)";
  write_file(tmp.file("listener.py"), script);
  ChildProcess listener({"/usr/bin/python3", tmp.file("listener.py"), tmp.file("pki"),
                         tmp.file("addr"), tmp.file("received")},
                        tmp.file("listener.log"));
  std::string address;
  REQUIRE(eventually(10s, [&] {
    address = read_file(tmp.file("addr"));
    return !address.empty() && address.back() == '\n';
  }));
  address.pop_back();
  fs::create_directories(tmp.file("logs"));
  append_numbers(tmp.file("logs") + "/a.log", 1, 1000);
  auto agent = start_agent(tmp, "address = \"" + address +
                                    "\"\nframing = \"octet_counting\"\ntls = { ca = \"" +
                                    tmp.file("pki") + "/ca.pem\" }\n");
  REQUIRE(agent->wait_ready());
  std::string expect;
  for (int i = 1; i <= 1000; ++i) {
    const std::string n = std::to_string(i);
    expect += std::to_string(n.size()) + " " + n;
  }
  INFO(read_file(tmp.file("listener.log")));
  REQUIRE(eventually(20s, [&] { return read_file(tmp.file("received")).size() == expect.size(); }));
  CHECK(read_file(tmp.file("received")) == expect);
  CHECK(agent->terminate() == 0);
}

TEST_CASE("tcp sink: a listener that never reads: Retry after delivery_timeout, prompt shutdown",
          "[integration][tcp_sink]") {
  LinePeer peer(LinePeer::Mode::never_read, 0, 4096);
  TempDir tmp;
  fs::create_directories(tmp.file("logs"));
  // 600k lines of ~100 bytes: far more than the socket buffers of both ends hold.
  {
    std::string text;
    const std::string pad(90, 'x');
    for (int i = 0; i < 600'000; ++i) text += std::to_string(i) + pad + "\n";
    write_file(tmp.file("logs") + "/a.log", text);
  }
  auto agent = start_agent(tmp,
                           "address = \"" + peer.address() +
                               "\"\ndelivery_timeout = \"1s\"\nflush_timeout = \"500ms\"\n",
                           "type = \"lmdb\"\nmax_bytes = \"256MiB\"");
  REQUIRE(agent->wait_ready());
  const std::string retry =
      R"(sluice_sink_events_total{component="out",type="tcp",outcome="retry"})";
  REQUIRE(eventually(20s, [&] { return agent->metric(retry).value_or(0) > 0; }));
  CHECK(agent->metric(R"(sluice_tcp_sink_disconnects_total{component="out",type="tcp"})") >= 1.0);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(agent->terminate() == 0);  // the lmdb channel keeps what was not delivered
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

TEST_CASE("tcp sink: a failover group moves to a file while the listener is down and comes back",
          "[integration][tcp_sink]") {
  int port = 0;
  {
    LinePeer probe_port;  // a free port, closed again: nothing listens there at first
    port = std::stoi(probe_port.address().substr(10));
  }
  TempDir tmp;
  fs::create_directories(tmp.file("logs"));
  const std::string path = tmp.file("agent.toml");
  write_file(path, R"([agent]
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"
[sources.tail]
type = "taildir"
paths = [")" + tmp.file("logs") +
                       R"(/*.log"]
rescan_interval = "200ms"
poll_interval = "50ms"
channel = "buf"
[channels.buf]
type = "memory"
[sinks.relay]
type = "tcp"
address = "127.0.0.1:)" +
                       std::to_string(port) + R"("
reconnect_backoff = "200ms"
[sinks.spill]
type = "file"
path = ")" + tmp.file("spill.log") +
                       R"("
[sink_groups.g]
channel = "buf"
processor = "failover"
priority = { relay = 10, spill = 5 }
max_penalty = "1s"
)");
  AgentProcess::Options o;
  o.config_file = path;
  AgentProcess agent("", o);
  REQUIRE(agent.wait_ready());
  append_numbers(tmp.file("logs") + "/a.log", 1, 1000);
  REQUIRE(eventually(20s, [&] { return count_lines(tmp.file("spill.log")) == 1000; }));
  LinePeer peer(LinePeer::Mode::read, 0, 0, port);  // the relay is back on its port
  // Lines written from now on go to the relay again once its probe (a connect) passes.
  REQUIRE(eventually(20s, [&] {
    append_numbers(tmp.file("logs") + "/a.log", 1001, 1001);
    return peer.received_bytes() > 0;
  }));
  append_numbers(tmp.file("logs") + "/a.log", 2000, 2999);
  REQUIRE(eventually(20s, [&] {
    const auto got = distinct_numbers(peer.received());
    return got.count(2000) == 1 && got.count(2999) == 1;
  }));
  // Nothing lost across both switches: every line is in the file or at the relay.
  std::set<long> all = distinct_numbers(peer.received());
  for (long n : numbers_of(read_file(tmp.file("spill.log")))) all.insert(n);
  for (long n = 1; n <= 1000; ++n) CHECK(all.count(n) == 1);
  for (long n = 2000; n <= 2999; ++n) CHECK(all.count(n) == 1);
  CHECK(agent.terminate() == 0);
}

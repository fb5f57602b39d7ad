#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "lib/avro/codec.h"
#include "tests/support/agent_process.h"

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kPython = "/usr/bin/python3";
constexpr const char* kMemory = "type = \"memory\"\nmax_events = 100000";

AgentProcess::Options source_options(const std::string& out, const std::string& extra = "",
                                     const std::string& channel = kMemory,
                                     const std::string& listen = "127.0.0.1:0") {
  AgentProcess::Options o;
  o.vars = {{"OUT", out}, {"EXTRA", extra}, {"CHANNEL", channel}, {"LISTEN", listen}};
  return o;
}

// Runs the python3-avro client and returns its JSON report.
std::string run_client(const TempDir& tmp, const std::string& address,
                       const std::vector<std::string>& extra) {
  static int n = 0;
  const std::string report = tmp.file("client" + std::to_string(++n) + ".json");
  std::vector<std::string> argv = {kPython, flume_peer_script(), "client", address, "--out",
                                   report};
  argv.insert(argv.end(), extra.begin(), extra.end());
  ChildProcess client(argv, report + ".log");
  INFO(read_file(report + ".log"));
  REQUIRE(client.wait_exit(60s) == 0);
  return read_file(report);
}

// A raw TCP connection for sending hand-made frames.
struct Raw {
  int fd = -1;
  explicit Raw(const std::string& address) {
    const auto colon = address.rfind(':');
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
    inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr);
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Raw() { ::close(fd); }
  void send(std::string_view bytes) const {
    REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
  }
  // The next frame's payload, or nullopt if the server closed the connection.
  std::optional<std::string> frame() const {
    std::string buf;
    auto need = [&](std::size_t n) {
      while (buf.size() < n) {
        char tmp[4096];
        const ssize_t r = ::recv(fd, tmp, std::min(sizeof tmp, n - buf.size()), 0);
        if (r <= 0) return false;
        buf.append(tmp, static_cast<std::size_t>(r));
      }
      return true;
    };
    auto be32 = [&](std::size_t at) {
      const auto* u = reinterpret_cast<const unsigned char*>(buf.data() + at);
      return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) |
             (std::uint32_t{u[2]} << 8) | u[3];
    };
    if (!need(8)) return std::nullopt;
    const std::uint32_t count = be32(4);
    std::string payload;
    std::size_t at = 8;
    for (std::uint32_t i = 0; i < count; ++i) {
      if (!need(at + 4)) return std::nullopt;
      const std::uint32_t len = be32(at);
      if (!need(at + 4 + len)) return std::nullopt;
      payload += buf.substr(at + 4, len);
      at += 4 + len;
    }
    return payload;
  }
};

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// A first request: Flume's handshake (known hash) and `call` as the call part.
std::string first_request(std::int32_t serial, std::string_view call) {
  std::string payload;
  avro::Writer w(payload);
  avro::HandshakeRequest h;
  h.client_hash = avro::kFlumeHash;
  h.server_hash = avro::kFlumeHash;
  avro::write_handshake_request(w, h);
  payload.append(call);
  std::string frame;
  avro::encode_frame(serial, payload, frame);
  return frame;
}

std::string append_batch_call(int events) {
  Batch b;
  for (int i = 0; i < events; ++i) {
    b.add("raw-" + std::to_string(i), 0, 0);
    b.add_header("k", "v");
  }
  std::string call;
  avro::Writer w(call);
  avro::write_append_batch(w, b, 0, b.size());
  return call;
}

// The call part of an `append` request (one event, no headers): metadata, name, event.
std::string append_call(std::string_view body) {
  std::string call;
  avro::Writer w(call);
  w.write_long(0);  // metadata
  w.write_bytes("append");
  w.write_long(0);  // headers
  w.write_bytes(body);
  return call;
}

// A field of /proc/PID/status in kB (VmRSS, VmHWM), or -1.
long proc_status_kb(pid_t pid, const std::string& field) {
  const std::string text = read_file("/proc/" + std::to_string(pid) + "/status");
  const auto at = text.find(field + ":");
  if (at == std::string::npos) return -1;
  return std::stol(text.substr(at + field.size() + 1));
}

// True when the peer closed `fd` (recv returns 0 or an error other than EAGAIN).
bool peer_closed(int fd) {
  char c;
  const ssize_t r = ::recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
  return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// True when `reply` is an OK answer (after the handshake's answer if `handshake`).
bool ok_answer(const std::optional<std::string>& reply, bool handshake) {
  if (!reply) return false;
  avro::Reader r(*reply);
  avro::HandshakeResponse h;
  if (handshake && !avro::read_handshake_response(r, h)) return false;
  avro::CallStatus st{};
  std::string error;
  return avro::read_response(r, st, error) && st == avro::CallStatus::ok;
}

int free_port() {
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

}  // namespace

TEST_CASE("avro: python3-avro clients, with Flume's hash and with their own, deliver every event",
          "[integration][avro]") {
  TempDir tmp;
  const std::string out = tmp.file("out.json");
  AgentProcess agent("avro_source_file.toml", source_options(out));
  REQUIRE(agent.wait_ready());
  const std::string address = agent.source_address("av");
  // Flume's hash: BOTH on the first handshake.
  const std::string known = run_client(
      tmp, address, {"--known-hash", "--events", "5000", "--batch", "100", "--first", "1"});
  CHECK(known.find(R"({"ok": 50, "failed": 0, "errors": [])") == 0);
  // python-avro's own hash: NONE, then the protocol text, then OK.
  const std::string own =
      run_client(tmp, address, {"--events", "5000", "--batch", "100", "--first", "5001"});
  CHECK(own.find(R"({"ok": 50, "failed": 0, "errors": [])") == 0);
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 10000; }));
  const std::string text = read_file(out);
  CHECK(text.find(R"("headers":{"seq":"1","k":"v"},"fields":{},"body":"event-1"})") !=
        std::string::npos);
  CHECK(text.find(R"("headers":{"seq":"10000","k":"v"},"fields":{},"body":"event-10000"})") !=
        std::string::npos);
  CHECK(agent.metric(R"(sluice_avro_handshakes_refused_total{component="av",type="avro"})") == 1.0);
  CHECK(agent.metric(R"(sluice_avro_requests_total{component="av",type="avro",status="ok"})") ==
        100.0);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: the sink delivers to a python3-avro server, FAILED answers are retried",
          "[integration][avro]") {
  for (const bool known : {true, false}) {
    INFO((known ? "server with Flume's hash (BOTH)" : "server with its own hash (CLIENT)"));
    TempDir tmp;
    const std::string received = tmp.file("received.json"), addr = tmp.file("addr");
    std::vector<std::string> argv = {
        kPython,  flume_peer_script(), "server", "--addr-file", addr, "--out",
        received, "--fail-first",      "3"};
    if (known) argv.push_back("--known-hash");
    ChildProcess server(argv, tmp.file("server.log"));
    REQUIRE(eventually(10s, [&] { return !read_file(addr).empty(); }));
    std::string address = read_file(addr);
    address.pop_back();
    std::string input;
    for (int i = 1; i <= 3000; ++i) input += std::to_string(i) + "\n";
    write_file(tmp.file("in.txt"), input);
    AgentProcess::Options o;
    o.vars = {{"ADDRESS", address}, {"EXTRA", ""}};
    o.stdin_file = tmp.file("in.txt");
    AgentProcess agent("stdin_avro_sink.toml", o);
    CHECK(agent.wait_exit(60s) == 0);
    const auto lines = read_lines(received);
    REQUIRE(lines.size() == 3000);
    for (int i = 0; i < 3000; i += 999) {
      CHECK(lines[static_cast<std::size_t>(i)] ==
            R"({"headers": {}, "body": ")" + std::to_string(i + 1) + "\"}");
    }
    CHECK(agent.stderr_text().find("answered FAILED") != std::string::npos);
  }
}

TEST_CASE("avro: sluice to sluice, plain and with deflate, in order", "[integration][avro]") {
  for (const std::string compression : {"none", "deflate"}) {
    INFO(compression);
    TempDir tmp;
    const std::string out = tmp.file("out.json");
    AgentProcess collector("avro_source_file.toml",
                           source_options(out, "compression = \"" + compression + "\""));
    REQUIRE(collector.wait_ready());
    std::string input;
    for (int i = 1; i <= 20000; ++i) input += "line-" + std::to_string(i) + "\n";
    write_file(tmp.file("in.txt"), input);
    AgentProcess::Options o;
    o.vars = {{"ADDRESS", collector.source_address("av")},
              {"EXTRA", "compression = \"" + compression + "\""}};
    o.stdin_file = tmp.file("in.txt");
    AgentProcess web("stdin_avro_sink.toml", o);
    CHECK(web.wait_exit(60s) == 0);
    REQUIRE(eventually(10s, [&] { return count_lines(out) == 20000; }));
    const auto lines = read_lines(out);
    long expect = 1;
    bool ordered = true;
    for (const auto& l : lines) {
      ordered = ordered &&
                l.find("\"body\":\"line-" + std::to_string(expect++) + "\"") != std::string::npos;
    }
    CHECK(ordered);
    CHECK(collector.terminate() == 0);
  }
}

TEST_CASE("avro: bad frames close the connection, bad calls get an Avro error, both counted",
          "[integration][avro]") {
  TempDir tmp;
  const std::string out = tmp.file("out.json");
  AgentProcess agent("avro_source_file.toml",
                     source_options(out, "max_frame_bytes = \"1MiB\"\nmax_batch_events = 1000"));
  REQUIRE(agent.wait_ready());
  const std::string address = agent.source_address("av");
  const std::string labels = R"({component="av",type="avro"})";
  {
    Raw zero(address);  // a frame with no buffers
    zero.send(be32(1) + be32(0));
    CHECK_FALSE(zero.frame().has_value());
  }
  {
    Raw huge(address);  // a buffer of 2 GB
    huge.send(be32(1) + be32(1) + be32(0x7fffffff));
    CHECK_FALSE(huge.frame().has_value());
  }
  {
    Raw many(address);  // too many events in one call
    many.send(first_request(1, append_batch_call(1001)));
    const auto reply = many.frame();
    REQUIRE(reply.has_value());
    CHECK(reply->find("a batch of more than 1000 events") != std::string::npos);
  }
  CHECK(eventually(5s,
                   [&] { return agent.metric("sluice_avro_frame_errors_total" + labels) == 2.0; }));
  {
    Raw conn(address);
    // Truncated Avro: the call stops in the middle of an event.
    std::string call = append_batch_call(3);
    call.resize(call.size() - 4);
    conn.send(first_request(1, call));
    auto reply = conn.frame();
    REQUIRE(reply.has_value());
    avro::Reader r(*reply);
    avro::HandshakeResponse h;
    REQUIRE(avro::read_handshake_response(r, h));
    CHECK(h.match == avro::Match::both);
    avro::CallStatus st{};
    std::string error;
    CHECK_FALSE(avro::read_response(r, st, error));
    CHECK(error == "request truncated");
    // A wrong message name, on the same (now connected) connection: no handshake any more.
    std::string wrong;
    avro::Writer w(wrong);
    w.write_long(0);
    w.write_bytes("appendBatches");
    std::string frame;
    avro::encode_frame(2, wrong, frame);
    conn.send(frame);
    reply = conn.frame();
    REQUIRE(reply.has_value());
    avro::Reader r2(*reply);
    CHECK_FALSE(avro::read_response(r2, st, error));
    CHECK(error == "unknown message 'appendBatches'");
    // A good call still works on that connection.
    frame.clear();
    avro::encode_frame(3, append_batch_call(2), frame);
    conn.send(frame);
    reply = conn.frame();
    REQUIRE(reply.has_value());
    avro::Reader r3(*reply);
    REQUIRE(avro::read_response(r3, st, error));
    CHECK(st == avro::CallStatus::ok);
  }
  CHECK(agent.metric(R"(sluice_avro_requests_total{component="av",type="avro",status="error"})") ==
        3.0);
  REQUIRE(eventually(5s, [&] { return count_lines(out) == 2; }));
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: clients outside the allow-list are refused and counted", "[integration][avro]") {
  TempDir tmp;
  AgentProcess agent("avro_source_file.toml",
                     source_options(tmp.file("out.json"), R"(allow = ["10.0.0.0/8", "::1"])"));
  REQUIRE(agent.wait_ready());
  Raw conn(agent.source_address("av"));
  conn.send(first_request(1, append_batch_call(1)));
  CHECK_FALSE(conn.frame().has_value());
  CHECK(
      agent.metric(
          R"(sluice_avro_connections_refused_total{component="av",type="avro",reason="not_allowed"})") ==
      1.0);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: a full channel answers FAILED at once", "[integration][avro]") {
  TempDir tmp;
  // The channel drains into an Avro sink that cannot connect: it fills up. (lmdb: OK at the
  // durable put; with a memory channel OK waits for the sink.)
  const std::string conf = tmp.file("full.toml");
  write_file(conf, R"([agent]
data_dir = "@DATA_DIR@"
admin = "127.0.0.1:0"
[sources.av]
type = "avro"
listen = "127.0.0.1:0"
channel = "buf"
[channels.buf]
type = "lmdb"
max_events = 300
sync = "none"
[sinks.dead]
type = "avro"
channel = "buf"
address = "127.0.0.1:1"
)");
  AgentProcess::Options o;
  o.config_file = conf;
  AgentProcess agent("", o);
  REQUIRE(agent.wait_ready());
  const auto start = std::chrono::steady_clock::now();
  const std::string report =
      run_client(tmp, agent.source_address("av"), {"--events", "1000", "--batch", "100"});
  CHECK(std::chrono::steady_clock::now() - start < 20s);
  INFO(report);
  CHECK(report.find(R"({"ok": 3, "failed": 7)") == 0);
  CHECK(agent.metric(R"(sluice_avro_requests_total{component="av",type="avro",status="failed"})") ==
        7.0);
  CHECK(agent.signal_and_wait(SIGKILL) == -SIGKILL);
}

TEST_CASE("avro: OK means stored, through kill -9 with the lmdb channel", "[integration][avro]") {
  TempDir tmp;
  const std::string out = tmp.file("out.json"), state = tmp.file("state");
  fs::create_directories(state);
  const int kills = soak() ? 20 : 3;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  AgentProcess::Options o =
      source_options(out, "", "type = \"lmdb\"\nmax_bytes = \"256MiB\"\nsync = \"full\"", listen);
  o.dir = state;
  const long total = soak() ? 200000 : 30000;
  ChildProcess client(
      {kPython, flume_peer_script(), "client", listen, "--events", std::to_string(total), "--batch",
       "100", "--retry", "--out", tmp.file("report.json")},
      tmp.file("client.log"));
  std::mt19937 rng(42);
  int done = 0;
  for (int k = 0; k < kills && client.running(); ++k) {
    AgentProcess agent("avro_source_file.toml", o);
    REQUIRE(agent.wait_ready());
    // Kill while events flow through this agent, at a random point after they started to.
    const std::size_t before = count_lines(out);
    REQUIRE(eventually(20s, [&] { return count_lines(out) > before || !client.running(); }));
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
    CHECK(agent.signal_and_wait(SIGKILL) == -SIGKILL);
    ++done;
  }
  INFO("kills: " << done);
  CHECK(done >= 1);
  AgentProcess last("avro_source_file.toml", o);
  REQUIRE(last.wait_ready());
  REQUIRE(client.wait_exit(120s) == 0);
  const std::string report = read_file(tmp.file("report.json"));
  const auto acked_at = report.find("\"acked\": [");
  REQUIRE(acked_at != std::string::npos);
  std::size_t acked = 0;
  for (std::size_t at = acked_at; at < report.find(']', acked_at); at = report.find(',', at + 1))
    ++acked;
  CHECK(acked == static_cast<std::size_t>(total));
  // Every event answered OK reaches the far side, whatever the kills.
  REQUIRE(eventually(30s, [&] {
    std::set<long> seen;
    for (const auto& l : read_lines(out)) {
      const auto at = l.find("\"body\":\"event-");
      if (at != std::string::npos) seen.insert(std::stol(l.substr(at + 14)));
    }
    return seen.size() == static_cast<std::size_t>(total);
  }));
  CHECK(last.terminate() == 0);
}

TEST_CASE("avro: scenario 1, a web agent fails over from collector A to B and back, losing nothing",
          "[integration][avro]") {
  TempDir tmp;
  const std::string log = tmp.file("events.log"), out_a = tmp.file("a.json"),
                    out_b = tmp.file("b.json"), state_a = tmp.file("state-a");
  fs::create_directories(state_a);
  write_file(log, "");
  const std::string listen_a = "127.0.0.1:" + std::to_string(free_port());
  AgentProcess::Options oa = source_options(out_a, "", kMemory, listen_a);
  oa.dir = state_a;
  auto a = std::make_unique<AgentProcess>("avro_source_file.toml", oa);
  REQUIRE(a->wait_ready());
  AgentProcess b("avro_source_file.toml", source_options(out_b));
  REQUIRE(b.wait_ready());
  AgentProcess::Options ow;
  ow.vars = {{"LOG", log}, {"A", listen_a}, {"B", b.source_address("av")}};
  AgentProcess web("taildir_avro_failover.toml", ow);
  REQUIRE(web.wait_ready());
  auto seen = [&](const std::string& out) {
    std::set<long> s;
    for (const auto& l : read_lines(out)) {
      const auto at = l.find("\"body\":\"");
      if (at != std::string::npos) s.insert(std::stol(l.substr(at + 8)));
    }
    return s;
  };
  append_numbers(log, 1, 1000);
  REQUIRE(eventually(10s, [&] { return seen(out_a).size() == 1000; }));
  CHECK(seen(out_b).empty());  // everything to A while it is up
  CHECK(a->terminate() == 0);
  a.reset();
  append_numbers(log, 1001, 2000);
  REQUIRE(eventually(20s, [&] { return seen(out_b).count(2000) == 1; }));
  a = std::make_unique<AgentProcess>("avro_source_file.toml", oa);  // A again, same address
  REQUIRE(a->wait_ready());
  long next = 2001;
  REQUIRE(eventually(20s, [&] {
    append_numbers(log, next, next + 9);
    next += 10;
    const auto sa = seen(out_a);
    return sa.upper_bound(2000) != sa.end();
  }));
  // Failback: A gets the traffic again; every number written reaches A or B.
  const long last = next - 1;
  REQUIRE(eventually(20s, [&] {
    std::set<long> all = seen(out_a);
    for (long v : seen(out_b)) all.insert(v);
    return all.size() == static_cast<std::size_t>(last) && *all.rbegin() == last;
  }));
  CHECK(web.terminate() == 0);
  CHECK(a->terminate() == 0);
  CHECK(b.terminate() == 0);
}

TEST_CASE("avro: 20 concurrent clients, and idle connections closed after idle_timeout",
          "[integration][avro]") {
  TempDir tmp;
  const std::string out = tmp.file("out.json");
  AgentProcess agent("avro_source_file.toml", source_options(out, "idle_timeout = \"1s\""));
  REQUIRE(agent.wait_ready());
  const std::string address = agent.source_address("av");
  {
    Raw idle(address);  // connects and says nothing
    const auto start = std::chrono::steady_clock::now();
    CHECK_FALSE(idle.frame().has_value());  // closed by the server, not by our 5 s timeout
    CHECK(std::chrono::steady_clock::now() - start < 4s);
  }
  std::vector<std::unique_ptr<ChildProcess>> clients;
  for (int c = 0; c < 20; ++c) {
    clients.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{kPython, flume_peer_script(), "client", address, "--events", "500",
                                 "--batch", "50", "--first", std::to_string(c * 1000 + 1), "--out",
                                 tmp.file("r" + std::to_string(c))},
        tmp.file("c" + std::to_string(c) + ".log")));
  }
  for (auto& c : clients) CHECK(c->wait_exit(60s) == 0);
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 10000; }));
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: a broken deflate stream, the buffered-bytes budget, Flume's timestamp header",
          "[integration][avro]") {
  TempDir tmp;
  const std::string out = tmp.file("out.json");
  {
    AgentProcess agent("avro_source_file.toml", source_options(out, "compression = \"deflate\""));
    REQUIRE(agent.wait_ready());
    Raw conn(agent.source_address("av"));
    conn.send(first_request(1, append_batch_call(1)));  // not zlib
    CHECK_FALSE(conn.frame().has_value());
    CHECK(agent.metric(R"(sluice_avro_frame_errors_total{component="av",type="avro"})") == 1.0);
    CHECK(agent.stderr_text().find("not a zlib stream") != std::string::npos);
    CHECK(agent.terminate() == 0);
  }
  AgentProcess agent("avro_source_file.toml", source_options(out, "max_buffered_bytes = \"4KiB\""));
  REQUIRE(agent.wait_ready());
  const std::string address = agent.source_address("av");
  // Two clients each start a 3 KB frame: together they cross the 4 KiB budget.
  Raw a(address), b(address);
  const std::string head = be32(1) + be32(1) + be32(3000);
  a.send(head + std::string(3000 - 10, 'x'));
  REQUIRE(eventually(5s, [&] {
    return agent.metric(R"(sluice_avro_connections{component="av",type="avro"})") == 2.0;
  }));
  b.send(head + std::string(3000 - 10, 'y'));
  CHECK_FALSE(b.frame().has_value());
  CHECK(agent.metric(R"(sluice_avro_frame_errors_total{component="av",type="avro"})") == 1.0);
  CHECK(agent.stderr_text().find("exceed max_buffered_bytes") != std::string::npos);
  // A client with its own budget-sized request still gets through, and a "timestamp" header
  // (epoch ms, as Flume's timestamp interceptor writes) becomes the event time.
  Batch batch;
  batch.add("timed", 0, 0);
  batch.add_header("timestamp", "1750768209903");
  std::string call;
  avro::Writer w(call);
  avro::write_append_batch(w, batch, 0, 1);
  Raw c(address);
  c.send(first_request(1, call));
  const auto reply = c.frame();
  REQUIRE(reply.has_value());
  REQUIRE(eventually(5s, [&] { return count_lines(out) == 1; }));
  CHECK(read_file(out).find(R"({"timestamp":"2025-06-24T12:30:09.903000000Z")") == 0);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: a client that pipelines appends and never reads is paused, memory stays bounded",
          "[integration][avro]") {
  TempDir tmp;
  // /dev/null as the file sink: the channel drains fast, so only the answers can pile up.
  AgentProcess agent("avro_source_file.toml", source_options("/dev/null"));
  REQUIRE(agent.wait_ready());
  Raw conn(agent.source_address("av"));
  conn.send(first_request(0, append_call("x")));
  REQUIRE(conn.frame().has_value());
  const long rss_start = proc_status_kb(agent.pid(), "VmRSS");
  ::fcntl(conn.fd, F_SETFL, ::fcntl(conn.fd, F_GETFL) | O_NONBLOCK);
  constexpr int kFrames = 1'000'000, kPerChunk = 1000;
  const std::string call = append_call("x");
  auto chunk = [&](int first) {
    std::string out;
    for (int i = first; i < first + kPerChunk; ++i) avro::encode_frame(i, call, out);
    return out;
  };
  // Send without reading until every frame is out or the server stops reading (no progress for
  // 3 s: our socket buffer is full because sluice paused the connection).
  int sent_chunks = 0;
  std::string pending = chunk(1);
  std::size_t at = 0;
  bool stalled = false;
  auto last_progress = std::chrono::steady_clock::now();
  auto send_some = [&] {
    while (sent_chunks < kFrames / kPerChunk) {
      const ssize_t n = ::send(conn.fd, pending.data() + at, pending.size() - at, MSG_NOSIGNAL);
      if (n < 0) return;  // EAGAIN
      at += static_cast<std::size_t>(n);
      last_progress = std::chrono::steady_clock::now();
      if (at == pending.size()) {
        ++sent_chunks;
        pending = chunk(1 + sent_chunks * kPerChunk);
        at = 0;
      }
    }
  };
  while (sent_chunks < kFrames / kPerChunk) {
    send_some();
    if (std::chrono::steady_clock::now() - last_progress > 3s) {
      stalled = true;
      break;
    }
    pollfd p{conn.fd, POLLOUT, 0};
    ::poll(&p, 1, 100);
  }
  const long frames_before_stall = static_cast<long>(sent_chunks) * kPerChunk;
  // Let sluice work through what it has read before measuring.
  std::this_thread::sleep_for(1s);
  const long rss = proc_status_kb(agent.pid(), "VmRSS"), hwm = proc_status_kb(agent.pid(), "VmHWM");
  UNSCOPED_INFO("frames sent before the stall: " << frames_before_stall << ", VmRSS " << rss_start
                                                 << " kB at start, " << rss << " kB now, VmHWM "
                                                 << hwm << " kB");
  WARN("pipelining: frames sent before the stall: " << frames_before_stall << ", VmRSS "
                                                    << rss_start << " -> " << rss << " kB, VmHWM "
                                                    << hwm << " kB");
  CHECK(stalled);
  CHECK((sluice::test::kSanitized || hwm < 100 * 1024));
  CHECK(agent.metric(R"(sluice_avro_reads_paused_total{component="av",type="avro"})").value_or(0) >=
        1.0);
  // Back-pressure, not loss: once the client reads, every request is answered once.
  long answered = 0;
  std::vector<bool> seen(kFrames + 1);
  std::string in;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (answered < kFrames && std::chrono::steady_clock::now() < deadline) {
    send_some();
    char buf[65536];
    const ssize_t n = ::recv(conn.fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n > 0) in.append(buf, static_cast<std::size_t>(n));
    std::size_t p = 0;
    while (in.size() - p >= 12) {
      const auto* u = reinterpret_cast<const unsigned char*>(in.data() + p);
      const std::uint32_t serial = (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) |
                                   (std::uint32_t{u[2]} << 8) | u[3];
      const std::uint32_t len = (std::uint32_t{u[8]} << 24) | (std::uint32_t{u[9]} << 16) |
                                (std::uint32_t{u[10]} << 8) | u[11];
      if (in.size() - p < 12 + len) break;
      // Answers may overtake each other (FAILED at once, OK at on_safe): match them by serial.
      if (serial < 1 || serial > static_cast<std::uint32_t>(kFrames) || seen[serial]) {
        FAIL("unexpected answer " << serial);
      }
      seen[serial] = true;
      ++answered;
      p += 12 + len;
    }
    in.erase(0, p);
    if (n < 0) {
      pollfd pf{conn.fd, POLLIN | POLLOUT, 0};
      ::poll(&pf, 1, 100);
    }
  }
  CHECK(answered == kFrames);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: a client trickling a frame is closed after frame_timeout, its slot is reused",
          "[integration][avro]") {
  TempDir tmp;
  const std::string out = tmp.file("out.json");
  AgentProcess agent("avro_source_file.toml",
                     source_options(out, "max_connections = 1\nframe_timeout = \"1s\""));
  REQUIRE(agent.wait_ready());
  const std::string address = agent.source_address("av");
  {
    Raw slow(address);
    // One byte every 200 ms: always active, so idle_timeout never fires, but the frame never ends.
    const std::string frame = first_request(1, append_call("slow"));
    const auto start = std::chrono::steady_clock::now();
    std::size_t i = 0;
    bool closed = false;
    while (std::chrono::steady_clock::now() - start < 6s) {
      if (peer_closed(slow.fd)) {
        closed = true;
        break;
      }
      if (i < frame.size() - 1) {
        ::send(slow.fd, frame.data() + i, 1, MSG_NOSIGNAL);
        ++i;
      }
      std::this_thread::sleep_for(200ms);
    }
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(closed);
    CHECK(took >= 900ms);
    CHECK(took < 3s);
  }
  CHECK(
      agent.metric(
          R"(sluice_avro_connections_closed_total{component="av",type="avro",reason="frame_timeout"})") ==
      1.0);
  // The slot is free again: a new client is served.
  Raw fresh(address);
  fresh.send(first_request(1, append_call("fresh")));
  CHECK(fresh.frame().has_value());
  REQUIRE(eventually(5s, [&] { return count_lines(out) == 1; }));
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: max_connections_per_address refuses the extra connection, counted",
          "[integration][avro]") {
  TempDir tmp;
  const std::string out = tmp.file("out.json");
  AgentProcess agent("avro_source_file.toml",
                     source_options(out, "max_connections_per_address = 2"));
  REQUIRE(agent.wait_ready());
  const std::string address = agent.source_address("av");
  Raw a(address), b(address);
  REQUIRE(eventually(5s, [&] {
    return agent.metric(R"(sluice_avro_connections{component="av",type="avro"})") == 2.0;
  }));
  Raw c(address);
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(c.frame().has_value());  // closed at once, not by our 5 s receive timeout
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK(
      agent.metric(
          R"(sluice_avro_connections_refused_total{component="av",type="avro",reason="max_connections_per_address"})") ==
      1.0);
  a.send(first_request(1, append_call("a")));
  b.send(first_request(1, append_call("b")));
  CHECK(a.frame().has_value());
  CHECK(b.frame().has_value());
  REQUIRE(eventually(5s, [&] { return count_lines(out) == 2; }));
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: frame_timeout, handshake_timeout and max_connections_per_address are checked",
          "[integration][avro]") {
  TempDir tmp;
  write_file(tmp.file("bad.toml"), R"([agent]
data_dir = "/tmp/x"
[sources.av]
type = "avro"
listen = "127.0.0.1:0"
channel = "buf"
frame_timeout = "0s"
handshake_timeout = "1h"
max_connections_per_address = 0
[channels.buf]
type = "memory"
[sinks.out]
type = "stdout"
channel = "buf"
)");
  const auto [code, text] = run_sluice({"check", "-c", tmp.file("bad.toml")});
  CHECK(code == 2);
  const std::string file = tmp.file("bad.toml");
  CHECK(text.find(file + ":7:17: sources.av.frame_timeout: must be in [100ms, 1h], got 0s") !=
        std::string::npos);
  CHECK(text.find(file + ":8:21: sources.av.handshake_timeout: must be in [100ms, 10m], got 1h") !=
        std::string::npos);
  CHECK(text.find(file +
                  ":9:31: sources.av.max_connections_per_address: must be in [1, 100000], got 0") !=
        std::string::npos);
}

TEST_CASE("avro: many clients flooding a full channel without reading keep memory bounded",
          "[integration][avro]") {
  TempDir tmp;
  // The sink writes to /dev/full and fails: the channel stays full, every call is refused.
  AgentProcess agent("avro_source_file.toml",
                     source_options("/dev/full", "", "type = \"memory\"\nmax_events = 1000"));
  REQUIRE(agent.wait_ready());
  const std::string address = agent.source_address("av");
  constexpr int kClients = 100;
  std::vector<std::unique_ptr<Raw>> clients;
  const std::string call = append_call("x");
  std::string flood;
  for (int i = 1; i <= 2000; ++i) avro::encode_frame(i, call, flood);
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<Raw>(address));
    clients.back()->send(first_request(0, call));
    ::fcntl(clients.back()->fd, F_SETFL, ::fcntl(clients.back()->fd, F_GETFL) | O_NONBLOCK);
  }
  // Each client sends until sluice stops reading it (its answers are not read), whole frames
  // in order: a partial send continues where it stopped.
  std::vector<std::size_t> at(kClients, 0);
  std::size_t sent = 0;
  auto last_progress = std::chrono::steady_clock::now();
  const auto start = last_progress;
  auto next_probe = start + 1s;
  // The admin endpoint shares the loop with the flooded source: it must keep answering (an
  // orchestrator's probe gives up after 1 s). Each probe pauses the senders, not sluice's backlog.
  std::chrono::milliseconds worst_probe{0};
  int probes = 0, probes_ok = 0;
  auto probe = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    const HttpReply r = http_get(agent.admin(), "/healthz");
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    worst_probe = std::max(worst_probe, took);
    ++probes;
    if (r.status != 0) ++probes_ok;
  };
  while (std::chrono::steady_clock::now() - last_progress < 2s &&
         std::chrono::steady_clock::now() - start < 30s) {
    for (std::size_t i = 0; i < clients.size(); ++i) {
      const ssize_t n =
          ::send(clients[i]->fd, flood.data() + at[i], flood.size() - at[i], MSG_NOSIGNAL);
      if (n > 0) {
        at[i] = (at[i] + static_cast<std::size_t>(n)) % flood.size();
        sent += static_cast<std::size_t>(n);
        last_progress = std::chrono::steady_clock::now();
      }
    }
    if (std::chrono::steady_clock::now() >= next_probe) {
      probe();
      next_probe = std::chrono::steady_clock::now() + 1s;
      last_progress = std::chrono::steady_clock::now();  // the probe's time is not a stall
    }
  }
  probe();  // with every client's backlog still queued in the kernel
  const long hwm = proc_status_kb(agent.pid(), "VmHWM");
  WARN("flood: " << kClients << " clients sent " << sent / (1 << 20) << " MiB (" << sent / 23
                 << " calls), VmHWM " << hwm << " kB, /healthz answered " << probes_ok << " of "
                 << probes << " probes, the slowest in " << worst_probe.count() << " ms");
  CHECK((sluice::test::kSanitized || hwm < 100 * 1024));
  CHECK(probes_ok == probes);
  CHECK(worst_probe < (sluice::test::kSanitized ? 4000ms : 1000ms));
  CHECK(agent.metric(R"(sluice_avro_requests_total{component="av",type="avro",status="failed"})")
            .value_or(0) > 1e6);
  clients.clear();
  // The failing sink keeps events in the memory channel, so SIGTERM would wait shutdown_timeout.
  CHECK(agent.signal_and_wait(SIGKILL) == -SIGKILL);
}

TEST_CASE("avro: SIGTERM with answers a client does not read exits 0 within the close timeout",
          "[integration][avro]") {
  TempDir tmp;
  AgentProcess agent("avro_source_file.toml", source_options("/dev/null"));
  REQUIRE(agent.wait_ready());
  Raw conn(agent.source_address("av"));
  conn.send(first_request(0, append_call("x")));
  REQUIRE(conn.frame().has_value());
  ::fcntl(conn.fd, F_SETFL, ::fcntl(conn.fd, F_GETFL) | O_NONBLOCK);
  std::string flood;
  for (int i = 1; i <= 2000; ++i) avro::encode_frame(i, append_call("x"), flood);
  std::size_t at = 0;
  auto last_progress = std::chrono::steady_clock::now();
  const auto start = last_progress;
  while (std::chrono::steady_clock::now() - last_progress < 2s &&
         std::chrono::steady_clock::now() - start < 30s) {
    const ssize_t n = ::send(conn.fd, flood.data() + at, flood.size() - at, MSG_NOSIGNAL);
    if (n > 0) {
      at = (at + static_cast<std::size_t>(n)) % flood.size();
      last_progress = std::chrono::steady_clock::now();
    } else {
      std::this_thread::sleep_for(10ms);
    }
  }
  REQUIRE(
      agent.metric(R"(sluice_avro_reads_paused_total{component="av",type="avro"})").value_or(0) >=
      1.0);
  // Stopping sends the queued answers first; a client that takes none is cut off after 5 s.
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(agent.terminate() == 0);
  const auto took = std::chrono::steady_clock::now() - t0;
  WARN("SIGTERM with unread answers: exit after "
       << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took < 8s);
}

TEST_CASE("avro: large appendBatch calls are decoded off the loop, in order, /healthz answering",
          "[integration][avro]") {
  TempDir tmp;
  const std::string out = tmp.file("out.json");
  AgentProcess agent(
      "avro_source_file.toml",
      source_options(out, "max_batch_events = 100000",
                     "type = \"memory\"\nmax_events = 1000000\nmax_bytes = \"1GiB\""));
  REQUIRE(agent.wait_ready());
  // 60,000 events of 1,000 bytes a call (60 MB, under the 64 MiB frame limit).
  constexpr int kCalls = 3, kEvents = 60'000;
  std::string big;
  {
    Batch b;
    const std::string pad(990, 'p');
    for (int i = 0; i < kEvents; ++i) b.add("big-" + std::to_string(i) + "-" + pad, 0, 0);
    std::string call;
    avro::Writer w(call);
    avro::write_append_batch(w, b, 0, b.size());
    for (int i = 0; i < kCalls; ++i) avro::encode_frame(2 + i, call, big);
  }
  std::string after;
  avro::encode_frame(2 + kCalls, append_call("after"), after);
  HealthzPoller health(agent.admin());
  Raw conn(agent.source_address("av"));
  timeval tv{30, 0};
  ::setsockopt(conn.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const auto t0 = std::chrono::steady_clock::now();
  // Pipelined: a small call, the large ones, a small call, all sent before any answer is read.
  conn.send(first_request(1, append_call("first")));
  conn.send(big);
  conn.send(after);
  int ok = 0;
  for (int i = 0; i < kCalls + 2; ++i) ok += ok_answer(conn.frame(), i == 0) ? 1 : 0;
  const auto took = std::chrono::steady_clock::now() - t0;
  health.stop();
  const long long worst_us = health.worst_us();
  std::printf(
      "avro decode: %d x 60 MB appendBatch in %lld ms; /healthz worst %lld us over %d "
      "polls\n",
      kCalls,
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()),
      worst_us, health.polls());
  CHECK(ok == kCalls + 2);
  CHECK(health.failed() == 0);
  // The events reach the channel in the order the client sent the calls.
  const std::size_t total = kCalls * kEvents + 2;
  REQUIRE(eventually(60s, [&] { return count_lines(out) == total; }));
  const std::string text = read_file(out);
  const std::string first_line = text.substr(0, text.find('\n'));
  const std::string last_line = text.substr(text.rfind('\n', text.size() - 2) + 1);
  CHECK(first_line.find("first") != std::string::npos);
  CHECK(last_line.find("after") != std::string::npos);
  std::size_t at = text.find('\n') + 1, ordered = 0;
  for (int c = 0; c < kCalls; ++c) {
    for (int i = 0; i < kEvents; ++i) {
      const std::size_t end = text.find('\n', at);
      const std::string line = text.substr(at, end - at);
      if (line.find("\"big-" + std::to_string(i) + "-") != std::string::npos) ++ordered;
      at = end + 1;
    }
  }
  CHECK(ordered == static_cast<std::size_t>(kCalls) * kEvents);
  // Decoding one such call on the loop held /healthz 75-108 ms. Off the loop a turn puts about
  // 1 MiB (a few ms); on a loaded machine every figure grows, so the bound is 40 ms or, if the
  // calls took longer than usual, a tenth of one call's time.
  const long long per_call_us =
      std::chrono::duration_cast<std::chrono::microseconds>(took).count() / kCalls;
  // Under AddressSanitizer, tests running two at a time, one CI run saw 128 ms.
  CHECK((worst_us < (sluice::test::kSanitized ? 400'000 : 40'000) || worst_us * 10 < per_call_us));
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: connections that each sent a large call and stay open do not keep its size",
          "[integration][avro]") {
  AgentProcess agent(
      "avro_source_file.toml",
      source_options("/dev/null", "max_batch_events = 100000",
                     "type = \"memory\"\nmax_events = 1000000\nmax_bytes = \"1GiB\""));
  REQUIRE(agent.wait_ready());
  const std::string address = agent.source_address("av");
  // 20,000 events of 1,000 bytes a call (20 MB), one call on each of 20 connections.
  constexpr int kConns = 20, kEvents = 20'000;
  std::string call;
  {
    Batch b;
    const std::string pad(995, 'p');
    for (int i = 0; i < kEvents; ++i) b.add(pad + std::to_string(i % 10'000), 0, 0);
    avro::Writer w(call);
    avro::write_append_batch(w, b, 0, b.size());
  }
  const std::string request = first_request(1, call);
  std::vector<std::unique_ptr<Raw>> conns;
  int ok = 0;
  for (int i = 0; i < kConns; ++i) {
    conns.push_back(std::make_unique<Raw>(address));
    conns.back()->send(request);
    if (ok_answer(conns.back()->frame(), true)) ++ok;
  }
  CHECK(ok == kConns);
  const std::string sink_ok =
      R"(sluice_sink_events_total{component="out",type="file",outcome="ok"})";
  REQUIRE(eventually(30s, [&] {
    return agent.metric(sink_ok).value_or(0) >= static_cast<double>(kConns) * kEvents;
  }));
  // The buffers are freed on the threadpool after the answer: give it a moment, bounded.
  long rss = 0;
  const bool low = eventually(10s, [&] {
    rss = proc_status_kb(agent.pid(), "VmRSS");
    return rss < 64 * 1024;
  });
  std::printf("avro: %d connections open after a 20 MB call each: VmRSS %ld kB\n", kConns, rss);
  // Each connection kept its frame buffer (32 MiB, 20 MB of it touched): 472 MB. Then the freed
  // buffers stayed in malloc's arenas: 259 MB, 116 MB with malloc_trim after each large call;
  // about 26 MB with the mmap threshold fixed. AddressSanitizer keeps freed memory on purpose.
  CHECK((sluice::test::kSanitized || low));
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: a large call goes through the source's format once, off the loop",
          "[integration][avro]") {
  TempDir tmp;
  const std::string out = tmp.file("out.json");
  AgentProcess agent("avro_source_file.toml",
                     source_options(out, "format = \"json\"\nmax_batch_events = 100000"));
  REQUIRE(agent.wait_ready());
  // 3,000 JSON events of about 200 bytes (600 KB: over the 256 KiB decoded inline) and one that is
  // not JSON.
  Batch b;
  b.add("not json", 0, 0);
  for (int i = 0; i < 3000; ++i) {
    b.add(R"({"seq":)" + std::to_string(i) + R"(,"msg":")" + std::string(180, 'm') + "\"}", 0, 0);
  }
  std::string call;
  avro::Writer w(call);
  avro::write_append_batch(w, b, 0, b.size());
  REQUIRE(call.size() > 256 * 1024);
  Raw conn(agent.source_address("av"));
  conn.send(first_request(1, call));
  CHECK(ok_answer(conn.frame(), true));
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 3001; }));
  // Counted once: the pipeline ran on the threadpool and not again on the loop.
  CHECK(agent.metric(R"(sluice_source_parse_errors_total{component="av",type="avro",)"
                     R"(reason="json_syntax"})") == 1.0);
  const std::string text = read_file(out);
  CHECK(text.find(R"("seq":2999)") != std::string::npos);
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: a large call that is truncated or has too many events gets an error off the loop",
          "[integration][avro]") {
  TempDir tmp;
  const std::string out = tmp.file("out.json");
  AgentProcess agent("avro_source_file.toml", source_options(out, "max_batch_events = 2000"));
  REQUIRE(agent.wait_ready());
  const std::string labels = R"({component="av",type="avro",status="error"})";
  auto big_call = [](int events) {
    Batch b;
    const std::string pad(300, 'p');
    for (int i = 0; i < events; ++i) b.add(pad + std::to_string(i), 0, 0);
    std::string call;
    avro::Writer w(call);
    avro::write_append_batch(w, b, 0, b.size());
    return call;
  };
  auto error_of = [](const std::optional<std::string>& reply, bool handshake) {
    REQUIRE(reply.has_value());
    avro::Reader r(*reply);
    avro::HandshakeResponse h;
    if (handshake) REQUIRE(avro::read_handshake_response(r, h));
    avro::CallStatus st{};
    std::string error;
    CHECK_FALSE(avro::read_response(r, st, error));
    return error;
  };
  Raw conn(agent.source_address("av"));
  // 1,500 events of 300 bytes (over the 256 KiB decoded inline), cut in the middle of an event.
  std::string truncated = big_call(1500);
  REQUIRE(truncated.size() > 256 * 1024);
  truncated.resize(truncated.size() - 100);
  conn.send(first_request(1, truncated));
  CHECK(error_of(conn.frame(), true) == "request truncated");
  // More events than max_batch_events, on the same connection.
  std::string frame;
  avro::encode_frame(2, big_call(2500), frame);
  conn.send(frame);
  CHECK(error_of(conn.frame(), false).find("a batch of more than 2000 events") !=
        std::string::npos);
  CHECK(agent.metric("sluice_avro_requests_total" + labels) == 2.0);
  // Nothing of either call was put, and the connection still takes a good large call.
  frame.clear();
  avro::encode_frame(3, big_call(1500), frame);
  conn.send(frame);
  CHECK(ok_answer(conn.frame(), false));
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 1500; }));
  CHECK(agent.terminate() == 0);
}

TEST_CASE("avro: a client that leaves while its large calls decode or wait has none put in part",
          "[integration][avro]") {
  TempDir tmp;
  const std::string out = tmp.file("out.json");
  AgentProcess agent(
      "avro_source_file.toml",
      source_options(out, "max_batch_events = 100000",
                     "type = \"memory\"\nmax_events = 1000000\nmax_bytes = \"1GiB\""));
  REQUIRE(agent.wait_ready());
  const std::string address = agent.source_address("av");
  // Calls of 20,000 events of about 260 bytes (5 MB: decoded on the threadpool).
  constexpr int kRounds = 6, kCalls = 3, kEvents = 20'000;
  auto big_call = [&](int round, int call) {
    Batch b;
    const std::string pad(240, 'p');
    const std::string tag = "c" + std::to_string(round) + "-" + std::to_string(call) + "-";
    for (int i = 0; i < kEvents; ++i) b.add(tag + std::to_string(i) + "-" + pad, 0, 0);
    std::string body;
    avro::Writer w(body);
    avro::write_append_batch(w, b, 0, b.size());
    return body;
  };
  for (int round = 0; round < kRounds; ++round) {
    std::string wire = first_request(1, big_call(round, 0));
    for (int call = 1; call < kCalls; ++call)
      avro::encode_frame(1 + call, big_call(round, call), wire);
    Raw conn(address);
    if (round % 2 == 1) {
      // Odd rounds leave with a reset, even ones with a FIN.
      linger l{1, 0};
      ::setsockopt(conn.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    conn.send(wire);  // the calls are read, decoded or held; no answer is read
  }
  // Another client is served meanwhile.
  Raw next(address);
  next.send(first_request(1, append_call("after")));
  CHECK(ok_answer(next.frame(), true));
  // A client that left with a FIN is closed once its calls were read (its connection is not read
  // while one decodes); one that reset, at once. Then every call was put or dropped, and the
  // sink writes what was put.
  const std::string labels = R"({component="av",type="avro"})";
  REQUIRE(eventually(60s, [&] { return agent.metric("sluice_avro_connections" + labels) == 1.0; }));
  const std::string sink_ok =
      R"(sluice_sink_events_total{component="out",type="file",outcome="ok"})";
  REQUIRE(eventually(30s, [&] {
    return agent.metric(sink_ok).value_or(-1) ==
           agent.metric("sluice_source_events_total" + labels).value_or(-2);
  }));
  // The clients had no answer (they send the calls again elsewhere): a call is put whole, before
  // its client left, or not at all.
  std::map<std::string, int> per_call;
  const std::string text = read_file(out);
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t end = text.find('\n', at);
    if (end == std::string::npos) break;
    const std::size_t c = text.find(R"("body":"c)", at);
    if (c != std::string::npos && c < end) {
      const std::size_t from = c + 8, dash = text.find('-', text.find('-', from) + 1);
      ++per_call[text.substr(from, dash - from)];
    }
    at = end + 1;
  }
  int whole = 0;
  for (const auto& [call, n] : per_call) {
    INFO("call " << call);
    CHECK(n == kEvents);
    if (n == kEvents) ++whole;
  }
  std::printf("avro: %d clients left with %d large calls unanswered; %d of the calls were put\n",
              kRounds, kRounds * kCalls, whole);
  // What the calls grew is freed once their jobs end, and the agent answers and stops cleanly.
  long rss = 0;
  const bool low = eventually(10s, [&] {
    rss = proc_status_kb(agent.pid(), "VmRSS");
    return rss < 64 * 1024;
  });
  CHECK((sluice::test::kSanitized || low));
  CHECK(http_get(agent.admin(), "/healthz").status == 200);
  CHECK(agent.terminate() == 0);
}

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <thread>

#include "tests/support/agent_process.h"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// A test PKI made by tests/support/make_pki.sh (openssl req / x509).
std::string make_pki(const TempDir& tmp) {
  const std::string dir = tmp.file("pki");
  const std::string cmd =
      "bash " + std::string(SLUICE_SOURCE_DIR) + "/tests/support/make_pki.sh " + dir;
  REQUIRE(std::system(cmd.c_str()) == 0);
  return dir;
}

int run(const std::string& cmd) { return WEXITSTATUS(std::system(cmd.c_str())); }

// A plain TCP connection to "IP:PORT".
int connect_to(const std::string& address) {
  const auto colon = address.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

bool peer_closed(int fd) {
  char c;
  const ssize_t r = ::recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
  return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

}  // namespace

TEST_CASE("tls: sluice to sluice over Avro with TLS and client certificates",
          "[integration][tls]") {
  TempDir tmp;
  const std::string pki = make_pki(tmp);
  const std::string out = tmp.file("out.json");
  AgentProcess::Options c;
  c.vars = {{"OUT", out},
            {"LISTEN", "127.0.0.1:0"},
            {"CHANNEL", "type = \"memory\""},
            {"EXTRA", "tls = { cert = \"" + pki + "/server.pem\", key = \"" + pki +
                          "/server.key\", ca = \"" + pki + "/ca.pem\", verify_client = true }"}};
  AgentProcess collector("avro_source_file.toml", c);
  REQUIRE(collector.wait_ready());
  const std::string address = collector.source_address("av");
  std::string input;
  for (int i = 1; i <= 5000; ++i) input += "tls-" + std::to_string(i) + "\n";
  write_file(tmp.file("in.txt"), input);
  {
    AgentProcess::Options s;
    s.vars = {{"ADDRESS", address},
              {"EXTRA", "tls = { ca = \"" + pki + "/ca.pem\", cert = \"" + pki +
                            "/client.pem\", key = \"" + pki + "/client.key\" }"}};
    s.stdin_file = tmp.file("in.txt");
    AgentProcess sender("stdin_avro_sink.toml", s);
    CHECK(sender.wait_exit(60s) == 0);
  }
  REQUIRE(eventually(10s, [&] { return count_lines(out) == 5000; }));
  CHECK(read_file(out).find(R"("body":"tls-5000")") != std::string::npos);

  // A sender without a client certificate is refused by the collector.
  AgentProcess::Options nocert;
  nocert.vars = {{"ADDRESS", address}, {"EXTRA", "tls = { ca = \"" + pki + "/ca.pem\" }"}};
  nocert.stdin_file = tmp.file("in.txt");
  AgentProcess refused("stdin_avro_sink.toml", nocert);
  REQUIRE(eventually(10s, [&] {
    return collector.metric(R"(sluice_tls_handshake_errors_total{component="av",type="avro"})")
               .value_or(0) >= 1.0;
  }));
  CHECK(count_lines(out) == 5000);
  CHECK(refused.signal_and_wait(SIGKILL) == -SIGKILL);

  // A collector whose certificate the sender does not trust: nothing sent, counted and logged.
  AgentProcess::Options wrong;
  wrong.vars = {{"ADDRESS", address},
                {"EXTRA", "tls = { ca = \"" + pki + "/other-ca.pem\", cert = \"" + pki +
                              "/client.pem\", key = \"" + pki + "/client.key\" }"}};
  wrong.stdin_file = tmp.file("in.txt");
  AgentProcess untrusting("stdin_avro_sink.toml", wrong);
  REQUIRE(untrusting.wait_ready());
  REQUIRE(eventually(10s, [&] {
    return untrusting.metric(R"(sluice_tls_handshake_errors_total{component="up",type="avro"})")
               .value_or(0) >= 1.0;
  }));
  CHECK(untrusting.signal_and_wait(SIGKILL) == -SIGKILL);
  INFO(untrusting.stderr_text());
  CHECK(untrusting.stderr_text().find(
            "TLS handshake failed: self-signed certificate in certificate chain") !=
        std::string::npos);
  CHECK(count_lines(out) == 5000);
  CHECK(collector.terminate() == 0);
}

TEST_CASE("tls: the http source over HTTPS, checked with curl", "[integration][tls]") {
  TempDir tmp;
  const std::string pki = make_pki(tmp);
  const std::string out = tmp.file("out.json");
  AgentProcess::Options o;
  o.vars = {
      {"EXTRA", "tls = { cert = \"" + pki + "/server.pem\", key = \"" + pki + "/server.key\" }"},
      {"CHANNEL", "type = \"memory\""},
      {"SINK", "file"},
      {"SINK_EXTRA", "path = \"" + out + "\""}};
  AgentProcess agent("http_file.toml", o);
  REQUIRE(agent.wait_ready());
  const std::string url = "https://" + agent.source_address("web") + "/";
  const std::string curl = "curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: text/plain' ";
  CHECK(run(curl + "--cacert " + pki + "/ca.pem --data-binary 'over tls' " + url +
            " | grep -q 200") == 0);
  // Without trusting the CA the client refuses; with the wrong CA too. Plain HTTP gets nothing.
  CHECK(run(curl + "-d x " + url + " >/dev/null") != 0);
  CHECK(run(curl + "--cacert " + pki + "/other-ca.pem -d x " + url + " >/dev/null") != 0);
  CHECK(run(curl + "-d x http://" + agent.source_address("web") + "/ | grep -q 200") != 0);
  CHECK(count_lines(out) == 1);
  CHECK(agent.metric(R"(sluice_tls_handshake_errors_total{component="web",type="http"})") == 3.0);
  CHECK(agent.terminate() == 0);
  // Logged, rate-limited: the reason is named.
  CHECK(agent.stderr_text().find("TLS handshake failed") != std::string::npos);
}

TEST_CASE("tls: unreadable or mismatched certificate files are configuration errors",
          "[integration][tls]") {
  TempDir tmp;
  const std::string pki = make_pki(tmp);
  write_file(tmp.file("bad.toml"), R"([agent]
data_dir = "/tmp/x"
[sources.web]
type = "http"
listen = "127.0.0.1:0"
channel = "buf"
tls = { cert = ")" + pki + R"(/server.pem", key = ")" +
                                       pki + R"(/client.key" }
[sources.av]
type = "avro"
listen = "127.0.0.1:0"
channel = "buf"
tls = { cert = "/nonexistent.pem", key = "/nonexistent.key", verify_client = true }
[channels.buf]
type = "memory"
[sinks.out]
type = "stdout"
channel = "buf"
)");
  const auto [code, text] = run_sluice({"check", "-c", tmp.file("bad.toml")});
  CHECK(code == 2);
  INFO(text);
  CHECK(text.find("sources.web.tls: tls: cannot load the key " + pki +
                  "/client.key: error:05800074:x509 certificate routines::key values mismatch") !=
        std::string::npos);
  CHECK(text.find("sources.av.tls.cert: cannot read \"/nonexistent.pem\"") != std::string::npos);
  CHECK(text.find("sources.av.tls.verify_client: needs 'ca'") != std::string::npos);
}

TEST_CASE("tls: TLS with deflate, in Flume 1.9's and Flume 1.10's layering", "[integration][tls]") {
  TempDir tmp;
  const std::string pki = make_pki(tmp);
  std::string input;
  for (int i = 1; i <= 3000; ++i) input += "z-" + std::to_string(i) + "\n";
  write_file(tmp.file("in.txt"), input);
  for (const std::string layering : {"tls_outside", "zlib_outside"}) {
    INFO(layering);
    const std::string out = tmp.file(layering + ".json");
    const std::string common = "compression = \"deflate\"\nlayering = \"" + layering + "\"\n";
    AgentProcess::Options c;
    c.vars = {{"OUT", out},
              {"LISTEN", "127.0.0.1:0"},
              {"CHANNEL", "type = \"memory\""},
              {"EXTRA", common + "tls = { cert = \"" + pki + "/server.pem\", key = \"" + pki +
                            "/server.key\" }"}};
    AgentProcess collector("avro_source_file.toml", c);
    REQUIRE(collector.wait_ready());
    AgentProcess::Options s;
    s.vars = {{"ADDRESS", collector.source_address("av")},
              {"EXTRA", common + "tls = { ca = \"" + pki + "/ca.pem\" }"}};
    s.stdin_file = tmp.file("in.txt");
    AgentProcess sender("stdin_avro_sink.toml", s);
    CHECK(sender.wait_exit(60s) == 0);
    REQUIRE(eventually(10s, [&] { return count_lines(out) == 3000; }));
    CHECK(collector.terminate() == 0);
  }
  // The setting takes effect: ends that disagree cannot talk (errors counted, nothing arrives).
  const std::string out = tmp.file("mismatch.json");
  AgentProcess::Options c;
  c.vars = {{"OUT", out},
            {"LISTEN", "127.0.0.1:0"},
            {"CHANNEL", "type = \"memory\""},
            {"EXTRA", "compression = \"deflate\"\nlayering = \"zlib_outside\"\ntls = { cert = \"" +
                          pki + "/server.pem\", key = \"" + pki + "/server.key\" }"}};
  AgentProcess collector("avro_source_file.toml", c);
  REQUIRE(collector.wait_ready());
  AgentProcess::Options s;
  s.vars = {{"ADDRESS", collector.source_address("av")},
            {"EXTRA", "compression = \"deflate\"\ntls = { ca = \"" + pki + "/ca.pem\" }"}};
  s.stdin_file = tmp.file("in.txt");
  AgentProcess sender("stdin_avro_sink.toml", s);
  REQUIRE(eventually(10s, [&] {
    return collector.metric(R"(sluice_avro_frame_errors_total{component="av",type="avro"})")
               .value_or(0) >= 1.0;
  }));
  CHECK(count_lines(out) == 0);
  CHECK(sender.signal_and_wait(SIGKILL) == -SIGKILL);
  CHECK(collector.terminate() == 0);
}

TEST_CASE("tls: the avro sink refuses a trusted certificate that names another host",
          "[integration][tls]") {
  TempDir tmp;
  const std::string pki = make_pki(tmp);
  const std::string out = tmp.file("out.json");
  AgentProcess::Options c;
  // client.pem is signed by the trusted CA but names "client", not 127.0.0.1.
  c.vars = {
      {"OUT", out},
      {"LISTEN", "127.0.0.1:0"},
      {"CHANNEL", "type = \"memory\""},
      {"EXTRA", "tls = { cert = \"" + pki + "/client.pem\", key = \"" + pki + "/client.key\" }"}};
  AgentProcess collector("avro_source_file.toml", c);
  REQUIRE(collector.wait_ready());
  write_file(tmp.file("in.txt"), "one\n");
  AgentProcess::Options s;
  s.vars = {{"ADDRESS", collector.source_address("av")},
            {"EXTRA", "tls = { ca = \"" + pki + "/ca.pem\" }"}};
  s.stdin_file = tmp.file("in.txt");
  AgentProcess sender("stdin_avro_sink.toml", s);
  // Not ready (its only sink fails), so read /metrics directly from the admin address.
  const std::string admin = sender.source_address("admin");
  const std::string series = R"(sluice_tls_handshake_errors_total{component="up",type="avro"} )";
  REQUIRE(eventually(10s, [&] {
    const std::string body = http_get(admin, "/metrics").body;
    const auto at = body.find(series);
    return at != std::string::npos && std::atof(body.c_str() + at + series.size()) >= 1.0;
  }));
  CHECK(sender.signal_and_wait(SIGKILL) == -SIGKILL);
  INFO(sender.stderr_text());
  CHECK(sender.stderr_text().find("TLS handshake failed: IP address mismatch") !=
        std::string::npos);
  CHECK(count_lines(out) == 0);
  CHECK(collector.terminate() == 0);
}

TEST_CASE("tls: an avro TLS handshake that never finishes is closed after handshake_timeout",
          "[integration][tls]") {
  TempDir tmp;
  const std::string pki = make_pki(tmp);
  AgentProcess::Options c;
  c.vars = {{"OUT", tmp.file("out.json")},
            {"LISTEN", "127.0.0.1:0"},
            {"CHANNEL", "type = \"memory\""},
            {"EXTRA", "handshake_timeout = \"1s\"\ntls = { cert = \"" + pki +
                          "/server.pem\", key = \"" + pki + "/server.key\" }"}};
  AgentProcess collector("avro_source_file.toml", c);
  REQUIRE(collector.wait_ready());
  const int fd = connect_to(collector.source_address("av"));
  // The header of a 512-byte TLS handshake record, then its body one byte every 200 ms: the
  // connection is never idle, but the handshake never completes.
  const std::string hello = std::string("\x16\x03\x01\x02\x00", 5) + std::string(507, '\0');
  const auto start = std::chrono::steady_clock::now();
  std::size_t i = 0;
  bool closed = false;
  while (std::chrono::steady_clock::now() - start < 6s) {
    if (peer_closed(fd)) {
      closed = true;
      break;
    }
    ::send(fd, hello.data() + i, 1, MSG_NOSIGNAL);
    ++i;
    std::this_thread::sleep_for(200ms);
  }
  const auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  CHECK(closed);
  CHECK(took >= 900ms);
  CHECK(took < 3s);
  CHECK(
      collector.metric(
          R"(sluice_avro_connections_closed_total{component="av",type="avro",reason="handshake_timeout"})") ==
      1.0);
  CHECK(collector.terminate() == 0);
}

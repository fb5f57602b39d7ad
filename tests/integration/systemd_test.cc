// The agent under systemd's notify protocol: a real AF_UNIX datagram socket stands in for systemd
// (NOTIFY_SOCKET), and every message the agent sends is read back.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/support/agent_process.h"
#include "tests/support/test_support.h"

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path_.size() < sizeof addr.sun_path);
    path_.copy(addr.sun_path, path_.size());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;
  const std::string& path() const { return path_; }
  // Every message received so far (each may hold several newline-separated assignments).
  const std::vector<std::string>& read() {
    pollfd p{fd_, POLLIN, 0};
    while (::poll(&p, 1, 0) > 0) {
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      messages_.emplace_back(buf, static_cast<std::size_t>(n));
    }
    return messages_;
  }
  bool saw(std::string_view prefix) {
    for (const auto& m : read()) {
      if (m.rfind(prefix, 0) == 0) return true;
    }
    return false;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> messages_;
};

}  // namespace

TEST_CASE("systemd: READY, STATUS with throughput, watchdog pings and STOPPING reach the socket",
          "[integration][systemd]") {
  TempDir tmp;
  NotifySocket notify(tmp.file("notify"));
  AgentProcess::Options o;
  o.vars = {{"COMMAND", R"(["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; done"])"},
            {"OUT", "/dev/null"},
            {"SHUTDOWN_TIMEOUT", "5s"},
            {"MAX_EVENTS", "10000"},
            {"SOURCE_EXTRA", ""},
            {"SINK_EXTRA", ""}};
  o.env = {{"NOTIFY_SOCKET", notify.path()}, {"WATCHDOG_USEC", "200000"}};
  AgentProcess agent("exec_file.toml", o);
  REQUIRE(agent.wait_ready());
  CHECK(eventually(5s, [&] { return notify.saw("READY=1"); }));
  CHECK(eventually(5s, [&] { return notify.saw("WATCHDOG=1"); }));  // every 100 ms here
  CHECK(eventually(5s, [&] { return notify.saw("STATUS=in "); }));
  // A later line counts what flowed since the one before.
  std::string flowing;
  CHECK(eventually(15s, [&] {
    for (const auto& m : notify.read()) {
      if (m.rfind("STATUS=in ", 0) == 0 && m.rfind("STATUS=in 0 ", 0) != 0 &&
          m.find(" events/s, out ") != std::string::npos &&
          m.find(" held in channels; ok") != std::string::npos)
        flowing = m;
    }
    return !flowing.empty();
  }));
  INFO(flowing);
  CHECK(agent.terminate() == 0);
  CHECK(notify.saw("STOPPING=1"));
}

// agent/sd_notify: systemd's notify protocol without libsystemd. The path-socket case with the
// real binary is tests/integration/systemd_test.cc; here the rest of the protocol.
#include "lib/core/sd_notify.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <string>

namespace {

// Restores the variables sd_notify reads when a test case ends.
struct EnvGuard {
  ~EnvGuard() {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
  }
};

}  // namespace

TEST_CASE("sd_notify: nothing is sent without NOTIFY_SOCKET and a bad one is refused",
          "[unit][agent]") {
  EnvGuard guard;
  unsetenv("NOTIFY_SOCKET");
  CHECK(sluice::sd_notify(0, "READY=1") == 0);
  setenv("NOTIFY_SOCKET", "relative/path", 1);
  CHECK(sluice::sd_notify(0, "READY=1") == -EINVAL);
  setenv("NOTIFY_SOCKET", "/nonexistent-dir-for-sluice/notify", 1);
  CHECK(sluice::sd_notify(0, "READY=1") == -ENOENT);
  CHECK(std::getenv("NOTIFY_SOCKET") != nullptr);
  CHECK(sluice::sd_notify(1, "READY=1") == -ENOENT);
  CHECK(std::getenv("NOTIFY_SOCKET") == nullptr);  // unset_environment
}

TEST_CASE("sd_notify: an abstract socket written with @ receives the message", "[unit][agent]") {
  EnvGuard guard;
  const std::string name = "sluice-sd-notify-test-" + std::to_string(::getpid());
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  name.copy(addr.sun_path + 1, name.size());  // sun_path[0] == '\0': abstract
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr),
                 static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())) == 0);
  setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);
  CHECK(sluice::sd_notify(0, "STATUS=idle\nREADY=1") == 1);
  pollfd p{fd, POLLIN, 0};
  REQUIRE(::poll(&p, 1, 5000) == 1);
  char buf[256];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  CHECK(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0) == "STATUS=idle\nREADY=1");
  ::close(fd);
}

TEST_CASE("sd_watchdog_enabled: WATCHDOG_USEC for this process only", "[unit][agent]") {
  EnvGuard guard;
  std::uint64_t usec = 7;
  unsetenv("WATCHDOG_USEC");
  CHECK(sluice::sd_watchdog_enabled(0, &usec) == 0);
  CHECK(usec == 7);
  setenv("WATCHDOG_USEC", "200000", 1);
  CHECK(sluice::sd_watchdog_enabled(0, &usec) == 1);
  CHECK(usec == 200000);
  setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  CHECK(sluice::sd_watchdog_enabled(0, &usec) == 1);
  setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
  CHECK(sluice::sd_watchdog_enabled(0, &usec) == 0);  // meant for another process
  setenv("WATCHDOG_PID", "x", 1);
  CHECK(sluice::sd_watchdog_enabled(0, &usec) == -EINVAL);
  unsetenv("WATCHDOG_PID");
  for (const char* bad : {"", "0", "12ms", "-5"}) {
    INFO(bad);
    setenv("WATCHDOG_USEC", bad, 1);
    CHECK(sluice::sd_watchdog_enabled(0, &usec) == -EINVAL);
  }
  setenv("WATCHDOG_USEC", "1000", 1);
  CHECK(sluice::sd_watchdog_enabled(1, &usec) == 1);
  CHECK(std::getenv("WATCHDOG_USEC") == nullptr);
}

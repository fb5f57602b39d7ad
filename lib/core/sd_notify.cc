#include "lib/core/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace sluice {

namespace {

bool parse_u64(const char* s, std::uint64_t& out) {
  const std::string_view v(s);
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc() && end == v.data() + v.size() && !v.empty();
}

}  // namespace

int sd_notify(int unset_environment, const char* state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || state == nullptr) return 0;
  const std::size_t len = std::strlen(path);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // systemd hands out a filesystem path or an abstract socket name written with a leading '@'.
  if ((path[0] != '/' && path[0] != '@') || len < 2 || len >= sizeof addr.sun_path) {
    if (unset_environment) unsetenv("NOTIFY_SOCKET");
    return -EINVAL;
  }
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  int result = 1;
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    result = -errno;
  } else {
    const ssize_t sent = ::sendto(fd, state, std::strlen(state), MSG_NOSIGNAL,
                                  reinterpret_cast<const sockaddr*>(&addr), addr_len);
    if (sent < 0) result = -errno;
    ::close(fd);
  }
  if (unset_environment) unsetenv("NOTIFY_SOCKET");
  return result;
}

int sd_watchdog_enabled(int unset_environment, std::uint64_t* usec) {
  const char* us = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  int result = 0;
  std::uint64_t interval = 0;
  if (us != nullptr) {
    if (!parse_u64(us, interval) || interval == 0) {
      result = -EINVAL;
    } else {
      result = 1;
      // WATCHDOG_PID names the process the manager watches; a child that inherited it is not.
      std::uint64_t watched = 0;
      if (pid != nullptr) {
        if (!parse_u64(pid, watched) || watched == 0)
          result = -EINVAL;
        else if (watched != static_cast<std::uint64_t>(::getpid()))
          result = 0;
      }
    }
  }
  if (result > 0 && usec != nullptr) *usec = interval;
  if (unset_environment) {
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
  }
  return result;
}

}  // namespace sluice

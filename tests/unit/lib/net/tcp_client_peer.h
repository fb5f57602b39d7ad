#pragma once

// A blocking TCP listener on 127.0.0.1 run by a thread, for tests of TCP clients and of the sinks
// built on them: it reads and keeps everything, or never reads, or closes a connection in the
// middle of what it receives (gracefully: it stops sending and still reads to the end; or
// abruptly, with a reset).

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <string>
#include <thread>

#include "tests/support/fault_peers.h"

namespace sluice::test {

class LinePeer {
 public:
  enum class Mode { read, never_read, close_graceful, close_abrupt };
  /// close_*: the first connection is closed once it delivered `close_after` bytes; later ones
  /// read.
  /// `port` 0 picks a free one; another (with SO_REUSEADDR) comes back on a known port.
  explicit LinePeer(Mode mode = Mode::read, std::size_t close_after = 0, int rcvbuf = 0,
                    int port = 0)
      : mode_(mode), close_after_(close_after) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) ::setsockopt(listener_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    const int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (port == 0) {
      port_ = ntohs(Blackhole::bind_loopback(listener_, 16).sin_port);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<std::uint16_t>(port));
      REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
      REQUIRE(::listen(listener_, 16) == 0);
      port_ = port;
    }
    thread_ = std::thread([this] { run(); });
  }
  ~LinePeer() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
  }
  LinePeer(const LinePeer&) = delete;
  LinePeer& operator=(const LinePeer&) = delete;
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string received() const {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  std::size_t received_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return received_.size();
  }
  int connections() const { return connections_.load(); }
  /// Connections that ended (the client closed, or the peer closed it).
  int ended() const { return ended_.load(); }

 private:
  bool wait(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }
  void run() {
    while (wait(listener_)) {
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) continue;
      const int n = connections_.fetch_add(1) + 1;
      serve(fd, n == 1 ? mode_ : Mode::read);
      ended_.fetch_add(1);
    }
  }
  void serve(int fd, Mode mode) {
    if (mode == Mode::never_read) {
      while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      ::close(fd);
      return;
    }
    std::size_t got = 0;
    bool half_closed = false;
    char buf[65536];
    while (wait(fd)) {
      std::size_t want = sizeof buf;
      const bool closing = (mode == Mode::close_graceful || mode == Mode::close_abrupt);
      if (closing && !half_closed) want = std::min(want, close_after_ - got);
      const ssize_t r = ::recv(fd, buf, want, 0);
      if (r <= 0) break;
      {
        std::lock_guard<std::mutex> lock(mu_);
        received_.append(buf, static_cast<std::size_t>(r));
      }
      got += static_cast<std::size_t>(r);
      if (closing && !half_closed && got >= close_after_) {
        if (mode == Mode::close_abrupt) {
          const linger l{1, 0};  // a reset: whatever the kernel holds unread is dropped
          ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
          break;
        }
        ::shutdown(fd, SHUT_WR);  // the client sees EOF; what it still sends is read
        half_closed = true;
      }
    }
    ::close(fd);
  }

  Mode mode_;
  std::size_t close_after_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0}, ended_{0};
  mutable std::mutex mu_;
  std::string received_;
  std::thread thread_;
};

}  // namespace sluice::test

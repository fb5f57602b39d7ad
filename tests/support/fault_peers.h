#pragma once

// Peers and places that fail on purpose, shared by unit and integration tests.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

namespace sluice::test {

/// A TCP port on 127.0.0.1 whose connects hang: it listens with a backlog of 0 and a first
/// connection that is never accepted fills that backlog, so the kernel drops further SYNs.
class Blackhole {
 public:
  Blackhole() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const sockaddr_in a = bind_loopback(listener_, 0);
    filler_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(::connect(filler_, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~Blackhole() {
    ::close(filler_);
    ::close(listener_);
  }
  Blackhole(const Blackhole&) = delete;
  Blackhole& operator=(const Blackhole&) = delete;
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  /// Binds `fd` to a free port on 127.0.0.1 and listens with `backlog`.
  static sockaddr_in bind_loopback(int fd, int backlog) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, backlog) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return a;
  }

 private:
  int listener_ = -1, filler_ = -1;
  int port_ = 0;
};

/// A TCP port on 127.0.0.1 that accepts connections (the kernel does) and never answers.
class SilentServer {
 public:
  SilentServer() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    port_ = ntohs(Blackhole::bind_loopback(listener_, 16).sin_port);
  }
  ~SilentServer() { ::close(listener_); }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int listener_ = -1;
  int port_ = 0;
};

/// A small tmpfs mounted on `dir` (root only; ok() is false, with the reason in error(), where
/// mounting is not permitted), unmounted when destroyed.
class SmallDisk {
 public:
  SmallDisk(const std::string& dir, const std::string& size) : dir_(dir) {
    std::filesystem::create_directories(dir_);
    mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
    if (!mounted_) error_ = std::strerror(errno);
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  bool ok() const { return mounted_; }
  const std::string& error() const { return error_; }
  /// Gives the filesystem `size` (e.g. "64m"): the disk was freed.
  bool grow(const std::string& size) {
    return ::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT, ("size=" + size).c_str()) == 0;
  }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string error_;
};

}  // namespace sluice::test

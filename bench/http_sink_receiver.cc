// A minimal HTTP/1.1 receiver for bench/http_sink_bench.py: one thread per keep-alive connection,
// reads each request (Content-Length bodies), counts its body's newlines, answers 200 with an
// empty body and discards the bytes, so that the sender under test is what the run measures.
// Usage: sluice_http_sink_receiver ADDR_FILE STATS_FILE
//   writes "127.0.0.1:PORT\n" to ADDR_FILE once listening; on SIGTERM writes
//   "requests lines body_bytes\n" to STATS_FILE and exits. /stats answers the same line.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

std::atomic<std::uint64_t> g_requests{0}, g_lines{0}, g_bytes{0};

std::string stats_line() {
  return std::to_string(g_requests.load()) + " " + std::to_string(g_lines.load()) + " " +
         std::to_string(g_bytes.load()) + "\n";
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

void serve(int fd) {
  std::string buf;
  buf.reserve(1 << 20);
  std::size_t start = 0;  // of the current request in buf
  char chunk[1 << 16];
  for (;;) {
    const std::size_t head_end = buf.find("\r\n\r\n", start);
    if (head_end == std::string::npos) {
      if (start > 0) {
        buf.erase(0, start);
        start = 0;
      }
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n <= 0) break;
      buf.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    std::size_t length = 0;
    std::string_view head(buf.data() + start, head_end - start);
    for (std::size_t pos = 0; pos < head.size();) {
      std::size_t eol = head.find("\r\n", pos);
      if (eol == std::string_view::npos) eol = head.size();
      std::string_view line = head.substr(pos, eol - pos);
      if (line.size() > 15 && strncasecmp(line.data(), "content-length:", 15) == 0) {
        length = std::strtoull(std::string(line.substr(15)).c_str(), nullptr, 10);
      }
      pos = eol + 2;
    }
    const bool stats = head.starts_with("GET /stats");
    const std::size_t body_at = head_end + 4;
    std::uint64_t lines = 0;
    std::size_t have = std::min(buf.size() - body_at, length);
    lines += static_cast<std::uint64_t>(
        std::count(buf.data() + body_at, buf.data() + body_at + have, '\n'));
    std::size_t need = length - have;
    std::size_t consumed_to = body_at + have;
    while (need > 0) {
      const ssize_t n = ::read(fd, chunk, std::min(sizeof chunk, need));
      if (n <= 0) {
        ::close(fd);
        return;
      }
      lines += static_cast<std::uint64_t>(std::count(chunk, chunk + n, '\n'));
      need -= static_cast<std::size_t>(n);
    }
    if (consumed_to >= buf.size()) {
      buf.clear();
      start = 0;
    } else {
      start = consumed_to;
    }
    if (stats) {
      const std::string body = stats_line();
      const std::string resp =
          "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
      if (!write_all(fd, resp.data(), resp.size())) break;
      continue;
    }
    g_requests.fetch_add(1, std::memory_order_relaxed);
    g_lines.fetch_add(lines, std::memory_order_relaxed);
    g_bytes.fetch_add(length, std::memory_order_relaxed);
    static constexpr char kOk[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    if (!write_all(fd, kOk, sizeof kOk - 1)) break;
  }
  ::close(fd);
}

const char* g_stats_file = nullptr;

void on_term(int) {
  const std::string s = stats_line();
  FILE* f = std::fopen(g_stats_file, "w");
  if (f != nullptr) {
    std::fputs(s.c_str(), f);
    std::fclose(f);
  }
  _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ADDR_FILE STATS_FILE\n", argv[0]);
    return 2;
  }
  g_stats_file = argv[2];
  ::signal(SIGTERM, on_term);
  ::signal(SIGPIPE, SIG_IGN);
  const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd, 128) != 0) {
    std::perror("bind/listen");
    return 1;
  }
  socklen_t len = sizeof a;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string tmp = std::string(argv[1]) + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return 1;
  std::fprintf(f, "127.0.0.1:%d\n", ntohs(a.sin_port));
  std::fclose(f);
  std::rename(tmp.c_str(), argv[1]);
  for (;;) {
    const int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) continue;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::thread(serve, fd).detach();
  }
}

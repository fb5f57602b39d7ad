// A keep-alive HTTP load client for bench/http_bench.py: CONNECTIONS threads, each with one
// connection, POST text/plain bodies of EVENTS lines of 200 bytes, one request at a time, until
// REQUESTS requests were answered in total. Prints: wall_s requests events status_200 other.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<long> next_request{0}, ok{0}, other{0};

int connect_to(const std::string& host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Reads one response; returns its status (0 on a closed connection).
int read_response(int fd, std::string& buf) {
  while (true) {
    const auto end = buf.find("\r\n\r\n");
    if (end != std::string::npos) {
      const int status = std::atoi(buf.c_str() + 9);
      std::size_t length = 0;
      const auto cl = buf.find("Content-Length: ");
      if (cl != std::string::npos && cl < end)
        length = std::strtoul(buf.c_str() + cl + 16, nullptr, 10);
      if (buf.size() >= end + 4 + length) {
        buf.erase(0, end + 4 + length);
        return status;
      }
    }
    char tmp[4096];
    const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return 0;
    buf.append(tmp, static_cast<std::size_t>(n));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s HOST:PORT REQUESTS EVENTS_PER_REQUEST CONNECTIONS\n", argv[0]);
    return 2;
  }
  const std::string address = argv[1];
  const long requests = std::atol(argv[2]);
  const int events = std::atoi(argv[3]);
  const int connections = std::atoi(argv[4]);
  const auto colon = address.rfind(':');
  const std::string host = address.substr(0, colon);
  const int port = std::atoi(address.c_str() + colon + 1);
  std::string body;
  for (int i = 0; i < events; ++i) {
    std::string line = std::to_string(i) + " GET /api/v1/items HTTP/1.1 200 ";
    line.resize(199, 'x');
    body += line + "\n";
  }
  const std::string request =
      "POST /ingest HTTP/1.1\r\nHost: " + address +
      "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < connections; ++t) {
    threads.emplace_back([&] {
      const int fd = connect_to(host, port);
      std::string buf;
      while (next_request.fetch_add(1) < requests) {
        std::size_t off = 0;
        while (off < request.size()) {
          const ssize_t n = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
          if (n <= 0) std::exit(1);
          off += static_cast<std::size_t>(n);
        }
        const int status = read_response(fd, buf);
        (status == 200 ? ok : other).fetch_add(1);
        if (status == 0) std::exit(1);
      }
      ::close(fd);
    });
  }
  for (auto& t : threads) t.join();
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%.4f %ld %ld %ld %ld\n", wall, requests, requests * events, ok.load(), other.load());
  return 0;
}

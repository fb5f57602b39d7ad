#include "tests/support/test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "lib/net/tcp_server.h"

namespace sluice::test {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "sluice-test-XXXXXX").string();
  char* p = mkdtemp(tmpl.data());
  SLUICE_ASSERT(p != nullptr);
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool soak() {
  const char* v = std::getenv("SLUICE_SOAK");
  return v != nullptr && std::string_view(v) == "1";
}

bool eventually(std::chrono::milliseconds timeout, const std::function<bool()>& cond) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
}

std::optional<Lease> take_some(Loop& loop, Channel& channel, CursorId cursor, Batch& out,
                               TakeLimits limits, std::chrono::milliseconds timeout) {
  std::optional<Lease> lease;
  bool failed = false;
  const bool got = run_until(loop, timeout, [&] {
    auto taken = channel.take(cursor, out, limits);
    if (!taken.has_value()) {
      failed = true;
      return true;
    }
    if (out.empty()) return false;
    lease = std::move(*taken);
    return true;
  });
  if (!got || failed) return std::nullopt;
  return lease;
}

bool run_until(Loop& loop, std::chrono::milliseconds timeout, const std::function<bool()>& cond) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  uv_timer_t tick;
  uv_timer_init(loop.uv(), &tick);
  uv_timer_start(
      &tick, [](uv_timer_t*) {}, 1, 1);  // wakes the loop so cond is checked often
  bool ok = false;
  while (true) {
    if (cond()) {
      ok = true;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    uv_run(loop.uv(), UV_RUN_ONCE);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  uv_run(loop.uv(), UV_RUN_NOWAIT);
  return ok;
}

void RecordingSink::deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) {
  ++deliveries;
  Pending p;
  p.batch.append_range(batch, 0, batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) attempted.emplace_back(batch[i].body());
  p.id = id;
  p.done = &done;
  if (!script_.empty()) {
    p.result = std::move(script_.front());
    script_.erase(script_.begin());
  }
  if (hold_ > 0) {
    --hold_;
    held_.push_back(std::move(p));
    return;
  }
  if (pending_.empty()) loop_.defer(&RecordingSink::answer_task, this, 0);
  pending_.push_back(std::move(p));
}

void RecordingSink::release_held() {
  if (held_.empty()) return;
  if (pending_.empty()) loop_.defer(&RecordingSink::answer_task, this, 0);
  for (auto& p : held_) pending_.push_back(std::move(p));
  held_.clear();
}

void RecordingSink::answer_task(void* self, std::uint64_t) {
  auto* s = static_cast<RecordingSink*>(self);
  std::vector<Pending> now;
  now.swap(s->pending_);
  for (auto& p : now) {
    if (p.result.is_ok()) {
      for (std::size_t i = 0; i < p.batch.size(); ++i) s->delivered.emplace_back(p.batch[i].body());
    }
    p.done->on_delivered(p.id, p.result);
  }
}

void RecordingSink::stop(StopCallback on_stopped) { on_stopped(); }

HttpReply http_request(const std::string& address, std::string_view raw,
                       std::chrono::milliseconds timeout) {
  HttpReply reply;
  std::string host;
  int port = 0;
  if (!net::split_host_port(address, host, port)) return reply;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &sa.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return reply;
  }
  std::size_t off = 0;
  while (off < raw.size()) {
    const ssize_t n = ::send(fd, raw.data() + off, raw.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  std::string all;
  char buf[65536];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    all.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto sp = all.find(' ');
  if (sp == std::string::npos) return reply;
  reply.status = std::atoi(all.c_str() + sp + 1);
  const auto end = all.find("\r\n\r\n");
  if (end == std::string::npos) return reply;
  reply.headers = all.substr(0, end);
  reply.body = all.substr(end + 4);
  return reply;
}

HttpReply http_get(const std::string& address, std::string_view path) {
  return http_request(
      address, "GET " + std::string(path) + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
}

HealthzPoller::HealthzPoller(std::string admin) : admin_(std::move(admin)) {
  thread_ = std::thread([this] {
    while (!done_) {
      const auto t0 = std::chrono::steady_clock::now();
      if (http_get(admin_, "/healthz").status != 200) ++failed_;
      const long long us = std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::steady_clock::now() - t0)
                               .count();
      if (us > worst_us_) worst_us_ = us;
      ++polls_;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a health checker's pace
    }
  });
}

void HealthzPoller::stop() {
  done_ = true;
  if (thread_.joinable()) thread_.join();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

void append_numbers(const std::string& path, long first, long last) {
  std::string s;
  for (long i = first; i <= last; ++i) s += std::to_string(i) + "\n";
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
  SLUICE_ASSERT(out.good());
}

std::size_t count_lines(const std::string& path) {
  const std::string s = read_file(path);
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

std::vector<long> numbers_of(const std::string& text) {
  std::vector<long> v;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) v.push_back(std::stol(line));
  return v;
}

Batch make_batch(std::size_t n, std::string_view prefix, std::size_t first) {
  Batch b;
  std::string body;
  for (std::size_t i = 0; i < n; ++i) {
    body.assign(prefix);
    body += std::to_string(first + i);
    b.add(body, 1, first + i);
  }
  return b;
}

}  // namespace sluice::test

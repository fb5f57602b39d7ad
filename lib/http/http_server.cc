#include "lib/http/http_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "lib/core/log.h"

namespace sluice::http {

namespace {
// Per-connection buffers larger than this are freed once their request is answered.
constexpr std::size_t kWarmBytes = 64 * 1024;
}  // namespace

struct Server::Conn {
  Server* server = nullptr;
  std::uint64_t id = 0;
  uv_tcp_t* tcp = nullptr;
  uv_timer_t* idle = nullptr;
  uv_timer_t* request_timer = nullptr;  // header_timeout, then request_timeout
  std::uint64_t request_start = 0;      // uv_now() at accept, then at each request's first byte
  std::uint64_t last_active = 0;        // uv_now() at accept and at each read
  http_parser parser{};
  std::string inbuf;  // bytes read and not yet parsed (while a request is being answered)
  std::size_t header_bytes = 0;
  bool in_header_value = false;
  bool busy = false;           // a request is with the handler
  std::uint64_t requests = 0;  // requests dispatched so far: the one with the handler
  bool closing = false;
  bool keep_alive = true;
  bool body_too_large = false;
  // RFC 9112 checks that http-parser (built lenient) does not make; `reject` is set by a parser
  // callback that refused the request, with the status to answer.
  std::string reject;
  int reject_status = 400;
  bool headers_done = false;      // the current request's header section is complete
  bool line_started = false;      // the request line has begun (leading empty lines are allowed)
  std::size_t line_len = 0;       // bytes of the current header line so far (CR excluded)
  int crlf_pending = 0;           // bytes of the CRLF after a chunk's data still to check
  const char* buf_end = nullptr;  // end of the bytes given to http_parser_execute
  std::string peer;               // "IP:PORT" of the client
  std::unique_ptr<tls::TlsSession> tls;
  Request req;
  char readbuf[16 * 1024];
};

std::string_view Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

std::string_view Request::path() const {
  std::string_view u = url;
  const auto q = u.find('?');
  return q == std::string_view::npos ? u : u.substr(0, q);
}

std::string_view status_text(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

bool split_host_port(std::string_view address, std::string& host, int& port) {
  std::string_view h, p;
  if (!address.empty() && address.front() == '[') {
    const auto close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() || address[close + 1] != ':')
      return false;
    h = address.substr(1, close - 1);
    p = address.substr(close + 2);
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string_view::npos) return false;
    h = address.substr(0, colon);
    p = address.substr(colon + 1);
    if (h.find(':') != std::string_view::npos) return false;
  }
  if (h.empty() || p.empty()) return false;
  int v = -1;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
  if (ec != std::errc() || ptr != p.data() + p.size() || v < 0 || v > 65535) return false;
  host.assign(h);
  port = v;
  return true;
}

namespace {

std::string_view trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

// What RFC 9112 asks a server to refuse and lenient http-parser lets through; empty if none,
// else the reason, with `status` set (400, or 501 for a transfer coding we do not implement).
std::string check_headers(const http_parser& p, const Request& req, int& status) {
  status = 400;
  std::size_t hosts = 0, chunked = 0;
  std::string codings;  // transfer codings other than chunked, or chunked not last
  bool chunked_last = false;
  for (const auto& [name, value] : req.headers) {
    // 5.1: no whitespace between the field name and the colon (a smuggling vector: a proxy may
    // read "Content-Length : 5" as another header than we do).
    if (name.find_first_of(" \t") != std::string::npos) {
      return "whitespace between a header name and its colon";
    }
    if (name == "host") ++hosts;
    if (name == "transfer-encoding") {
      std::string_view list = value;
      while (!list.empty()) {
        const auto comma = list.find(',');
        const std::string_view coding = trim(list.substr(0, comma));
        list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
        if (coding.empty()) continue;
        chunked_last = iequals(coding, "chunked");
        if (chunked_last) {
          ++chunked;
        } else {
          if (!codings.empty()) codings += ", ";
          codings += coding;
        }
      }
    }
  }
  // 3.2: a Host in every HTTP/1.1 request, and never more than one.
  if (hosts == 0 && p.http_major == 1 && p.http_minor >= 1) return "HTTP/1.1 request without Host";
  if (hosts > 1) return "more than one Host header";
  // 6.1: chunked must not be applied more than once, and must be the final coding of a request.
  if (chunked > 1) return "Transfer-Encoding chunked applied more than once";
  if (chunked > 0 && !chunked_last) return "Transfer-Encoding chunked is not the final coding";
  if (!codings.empty()) {
    status = 501;
    return "Transfer-Encoding '" + codings + "' is not implemented (only chunked)";
  }
  return {};
}

}  // namespace

void Responder::respond(Response response) {
  if (alive_.expired()) return;
  server_->answer(connection_, request_, std::move(response));
}

Server::Server(Loop& loop, ServerLimits limits, Handler handler, MetricsRegistry* metrics,
               Labels labels)
    : loop_(loop), limits_(limits), handler_(std::move(handler)) {
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = &Server::on_message_begin;
  settings_.on_url = &Server::on_url;
  settings_.on_header_field = &Server::on_header_field;
  settings_.on_header_value = &Server::on_header_value;
  settings_.on_headers_complete = &Server::on_headers_complete;
  settings_.on_body = &Server::on_body;
  settings_.on_message_complete = &Server::on_message_complete;
  if (metrics != nullptr) {
    requests_ = &metrics->counter("sluice_http_requests_total", "HTTP requests answered.", labels);
    bad_requests_ = &metrics->counter("sluice_http_bad_requests_total",
                                      "Malformed or oversized HTTP requests refused.", labels);
    refused_ = &metrics->counter("sluice_http_refused_connections_total",
                                 "Connections closed at once because max_connections was reached.",
                                 labels);
    evicted_ = &metrics->counter(
        "sluice_http_evicted_connections_total",
        "Idle or unfinished connections closed to make room for a new one at max_connections.",
        labels);
    tls_errors_ = &tls::handshake_errors(*metrics, labels);
  }
}

Server::~Server() { close(); }

Result<uv_tcp_t*> tcp_listen(Loop& loop, std::string_view address, void* data,
                             uv_connection_cb on_connection, std::string& bound_out) {
  std::string host;
  int port = 0;
  if (!split_host_port(address, host, port)) {
    return Status(Errc::config, fmt::format("'{}' is not HOST:PORT", address));
  }
  sockaddr_storage ss{};
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&ss)) != 0 &&
      uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&ss)) != 0) {
    return Status(Errc::config, fmt::format("'{}' is not an IP address", host));
  }
  auto* listener = new uv_tcp_t{};
  uv_tcp_init(loop.uv(), listener);
  listener->data = data;
  int rc = uv_tcp_bind(listener, reinterpret_cast<sockaddr*>(&ss), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener), 128, on_connection);
  if (rc != 0) {
    close_and_delete(listener);
    return Status::from_uv(rc, fmt::format("listen {}", address));
  }
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len);
  bound_out = peer_name(bound);
  return listener;
}

std::string peer_name(const sockaddr_storage& addr) {
  char ip[64] = {};
  if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    uv_ip6_name(a, ip, sizeof ip);
    return fmt::format("[{}]:{}", ip, ntohs(a->sin6_port));
  }
  const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
  uv_ip4_name(a, ip, sizeof ip);
  return fmt::format("{}:{}", ip, ntohs(a->sin_port));
}

Status Server::listen(std::string_view address) {
  auto l = tcp_listen(
      loop_, address, this,
      [](uv_stream_t* s, int status) {
        if (status == 0 && s->data != nullptr) static_cast<Server*>(s->data)->on_connection();
      },
      bound_);
  if (!l) return l.error();
  listener_ = *l;
  return {};
}

void Server::close() {
  if (listener_ != nullptr) {
    listener_->data = nullptr;
    close_and_delete(listener_);
    listener_ = nullptr;
  }
  std::vector<Conn*> all;
  for (auto& [id, c] : conns_) all.push_back(c.get());
  for (Conn* c : all) close_conn(*c);
}

void Server::on_connection() {
  auto* tcp = new uv_tcp_t{};
  uv_tcp_init(loop_.uv(), tcp);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_), reinterpret_cast<uv_stream_t*>(tcp)) !=
      0) {
    close_and_delete(tcp);
    return;
  }
  if (conns_.size() >= limits_.max_connections) {
    Conn* victim = least_active_evictable();
    if (victim == nullptr) {
      if (refused_ != nullptr) refused_->inc();
      close_and_delete(tcp);
      return;
    }
    if (evicted_ != nullptr) evicted_->inc();
    close_conn(*victim);
  }
  auto conn = std::make_unique<Conn>();
  Conn& c = *conn;
  c.server = this;
  c.id = ++next_conn_;
  c.tcp = tcp;
  tcp->data = &c;
  http_parser_init(&c.parser, HTTP_REQUEST);
  c.parser.data = &c;
  c.idle = new uv_timer_t{};
  uv_timer_init(loop_.uv(), c.idle);
  c.idle->data = &c;
  c.request_timer = new uv_timer_t{};
  uv_timer_init(loop_.uv(), c.request_timer);
  c.request_timer->data = &c;
  if (tls_) c.tls = std::make_unique<tls::TlsSession>(tls_);
  conns_.emplace(c.id, std::move(conn));
  c.request_start = c.last_active = uv_now(loop_.uv());
  // The first request's headers are due header_timeout after the accept, not after its first
  // byte: a connection that sends nothing (or one byte now and then) cannot hold a slot.
  arm_request_timer(c, static_cast<std::uint64_t>(
                           std::min(limits_.header_timeout, limits_.request_timeout).count()));
  uv_tcp_nodelay(tcp, 1);
  sockaddr_storage peer{};
  int peer_len = sizeof peer;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0) {
    c.peer = peer_name(peer);
  }
  arm_idle(c);
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(tcp),
      [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
        auto* cn = static_cast<Conn*>(h->data);
        *b = uv_buf_init(cn->readbuf, sizeof cn->readbuf);
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
        auto* cn = static_cast<Conn*>(s->data);
        cn->server->on_read(*cn, n, b);
      });
}

void Server::arm_idle(Conn& c) {
  uv_timer_start(
      c.idle,
      [](uv_timer_t* t) {
        auto* conn = static_cast<Conn*>(t->data);
        if (conn != nullptr && !conn->busy) conn->server->close_conn(*conn);
      },
      static_cast<std::uint64_t>(limits_.idle_timeout.count()), 0);
}

Server::Conn* Server::least_active_evictable() {
  if (limits_.evict_when_full == ServerLimits::Eviction::none) return nullptr;
  const bool idle_too = limits_.evict_when_full == ServerLimits::Eviction::unfinished_or_idle;
  Conn* victim = nullptr;
  for (auto& [id, c] : conns_) {
    // Never one whose request is with the handler, or whose body is arriving (request_timeout
    // bounds that).
    if (c->busy || c->closing || c->headers_done) continue;
    const bool unfinished = c->requests == 0 || c->line_started;
    if (!unfinished && !idle_too) continue;
    if (victim == nullptr || c->last_active < victim->last_active) victim = c.get();
  }
  return victim;
}

// One timer per connection: until on_headers_complete it enforces header_timeout, then
// request_timeout (from the same start); the callback tells which one expired.
void Server::arm_request_timer(Conn& c, std::uint64_t after_ms) {
  uv_timer_start(
      c.request_timer,
      [](uv_timer_t* t) {
        auto* conn = static_cast<Conn*>(t->data);
        if (conn == nullptr || conn->busy) return;
        const ServerLimits& l = conn->server->limits_;
        conn->server->fail(
            *conn, 408,
            conn->headers_done
                ? fmt::format("request not complete within {} ms", l.request_timeout.count())
                : fmt::format("request headers not complete within {} ms",
                              l.header_timeout.count()));
      },
      after_ms, 0);
}

void Server::on_read(Conn& c, ssize_t n, const uv_buf_t* buf) {
  if (n < 0) {
    close_conn(c);
    return;
  }
  if (n == 0) return;
  arm_idle(c);
  c.last_active = uv_now(loop_.uv());
  if (c.tls) {
    std::string send;
    const Status st = c.tls->read({buf->base, static_cast<std::size_t>(n)}, c.inbuf, send);
    if (!send.empty()) write_raw(c, std::move(send));
    if (!st.ok()) {
      if (tls_errors_ != nullptr) tls_errors_->inc();
      SLUICE_WARN_LIMITED(tls_log_, "https: closing a connection: {}", st.message());
      close_conn(c);
      return;
    }
  } else {
    c.inbuf.append(buf->base, static_cast<std::size_t>(n));
  }
  if (!c.busy) feed(c);
}

// RFC 9112 5.2: a header line that starts with SP or HTAB (obsolete line folding) is refused.
// Scans unparsed bytes of the header section, up to its empty line; the state carries over
// between reads.
bool Server::folded_header_line(Conn& c, std::string_view in) {
  for (const char ch : in) {
    if (ch == '\n') {
      if (c.line_started && c.line_len == 0) return false;  // the empty line: the body follows
      c.line_len = 0;
      continue;
    }
    if (ch == '\r') continue;
    if (c.line_len == 0 && c.line_started && (ch == ' ' || ch == '\t')) return true;
    c.line_started = true;
    ++c.line_len;
  }
  return false;
}

// Checks the bytes [from, end) against what remains of the CRLF that must follow a chunk's data.
bool Server::check_chunk_end(Conn& c, const char* from, const char* end) {
  while (c.crlf_pending > 0 && from < end) {
    if (*from != "\r\n"[2 - c.crlf_pending]) return false;
    ++from;
    --c.crlf_pending;
  }
  return true;
}

void Server::feed(Conn& c) {
  while (!c.inbuf.empty() && !c.busy && !c.closing) {
    if (c.crlf_pending > 0 &&
        !check_chunk_end(c, c.inbuf.data(), c.inbuf.data() + c.inbuf.size())) {
      fail(c, 400, "malformed request: chunk data not followed by CRLF");
      return;
    }
    if (!c.headers_done && folded_header_line(c, c.inbuf)) {
      fail(c, 400, "malformed request: obsolete line folding in the headers");
      return;
    }
    c.buf_end = c.inbuf.data() + c.inbuf.size();
    const std::size_t parsed =
        http_parser_execute(&c.parser, &settings_, c.inbuf.data(), c.inbuf.size());
    const auto err = HTTP_PARSER_ERRNO(&c.parser);
    if (err == HPE_PAUSED) {
      c.inbuf.erase(0, parsed);
      http_parser_pause(&c.parser, 0);
      dispatch(c);
      return;
    }
    if (err != HPE_OK) {
      if (!c.reject.empty()) {
        fail(c, c.reject_status,
             c.reject_status == 400 ? "malformed request: " + c.reject : c.reject);
      } else if (c.body_too_large) {
        fail(c, 413, fmt::format("body larger than {} bytes", limits_.max_body_bytes));
      } else if (err == HPE_HEADER_OVERFLOW || c.header_bytes > limits_.max_header_bytes) {
        fail(c, 431, fmt::format("headers larger than {} bytes", limits_.max_header_bytes));
      } else {
        fail(c, 400, fmt::format("malformed request: {}", http_errno_description(err)));
      }
      return;
    }
    c.inbuf.erase(0, parsed);
  }
  if (c.inbuf.size() > limits_.max_header_bytes + limits_.max_body_bytes + 4096) {
    fail(c, 413, "request too large");
  }
}

int Server::on_message_begin(http_parser* p) {
  auto* c = static_cast<Conn*>(p->data);
  Server& server = *c->server;
  // A later request on a kept-alive connection starts its clock at its first byte (the wait
  // before it is idle_timeout's business); the first one keeps the clock started at accept.
  const std::uint64_t now = uv_now(server.loop_.uv());
  if (c->requests > 0) c->request_start = now;
  const auto header_ms = static_cast<std::uint64_t>(
      std::min(server.limits_.header_timeout, server.limits_.request_timeout).count());
  const std::uint64_t spent = now - c->request_start;
  server.arm_request_timer(*c, header_ms > spent ? header_ms - spent : 1);
  c->req.method = HTTP_GET;
  c->req.url.clear();
  c->req.headers.clear();
  c->req.body.clear();  // keeps a warm buffer (answer() frees a large one)
  c->req.peer = c->peer;
  c->header_bytes = 0;
  c->in_header_value = false;
  c->body_too_large = false;
  c->reject.clear();
  c->crlf_pending = 0;
  return 0;
}

int Server::on_url(http_parser* p, const char* at, std::size_t len) {
  auto* c = static_cast<Conn*>(p->data);
  c->header_bytes += len;
  if (c->header_bytes > c->server->limits_.max_header_bytes) return 1;
  c->req.url.append(at, len);
  return 0;
}

int Server::on_header_field(http_parser* p, const char* at, std::size_t len) {
  auto* c = static_cast<Conn*>(p->data);
  c->header_bytes += len;
  if (c->header_bytes > c->server->limits_.max_header_bytes) return 1;
  if (c->in_header_value || c->req.headers.empty()) {
    c->req.headers.emplace_back();
    c->in_header_value = false;
  }
  for (std::size_t i = 0; i < len; ++i) {
    c->req.headers.back().first +=
        static_cast<char>(std::tolower(static_cast<unsigned char>(at[i])));
  }
  return 0;
}

int Server::on_header_value(http_parser* p, const char* at, std::size_t len) {
  auto* c = static_cast<Conn*>(p->data);
  c->header_bytes += len;
  if (c->header_bytes > c->server->limits_.max_header_bytes) return 1;
  c->in_header_value = true;
  if (c->req.headers.empty()) return 1;
  c->req.headers.back().second.append(at, len);
  return 0;
}

int Server::on_headers_complete(http_parser* p) {
  auto* c = static_cast<Conn*>(p->data);
  c->headers_done = true;
  {
    Server& server = *c->server;
    const auto request_ms = static_cast<std::uint64_t>(server.limits_.request_timeout.count());
    const std::uint64_t spent = uv_now(server.loop_.uv()) - c->request_start;
    server.arm_request_timer(*c, request_ms > spent ? request_ms - spent : 1);
  }
  c->req.method = static_cast<http_method>(p->method);
  if (std::string why = check_headers(*p, c->req, c->reject_status); !why.empty()) {
    c->reject = std::move(why);
    return -1;
  }
  if (p->content_length != ULLONG_MAX && p->content_length > c->server->limits_.max_body_bytes) {
    c->body_too_large = true;
    return -1;  // http-parser treats -1 as an error here
  }
  // curl and other clients send "Expect: 100-continue" before a large body and wait (curl: 1 s)
  // for this interim answer.
  std::string expect(c->req.header("expect"));
  for (char& ch : expect) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (expect == "100-continue" && p->http_major == 1 && p->http_minor >= 1) {
    c->server->send_raw(*c, "HTTP/1.1 100 Continue\r\n\r\n");
  }
  return 0;
}

int Server::on_body(http_parser* p, const char* at, std::size_t len) {
  auto* c = static_cast<Conn*>(p->data);
  if (c->req.body.size() + len > c->server->limits_.max_body_bytes) {
    c->body_too_large = true;
    return 1;
  }
  c->req.body.append(at, len);
  // RFC 9112 7.1: chunk data ends with CRLF; lenient http-parser would swallow any two bytes.
  if ((p->flags & F_CHUNKED) != 0 && p->content_length == 0) {
    c->crlf_pending = 2;
    if (!check_chunk_end(*c, at + len, c->buf_end)) {
      c->reject = "chunk data not followed by CRLF";
      return 1;
    }
  }
  return 0;
}

int Server::on_message_complete(http_parser* p) {
  auto* c = static_cast<Conn*>(p->data);
  c->keep_alive = http_should_keep_alive(p) != 0;
  c->headers_done = false;  // the next request's header section starts after this one
  c->line_started = false;
  c->line_len = 0;
  uv_timer_stop(c->request_timer);
  http_parser_pause(p, 1);
  return 0;
}

void Server::dispatch(Conn& c) {
  c.busy = true;
  if (requests_ != nullptr) requests_->inc();
  handler_(c.req, Responder(alive_, this, c.id, ++c.requests));
}

void Server::answer(std::uint64_t id, std::uint64_t request, Response r) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (!c.busy || c.requests != request) return;  // answered already: never answer the next one
  c.busy = false;
  const bool close_after = !c.keep_alive;
  send(c, r, close_after);
  if (close_after) return;
  // An idle keep-alive connection must not keep a large request's buffers (100 connections x
  // 16 MiB bodies would stay resident until they close); small ones stay warm for the next.
  if (c.req.body.capacity() > kWarmBytes) std::string().swap(c.req.body);
  feed(c);  // may answer a pipelined request and close (and free) the connection
  it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& still = *it->second;
  if (still.inbuf.empty() && still.inbuf.capacity() > kWarmBytes) std::string().swap(still.inbuf);
}

void Server::fail(Conn& c, int status, std::string message) {
  if (c.closing) return;
  if (bad_requests_ != nullptr) bad_requests_->inc();
  if (on_refused_) on_refused_(status, c.peer, message);
  Response r;
  r.status = status;
  r.body = std::move(message) + "\n";
  send(c, r, true);
}

void Server::send(Conn& c, const Response& r, bool close_after) {
  if (c.closing) return;
  std::string head = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
                                 r.status, status_text(r.status), r.content_type, r.body.size());
  for (const auto& [k, v] : r.headers) head += fmt::format("{}: {}\r\n", k, v);
  head += close_after ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n";
  const bool head_only = c.req.method == HTTP_HEAD;
  if (!head_only) head += r.body;
  send_raw(c, head);
  if (close_after) close_conn(c);
}

void Server::send_raw(Conn& c, std::string_view data) {
  if (c.tls) {
    std::string cipher;
    if (c.tls->write(data, cipher).ok()) write_raw(c, std::move(cipher));
  } else {
    write_raw(c, std::string(data));
  }
}

void Server::write_raw(Conn& c, std::string data) {
  write_owned(reinterpret_cast<uv_stream_t*>(c.tcp), std::move(data));
}

void Server::close_conn(Conn& c) {
  if (c.closing) return;
  c.closing = true;
  const std::uint64_t id = c.id;
  c.idle->data = nullptr;
  close_and_delete(c.idle);
  c.request_timer->data = nullptr;
  close_and_delete(c.request_timer);
  uv_read_stop(reinterpret_cast<uv_stream_t*>(c.tcp));
  // Let queued writes finish: uv_close on a stream cancels pending writes, so shut down first.
  auto* shutdown = new uv_shutdown_t{};
  shutdown->data = c.tcp;
  c.tcp->data = nullptr;
  if (uv_shutdown(shutdown, reinterpret_cast<uv_stream_t*>(c.tcp), [](uv_shutdown_t* s, int) {
        close_and_delete(static_cast<uv_tcp_t*>(s->data));
        delete s;
      }) != 0) {
    delete shutdown;
    close_and_delete(c.tcp);
  }
  conns_.erase(id);
}

}  // namespace sluice::http

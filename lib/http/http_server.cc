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

// Protocol state only: the socket, TLS, deadlines and writes are the net::Connection's.
struct Server::Conn {
  Server* server = nullptr;
  net::Connection* net = nullptr;  // valid until on_close erases this
  std::uint64_t id = 0;            // net->id()
  http_parser parser{};
  std::string inbuf;  // bytes read and not yet parsed (while a request is being answered)
  std::size_t header_bytes = 0;
  bool in_header_value = false;
  bool busy = false;           // a request is with the handler
  std::uint64_t requests = 0;  // requests dispatched so far: the one with the handler
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
  std::size_t charged = 0;        // inbuf + body bytes in the server's shared budget
  Request req;
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

namespace {

net::ServerOptions tcp_options(const ServerLimits& l, const Labels& labels) {
  net::ServerOptions o;
  o.max_connections = l.max_connections;
  o.max_connections_per_address = l.max_connections_per_address;
  o.max_buffered_bytes = l.max_buffered_bytes;
  o.evict_when_full = l.evict_when_full != ServerLimits::Eviction::none;
  o.idle_timeout = l.idle_timeout;
  // One deadline per request: header_timeout until its headers are complete, then
  // request_timeout, both from the same start (see on_open and on_message_begin).
  o.message_timeout = l.request_timeout;
  o.message_timeout_label = "request_timeout";
  // As before the move: the TLS handshake is part of what header_timeout bounds from the accept.
  o.handshake_timeout = std::min(l.header_timeout, l.request_timeout);
  o.log_name = "http";
  for (const auto& [k, v] : labels) {
    if (k == "component") o.log_name += " " + v;
  }
  o.metric_prefix = "sluice_http";
  return o;
}

}  // namespace

Server::Server(Loop& loop, ServerLimits limits, Handler handler, MetricsRegistry* metrics,
               Labels labels)
    : limits_(limits),
      handler_(std::move(handler)),
      tcp_(loop, tcp_options(limits, labels), *this, metrics, labels) {
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
    evicted_ = &metrics->counter(
        "sluice_http_evicted_connections_total",
        "Idle or unfinished connections closed to make room for a new one at max_connections.",
        labels);
  }
}

Server::~Server() = default;

void Server::close() {
  tcp_.stop_accepting();
  tcp_.close_all(net::CloseReason::stopping);
}

std::chrono::milliseconds Server::header_deadline() const {
  return std::min(limits_.header_timeout, limits_.request_timeout);
}

void Server::on_open(net::Connection& nc) {
  auto conn = std::make_unique<Conn>();
  Conn& c = *conn;
  c.server = this;
  c.net = &nc;
  c.id = nc.id();
  http_parser_init(&c.parser, HTTP_REQUEST);
  c.parser.data = &c;
  nc.user = &c;
  conns_.emplace(c.id, std::move(conn));
  // The first request's headers are due header_timeout after the accept, not after its first
  // byte: a connection that sends nothing (or one byte now and then) cannot hold a slot.
  nc.begin_message(header_deadline());
}

void Server::on_data(net::Connection& nc, std::string_view data) {
  Conn& c = *static_cast<Conn*>(nc.user);
  c.inbuf.append(data);
  recharge(c);
  if (tcp_.over_budget()) {
    Response r;
    r.status = 503;
    r.headers.emplace_back("Retry-After", "1");
    r.body =
        fmt::format("unfinished requests of all clients exceed max_buffered_bytes ({} bytes)\n",
                    limits_.max_buffered_bytes);
    if (on_refused_) on_refused_(503, c.net->peer(), r.body);
    send(c, r, true);
    c.net->close(net::CloseReason::over_budget);
    return;
  }
  const std::uint64_t id = c.id;
  next_request(c);
  if (auto it = conns_.find(id); it != conns_.end()) recharge(*it->second);
}

void Server::recharge(Conn& c) {
  const std::size_t now = c.inbuf.size() + c.req.body.size();
  tcp_.charge_input(static_cast<std::int64_t>(now) - static_cast<std::int64_t>(c.charged));
  c.charged = now;
}

bool Server::evictable(const net::Connection& nc) {
  const Conn& c = *static_cast<const Conn*>(nc.user);
  // Never one whose request is with the handler, or whose body is arriving (request_timeout
  // bounds that).
  if (c.busy || c.headers_done) return false;
  const bool unfinished = c.requests == 0 || c.line_started;
  return unfinished || limits_.evict_when_full == ServerLimits::Eviction::unfinished_or_idle;
}

void Server::on_timeout(net::Connection& nc, net::CloseReason why) {
  if (why != net::CloseReason::message_timeout) return;  // idle, TLS handshake: closed silently
  Conn& c = *static_cast<Conn*>(nc.user);
  // The server closes the connection when this returns, after sending the 408.
  fail(c, 408,
       c.headers_done
           ? fmt::format("request not complete within {} ms", limits_.request_timeout.count())
           : fmt::format("request headers not complete within {} ms", header_deadline().count()),
       std::nullopt);
}

void Server::on_close(net::Connection& nc, net::CloseReason why) {
  if (why == net::CloseReason::evicted && evicted_ != nullptr) evicted_->inc();
  if (auto* c = static_cast<Conn*>(nc.user); c != nullptr) {
    tcp_.charge_input(-static_cast<std::int64_t>(c->charged));
    c->charged = 0;
  }
  nc.user = nullptr;
  conns_.erase(nc.id());  // a Responder of this connection now finds nothing
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

bool Server::feed(Conn& c) {
  while (!c.inbuf.empty() && !c.busy) {
    if (c.crlf_pending > 0 &&
        !check_chunk_end(c, c.inbuf.data(), c.inbuf.data() + c.inbuf.size())) {
      fail(c, 400, "malformed request: chunk data not followed by CRLF");
      return false;
    }
    if (!c.headers_done && folded_header_line(c, c.inbuf)) {
      fail(c, 400, "malformed request: obsolete line folding in the headers");
      return false;
    }
    c.buf_end = c.inbuf.data() + c.inbuf.size();
    const std::size_t parsed =
        http_parser_execute(&c.parser, &settings_, c.inbuf.data(), c.inbuf.size());
    const auto err = HTTP_PARSER_ERRNO(&c.parser);
    if (err == HPE_PAUSED) {
      c.inbuf.erase(0, parsed);
      http_parser_pause(&c.parser, 0);
      // The handler may answer at once, and that answer may close the connection.
      const std::uint64_t id = c.id;
      dispatch(c);
      return conns_.count(id) != 0;
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
      return false;
    }
    c.inbuf.erase(0, parsed);
  }
  if (c.inbuf.size() > limits_.max_header_bytes + limits_.max_body_bytes + 4096) {
    fail(c, 413, "request too large");
    return false;
  }
  return true;
}

int Server::on_message_begin(http_parser* p) {
  auto* c = static_cast<Conn*>(p->data);
  // A later request on a kept-alive connection starts its clock at its first byte (the wait
  // before it is idle_timeout's business); the first one keeps the clock started at accept.
  if (!c->net->in_message()) c->net->begin_message(c->server->header_deadline());
  c->req.method = HTTP_GET;
  c->req.url.clear();
  c->req.headers.clear();
  c->req.body.clear();  // keeps a warm buffer (answer() frees a large one)
  c->req.peer = c->net->peer();
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
  // The body is due request_timeout after the request's start.
  c->net->set_message_timeout(c->server->limits_.request_timeout);
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
    c->net->send("HTTP/1.1 100 Continue\r\n\r\n");
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
  c->net->end_message();
  http_parser_pause(p, 1);
  return 0;
}

void Server::dispatch(Conn& c) {
  c.busy = true;
  // No idle_timeout while the handler has the request, and pipelined requests wait in the
  // kernel, not in inbuf.
  c.net->set_busy(true);
  c.net->hold_reading(true);
  if (requests_ != nullptr) requests_->inc();
  handler_(c.req, Responder(alive_, this, c.id, ++c.requests));
}

void Server::answer(std::uint64_t id, std::uint64_t request, Response r) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (!c.busy || c.requests != request) return;  // answered already: never answer the next one
  c.busy = false;
  c.net->set_busy(false);
  if (!c.keep_alive) {
    send(c, r, true);
    c.net->close(net::CloseReason::done);
    return;
  }
  send(c, r, false);
  c.net->hold_reading(false);
  // An idle keep-alive connection must not keep a large request's buffers (100 connections x
  // 16 MiB bodies would stay resident until they close); small ones stay warm for the next.
  if (c.req.body.capacity() > kWarmBytes) c.req.body.release();
  c.req.body.clear();
  const std::uint64_t cid = c.id;
  next_request(c);
  if (auto it2 = conns_.find(cid); it2 != conns_.end()) recharge(*it2->second);
}

void Server::next_request(Conn& c) {
  // Answers are bounded per connection: while the client has not read what was sent (more than
  // max_unsent_bytes), the pipelined requests already read wait in inbuf (and the rest in the
  // kernel: the server stopped reading) until on_output_drained.
  if (c.busy || c.net->unsent_bytes() > tcp_.options().max_unsent_bytes) return;
  if (!feed(c)) return;
  if (c.inbuf.empty() && c.inbuf.capacity() > kWarmBytes) std::string().swap(c.inbuf);
}

void Server::on_output_drained(net::Connection& nc) { next_request(*static_cast<Conn*>(nc.user)); }

void Server::fail(Conn& c, int status, std::string message,
                  std::optional<net::CloseReason> close_for) {
  if (c.net->closing()) return;
  if (bad_requests_ != nullptr) bad_requests_->inc();
  if (on_refused_) on_refused_(status, c.net->peer(), message);
  Response r;
  r.status = status;
  r.body = std::move(message) + "\n";
  send(c, r, true);
  if (close_for) c.net->close(*close_for);
}

void Server::send(Conn& c, const Response& r, bool last) {
  std::string head = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
                                 r.status, status_text(r.status), r.content_type, r.body.size());
  for (const auto& [k, v] : r.headers) head += fmt::format("{}: {}\r\n", k, v);
  head += last ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n";
  const bool head_only = c.req.method == HTTP_HEAD;
  if (!head_only) head += r.body;
  c.net->send(head);
}

}  // namespace sluice::http

#pragma once

#include <http_parser.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lib/core/log.h"
#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/core/result.h"
#include "lib/net/tls.h"

namespace sluice::http {

struct Request {
  http_method method = HTTP_GET;
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string peer;  // the client's "IP:PORT", for logs
  /// The first header with this (lower-case) name, or empty.
  std::string_view header(std::string_view name) const;
  /// The path part of the URL, without query string.
  std::string_view path() const;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct ServerLimits {
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_connections = 256;
  std::chrono::milliseconds idle_timeout{60'000};
  /// A request's headers and body must arrive within this (against slow clients): else 408.
  std::chrono::milliseconds request_timeout{30'000};
  /// The request line and headers must arrive within this, counted from the connection's accept
  /// (first request) or the request's first byte (later ones): else 408 and the connection
  /// closes, so that half-open connections cannot hold max_connections.
  std::chrono::milliseconds header_timeout{10'000};
  /// What to do at max_connections instead of refusing the new connection: close the least
  /// recently active one that is
  enum class Eviction : std::uint8_t {
    none,
    /// unfinished: has sent nothing, or stopped in the headers of a request (for sources: a
    /// kept-alive connection that finished its requests stays, since its client may be about to
    /// send a POST on it and would see it reset);
    unfinished,
    /// or also idle between requests (for the admin endpoint, where a health check must get
    /// through and GETs are simply retried).
    unfinished_or_idle,
  };
  Eviction evict_when_full = Eviction::none;
};

class Server;

/// Answers one request, once, on the loop thread. If the connection closed meanwhile, or the
/// request was already answered (a second respond(), or a late one after the handler answered
/// 503 on a timeout and the connection went on to its next request), the answer is dropped.
/// A handler may keep it and answer later (e.g. after a channel commit).
class Responder {
 public:
  Responder(std::weak_ptr<void> alive, Server* server, std::uint64_t connection,
            std::uint64_t request)
      : alive_(std::move(alive)), server_(server), connection_(connection), request_(request) {}
  void respond(Response response);

 private:
  std::weak_ptr<void> alive_;
  Server* server_;
  std::uint64_t connection_;
  std::uint64_t request_;  // which request of the connection this answers
};

using Handler = std::function<void(Request&, Responder)>;
/// Told of every request the server refuses itself (400, 408, 413, 431, 501; the connection then
/// closes): its status, the client's address and the reason sent.
using RefusalHook = std::function<void(int status, std::string_view peer, std::string_view reason)>;

/// A small HTTP/1.1 server on libuv and http-parser: keep-alive, one request at a time per
/// connection (pipelined requests wait their turn), limits on header and body size and on
/// connections, an idle timeout. Malformed requests get 400, oversized bodies 413, and the
/// connection is closed. Used by the admin endpoint and by network sources.
class Server {
 public:
  Server(Loop& loop, ServerLimits limits, Handler handler, MetricsRegistry* metrics = nullptr,
         Labels labels = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Serves HTTPS: every connection starts with a TLS handshake. A failed handshake (a client
  /// without the required certificate, a wrong version) closes it, counted in
  /// sluice_tls_handshake_errors_total and logged (rate-limited). Call before listen().
  void set_tls(std::shared_ptr<tls::TlsContext> ctx) { tls_ = std::move(ctx); }
  void set_on_refused(RefusalHook hook) { on_refused_ = std::move(hook); }
  /// Binds and listens on "HOST:PORT" (IPv4, or [IPv6]); port 0 picks a free port.
  Status listen(std::string_view address);
  /// "HOST:PORT" actually bound.
  const std::string& bound_address() const noexcept { return bound_; }
  /// Stops accepting and closes every connection.
  void close();
  std::size_t connections() const noexcept { return conns_.size(); }

 private:
  friend class Responder;
  struct Conn;
  void on_connection();
  void on_read(Conn& c, ssize_t n, const uv_buf_t* buf);
  void arm_idle(Conn& c);
  void arm_request_timer(Conn& c, std::uint64_t after_ms);
  Conn* least_active_evictable();
  void feed(Conn& c);
  void dispatch(Conn& c);
  void send(Conn& c, const Response& r, bool close_after);
  void answer(std::uint64_t id, std::uint64_t request, Response r);
  void fail(Conn& c, int status, std::string message);
  void close_conn(Conn& c);
  static bool folded_header_line(Conn& c, std::string_view in);
  static bool check_chunk_end(Conn& c, const char* from, const char* end);
  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, std::size_t len);
  static int on_header_field(http_parser* p, const char* at, std::size_t len);
  static int on_header_value(http_parser* p, const char* at, std::size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, std::size_t len);
  static int on_message_complete(http_parser* p);

  Loop& loop_;
  ServerLimits limits_;
  Handler handler_;
  RefusalHook on_refused_;
  http_parser_settings settings_{};
  uv_tcp_t* listener_ = nullptr;
  std::string bound_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Conn>> conns_;
  std::uint64_t next_conn_ = 0;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  Counter* requests_ = nullptr;
  Counter* bad_requests_ = nullptr;
  Counter* refused_ = nullptr;
  Counter* evicted_ = nullptr;
  Counter* tls_errors_ = nullptr;
  RateLimiter tls_log_;
  std::shared_ptr<tls::TlsContext> tls_;
  void write_raw(Conn& c, std::string data);
  void send_raw(Conn& c, std::string_view data);  // through TLS when the connection has it
};

/// Binds and listens on "HOST:PORT" (port 0 picks one); `bound_out` gets the bound address.
Result<uv_tcp_t*> tcp_listen(Loop& loop, std::string_view address, void* data,
                             uv_connection_cb on_connection, std::string& bound_out);
/// "IP:PORT" (or "[IPv6]:PORT") of a socket address.
std::string peer_name(const sockaddr_storage& addr);

/// Splits "HOST:PORT" or "[V6]:PORT"; false when malformed or the port is out of range.
bool split_host_port(std::string_view address, std::string& host, int& port);
std::string_view status_text(int status);

}  // namespace sluice::http

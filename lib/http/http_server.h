#pragma once

#include <http_parser.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lib/core/byte_buffer.h"
#include "lib/core/log.h"
#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/core/result.h"
#include "lib/net/tcp_server.h"
#include "lib/net/tls.h"

namespace sluice::http {

struct Request {
  http_method method = HTTP_GET;
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  ByteBuffer body;   // realloc-grown: a large body is not copied as it grows
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
  /// Unfinished requests (bytes read and not parsed, bodies so far) and unsent answers of all
  /// connections together (0: no bound). The connection whose read takes the server past it is
  /// answered 503 with Retry-After and closed (`over_budget`); while over it, connections with
  /// unsent answers are not read.
  std::uint64_t max_buffered_bytes = 0;
  /// Connections from one client IP (0: no cap).
  std::size_t max_connections_per_address = 0;
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

/// A small HTTP/1.1 server protocol on net::TcpServer and http-parser: keep-alive, one request at
/// a time per connection (pipelined requests wait in the kernel), limits on header and body size.
/// Malformed requests get 400, oversized bodies 413, slow ones 408, and the connection is closed.
/// Connections, TLS, deadlines, back-pressure and the close policy are net::TcpServer's (metrics
/// sluice_http_connections*, sluice_http_reads_paused_total). Used by the admin endpoint and by
/// network sources.
class Server : private net::ConnectionHandler {
 public:
  Server(Loop& loop, ServerLimits limits, Handler handler, MetricsRegistry* metrics = nullptr,
         Labels labels = {});
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Serves HTTPS: every connection starts with a TLS handshake. A failed handshake (a client
  /// without the required certificate, a wrong version) closes it, counted in
  /// sluice_tls_handshake_errors_total and logged (rate-limited). Call before listen().
  void set_tls(std::shared_ptr<tls::TlsContext> ctx) { tcp_.set_tls(std::move(ctx)); }
  void set_on_refused(RefusalHook hook) { on_refused_ = std::move(hook); }
  /// Binds and listens on "HOST:PORT" (IPv4, or [IPv6]); port 0 picks a free port.
  Status listen(std::string_view address) { return tcp_.listen(address); }
  /// "HOST:PORT" actually bound.
  const std::string& bound_address() const noexcept { return tcp_.bound_address(); }
  /// Stops accepting and closes every connection (what was answered is still sent, bounded by
  /// the server's close_timeout).
  void close();
  std::size_t connections() const noexcept { return tcp_.connections(); }

 private:
  friend class Responder;
  struct Conn;
  // net::ConnectionHandler
  void on_open(net::Connection& nc) override;
  void on_data(net::Connection& nc, std::string_view data) override;
  bool evictable(const net::Connection& nc) override;
  void on_timeout(net::Connection& nc, net::CloseReason why) override;
  void on_close(net::Connection& nc, net::CloseReason why) override;
  void on_output_drained(net::Connection& nc) override;
  /// Parses the next request if the connection is free and its answers were taken.
  void next_request(Conn& c);
  /// Brings the shared budget up to date with what `c` holds (inbuf and the body so far).
  void recharge(Conn& c);
  /// Parses what is buffered; false if the connection closed meanwhile (`c` is gone).
  bool feed(Conn& c);
  void dispatch(Conn& c);
  /// Sends `r`, with "Connection: close" if it is the connection's `last` answer.
  void send(Conn& c, const Response& r, bool last);
  std::chrono::milliseconds header_deadline() const;
  void answer(std::uint64_t id, std::uint64_t request, Response r);
  /// Answers a request the server refuses itself (counted, told to the refusal hook); closes
  /// the connection after it for `close_for` (none: the caller's TcpServer closes it).
  void fail(Conn& c, int status, std::string message,
            std::optional<net::CloseReason> close_for = net::CloseReason::bad_input);
  static bool folded_header_line(Conn& c, std::string_view in);
  static bool check_chunk_end(Conn& c, const char* from, const char* end);
  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, std::size_t len);
  static int on_header_field(http_parser* p, const char* at, std::size_t len);
  static int on_header_value(http_parser* p, const char* at, std::size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, std::size_t len);
  static int on_message_complete(http_parser* p);

  ServerLimits limits_;
  Handler handler_;
  RefusalHook on_refused_;
  http_parser_settings settings_{};
  std::unordered_map<std::uint64_t, std::unique_ptr<Conn>> conns_;  // by net::Connection id
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  Counter* requests_ = nullptr;
  Counter* bad_requests_ = nullptr;
  Counter* evicted_ = nullptr;
  // Last: destroyed first, it closes every socket without calling back into this.
  net::TcpServer tcp_;
};

std::string_view status_text(int status);

}  // namespace sluice::http

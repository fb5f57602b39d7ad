#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "lib/core/log.h"
#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/core/result.h"
#include "lib/net/address_filter.h"
#include "lib/net/tls.h"

namespace sluice::net {

/// Why a server closed a connection: the `reason` label of <prefix>_connections_closed_total.
enum class CloseReason : std::uint8_t {
  peer,               // the client closed its side
  read_error,         // the socket failed (reset, write error)
  idle,               // nothing read for idle_timeout while no call was pending
  message_timeout,    // a message (frame, request header) unfinished after message_timeout
  handshake_timeout,  // the TLS handshake unfinished after handshake_timeout
  tls_error,          // a failed handshake or a broken TLS record
  bad_input,          // the protocol refused what it read (and may have answered why)
  over_budget,        // the protocol's buffers took the server past max_buffered_bytes
  stopping,           // the server is shutting down
  done,               // the protocol finished with the connection (HTTP "Connection: close")
  evicted,            // closed to make room for a new connection at max_connections
};
inline constexpr std::size_t kCloseReasons = 11;

/// Why a server refused a connection at accept: the `reason` label of
/// <prefix>_connections_refused_total. A refused connection is closed before anything is read.
enum class RefuseReason : std::uint8_t {
  not_allowed,                  // the client address is not in `allow`
  max_connections,              // every slot is taken
  max_connections_per_address,  // this client IP holds its share already
  stopping,                     // the server stops accepting
};
inline constexpr std::size_t kRefuseReasons = 4;

struct ServerOptions {
  std::size_t max_connections = 1024;
  /// At max_connections, instead of refusing a new connection, close the least recently active
  /// one that the protocol calls evictable (ConnectionHandler::evictable) and is not busy, for
  /// CloseReason::evicted; refuse only when there is none. Lets half-open connections (that
  /// never finish a message) not lock out real clients.
  bool evict_when_full = false;
  /// Connections from one client IP (0: no cap).
  std::size_t max_connections_per_address = 0;
  /// Closes a connection that read nothing for this long, unless a message is in progress (its
  /// own deadline applies) or the protocol marked it busy (a call awaits its answer).
  std::chrono::milliseconds idle_timeout{300'000};
  /// From Connection::begin_message() to end_message(): a client that trickles a message is
  /// closed after this however steadily it sends. The protocol may give a message another
  /// deadline (begin_message(timeout), set_message_timeout()).
  std::chrono::milliseconds message_timeout{30'000};
  /// From accept to the end of the TLS handshake (only with TLS).
  std::chrono::milliseconds handshake_timeout{10'000};
  /// A closing connection first sends what was queued (uv_shutdown); a client that does not read
  /// it is cut off after this.
  std::chrono::milliseconds close_timeout{5'000};
  /// Reading a connection pauses while more than this is queued to it and not yet written (a
  /// client that pipelines requests and never reads the answers stops being read, not buffered).
  std::size_t max_unsent_bytes = 64 * 1024;
  /// Shared by every connection: the protocol's unfinished input (charge_input()) plus every
  /// connection's unsent output. While over it, connections with unsent output stop being read;
  /// the protocol decides what to do with a connection whose input crosses it. 0: no budget.
  std::uint64_t max_buffered_bytes = 0;
  std::size_t read_buffer_bytes = 64 * 1024;
  /// A connection yields the loop after reading this much without a pause: it is read again on
  /// the next loop turn, after every other ready connection, timer and the admin endpoint had
  /// theirs (libuv alone reads up to 32 buffers per turn from one socket, so 100 flooding
  /// clients could hold one turn for 200 MiB of input). 0: no limit.
  std::size_t max_read_bytes_per_turn = 64 * 1024;
  /// All connections of the server together: once this much was read in one loop turn, every
  /// connection stops being read for the rest of it, and the next turns read them again a few at
  /// a time (this budget's worth of read buffers), in the order they stopped. So however many
  /// clients flood the server, one turn of it holds the loop for about this much input (100
  /// clients reading 64 KiB each made 6.4 MiB a turn). 0: no limit.
  std::size_t max_server_read_bytes_per_turn = 1024 * 1024;
  /// The label value counted for message_timeout: "frame_timeout" (Avro), "request_timeout" (HTTP).
  std::string message_timeout_label = "message_timeout";
  /// Names the server in log lines ("avro collector").
  std::string log_name = "server";
  /// Metric names: PREFIX_connections (gauge), PREFIX_connections_refused_total{reason},
  /// PREFIX_connections_closed_total{reason}, PREFIX_reads_paused_total.
  std::string metric_prefix = "sluice_server";
};

/// Turns what a connection reads and writes at the wire before TLS sees it (e.g. Flume 1.10's
/// zlib outside TLS). Set by the protocol in on_open().
class WireCodec {
 public:
  virtual ~WireCodec() = default;
  /// Bytes from the socket -> appended to `out`; an error closes the connection (bad_input).
  virtual Status decode(std::string_view wire, std::string& out) = 0;
  /// Bytes to the socket: appended to `out`.
  virtual void encode(std::string_view data, std::string& out) = 0;
};

class TcpServer;

/// One accepted connection, as the protocol sees it. Owned by the server; valid from on_open()
/// until on_close() returns. Loop thread only.
class Connection {
 public:
  std::uint64_t id() const noexcept { return id_; }
  /// "IP:PORT" of the client.
  const std::string& peer() const noexcept { return peer_; }
  const sockaddr_storage& peer_address() const noexcept { return addr_; }
  /// Queues `data` (through TLS and the wire codec). Writes coalesce: at most one uv_write is in
  /// flight, the rest waits in one buffer. Ignored once the connection is closing. Never calls
  /// on_close: a write that fails closes the connection on the next loop turn.
  void send(std::string_view data);
  /// Bytes queued and not yet written to the socket.
  std::size_t unsent_bytes() const noexcept {
    return out_pending_.size() +
           (writing_ ? uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(&tcp_))
                     : 0);
  }
  /// Starts the message deadline (again, if a message was already in progress): the message is
  /// due options().message_timeout, or `timeout`, from now.
  void begin_message();
  void begin_message(std::chrono::milliseconds timeout);
  /// The message in progress is now due `timeout` after its begin_message(), not after now
  /// (HTTP: header_timeout until the headers are complete, then request_timeout). Ignored when
  /// no message is in progress.
  void set_message_timeout(std::chrono::milliseconds timeout);
  void end_message();
  bool in_message() const noexcept { return in_message_; }
  /// While busy (the protocol owes an answer) idle_timeout does not apply.
  void set_busy(bool busy);
  /// The protocol's own pause (e.g. one request at a time); reading resumes when released and
  /// nothing else holds it.
  void hold_reading(bool hold);
  bool reading() const noexcept { return reading_; }
  /// Stops reading, calls on_close(why) at once, then sends what is queued (bounded by
  /// close_timeout) and closes the socket. Safe to call from on_data() and more than once.
  void close(CloseReason why);
  bool closing() const noexcept { return state_ != State::open; }
  bool tls_established() const noexcept { return !tls_ || tls_->established(); }
  /// Sets the wire codec; call from on_open() before anything is read.
  void set_wire_codec(std::unique_ptr<WireCodec> codec) { codec_ = std::move(codec); }
  /// Per-connection state of the protocol.
  void* user = nullptr;

 private:
  friend class TcpServer;
  enum class State : std::uint8_t { open, draining, closed };
  Connection() = default;
  std::uint64_t deadline_ms() const;
  void write_wire(std::string_view data);
  void flush();
  /// A write failed inside send(): stop reading and close on the next loop turn.
  void fail_soon(CloseReason why);
  void on_written(int status);
  void update_reading();
  /// Brings the server's count of unsent output up to date with this connection's.
  void account();
  void shutdown();
  /// Closes the socket now (queued writes are cancelled); deletes this once libuv is done.
  void finish();
  void close_handles();

  TcpServer* server_ = nullptr;
  std::uint64_t id_ = 0;
  std::string peer_, ip_;
  sockaddr_storage addr_{};
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  uv_write_t write_req_{};
  uv_shutdown_t shutdown_req_{};
  int open_handles_ = 0;
  State state_ = State::open;
  bool reading_ = false, hold_ = false, busy_ = false, in_message_ = false, writing_ = false;
  bool paused_for_output_ = false, failing_ = false;
  bool yielded_ = false;              // read max_read_bytes_per_turn: read again next turn
  std::size_t read_since_yield_ = 0;  // bytes read since it last yielded the loop
  bool drain_pending_ = false;  // on_output_drained is owed once the output is under its bound
  CloseReason fail_reason_ = CloseReason::read_error;
  std::uint64_t accepted_ms_ = 0, last_read_ms_ = 0, message_start_ms_ = 0, close_start_ms_ = 0;
  std::uint64_t message_timeout_ms_ = 0;  // of the message in progress
  std::uint64_t timer_due_ms_ = 0;        // 0: not armed
  std::size_t accounted_ = 0;             // unsent bytes counted in the server's budget
  std::string out_pending_, out_inflight_;
  std::unique_ptr<tls::TlsSession> tls_;
  std::unique_ptr<WireCodec> codec_;
};

/// What a protocol (Avro, HTTP) implements on top of TcpServer. Every callback runs on the loop
/// thread; none runs after the server is destroyed.
class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  /// A connection passed `allow` and the caps. May set c.user, a wire codec, or close it.
  virtual void on_open(Connection& c) = 0;
  /// With ServerOptions::evict_when_full: whether `c` may be closed to make room for a new
  /// connection (e.g. it has not finished a message). Busy connections are never asked.
  virtual bool evictable(const Connection& c) {
    (void)c;
    return false;
  }
  /// Bytes read (plaintext, after TLS). The view is valid only during the call.
  virtual void on_data(Connection& c, std::string_view data) = 0;
  /// The connection's unsent output fell back to max_unsent_bytes (or the shared budget) after
  /// being over it, and reading resumed unless the protocol holds it: go on with work held back
  /// meanwhile (HTTP's next pipelined request). Runs from a write callback, never inside send().
  virtual void on_output_drained(Connection& c) { (void)c; }
  /// A deadline expired (idle, message_timeout, handshake_timeout); the server closes the
  /// connection for `why` when this returns. The protocol may send a last answer (HTTP 408),
  /// which is drained like any other.
  virtual void on_timeout(Connection& c, CloseReason why) {
    (void)c;
    (void)why;
  }
  /// The connection is closing: forget it. Runs once per opened connection, also when the
  /// protocol closed it itself (then from inside Connection::close), never from inside send() and
  /// never from the server's destructor.
  virtual void on_close(Connection& c, CloseReason why) = 0;
};

/// The one TCP (and TLS) server of sluice on libuv, with one policy for every protocol:
/// - back-pressure: a connection stops being read while its unsent output exceeds
///   max_unsent_bytes, or while the shared max_buffered_bytes budget is exceeded and it has
///   unsent output; reading resumes when its output drains;
/// - deadlines: idle_timeout, message_timeout (frame / request header), handshake_timeout (TLS);
/// - caps: max_connections (or evicting what the protocol allows), max_connections_per_address,
///   an address filter, each refusal counted;
/// - close: on_close at once, then what was queued is sent (uv_shutdown), cut off after
///   close_timeout.
class TcpServer {
 public:
  /// `metrics` may be null (the series then go to a registry of the server's own).
  TcpServer(Loop& loop, ServerOptions options, ConnectionHandler& handler, MetricsRegistry* metrics,
            const Labels& labels);
  /// Closes every socket at once without calling the handler.
  ~TcpServer();
  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;

  /// Every connection starts with a TLS handshake (failures counted in
  /// sluice_tls_handshake_errors_total). Call before listen().
  void set_tls(std::shared_ptr<tls::TlsContext> ctx) { tls_ = std::move(ctx); }
  void set_filter(AddressFilter filter) { filter_ = std::move(filter); }
  /// Binds and listens on "HOST:PORT" (IPv4, or [IPv6]); port 0 picks a free port.
  Status listen(std::string_view address);
  const std::string& bound_address() const noexcept { return bound_; }
  /// Closes the listening socket; connections stay.
  void stop_accepting();
  /// Closes every open connection (draining what was sent) for `why`.
  void close_all(CloseReason why);
  /// A connection by id, nullptr once it is closing.
  Connection* find(std::uint64_t id);
  std::size_t connections() const noexcept { return open_.size(); }
  /// Connections closed but still sending what was queued.
  std::size_t draining() const noexcept { return draining_.size(); }

  /// The protocol's unfinished input joins the shared budget (delta may be negative).
  void charge_input(std::int64_t delta);
  /// Input charged plus unsent output of every connection.
  std::uint64_t buffered_bytes() const noexcept { return input_bytes_ + output_bytes_; }
  bool over_budget() const noexcept {
    return options_.max_buffered_bytes != 0 && buffered_bytes() > options_.max_buffered_bytes;
  }
  const ServerOptions& options() const noexcept { return options_; }
  /// Counter values, for tests.
  std::uint64_t closed_count(CloseReason why) const;
  std::uint64_t refused_count(RefuseReason why) const;
  std::uint64_t reads_paused() const;

 private:
  friend class Connection;
  void on_connection();
  /// The least recently active connection the protocol lets go, or nullptr.
  Connection* eviction_victim();
  void refuse(uv_tcp_t* tcp, RefuseReason why, const std::string& peer);
  void on_read(Connection& c, ssize_t n, const uv_buf_t* buf);
  /// Stops reading `c` until next_turn() resumes it.
  void yield(Connection& c);
  /// The next loop turn (a deferred task): the turn's budget starts again, and connections that
  /// yielded are read again in the order they yielded, as many as the budget has read buffers.
  static void next_turn(void* self, std::uint64_t);
  static void timer_fired(uv_timer_t* t);
  void on_timer(Connection& c);
  void arm(Connection& c);
  void output_changed(std::int64_t delta);
  void resume_paused();
  void closed(Connection& c, CloseReason why);
  void expire(Connection& c, CloseReason why);
  std::uint64_t now_ms() const { return uv_now(loop_.uv()); }

  std::unique_ptr<MetricsRegistry> own_metrics_;  // when none was given
  MetricsRegistry& metrics_;
  Loop& loop_;
  ServerOptions options_;
  ConnectionHandler& handler_;
  AddressFilter filter_;
  std::shared_ptr<tls::TlsContext> tls_;
  uv_tcp_t* listener_ = nullptr;
  std::string bound_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> open_;
  std::unordered_set<Connection*> draining_;
  std::unordered_map<std::string, std::uint32_t> per_address_;
  std::uint64_t next_id_ = 0;
  std::uint64_t input_bytes_ = 0, output_bytes_ = 0;
  std::size_t paused_ = 0;           // connections paused for their output
  std::size_t turn_read_bytes_ = 0;  // read by every connection in this loop turn
  bool next_turn_queued_ = false;
  std::deque<std::uint64_t> yielded_;  // ids of connections that yielded, in order
  bool accepting_ = false;
  // Shared by every connection (reads are handled before the next one). Not zero-filled: a page
  // is resident once a read has written to it, so an admin endpoint answering small GETs keeps
  // one page of it, not 64 KiB.
  std::unique_ptr<char[]> read_buf_;
  std::string plain_, decoded_, scratch_;
  Gauge& connections_;
  std::array<Counter*, kRefuseReasons> refused_{};
  std::array<Counter*, kCloseReasons> closed_{};
  Counter& reads_paused_;
  Counter& tls_errors_;
  RateLimiter log_limit_;
};

/// Binds and listens on "HOST:PORT" (port 0 picks one); `bound_out` gets the bound address.
Result<uv_tcp_t*> tcp_listen(Loop& loop, std::string_view address, void* data,
                             uv_connection_cb on_connection, std::string& bound_out);
/// "IP:PORT" (or "[IPv6]:PORT") of a socket address.
std::string peer_name(const sockaddr_storage& addr);
/// The IP alone, the key of max_connections_per_address.
std::string peer_ip(const sockaddr_storage& addr);
/// Splits "HOST:PORT" or "[V6]:PORT"; false when malformed or the port is out of range.
bool split_host_port(std::string_view address, std::string& host, int& port);
std::string_view close_reason_name(CloseReason why, const ServerOptions& options);

}  // namespace sluice::net

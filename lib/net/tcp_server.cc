#include "lib/net/tcp_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <limits>

namespace sluice::net {

namespace {

constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();
// An output buffer that grew past this for one large answer is released once written, so an
// idle connection does not keep its peak.
constexpr std::size_t kKeepOutputCapacity = 256 * 1024;

constexpr std::array<const char*, kRefuseReasons> kRefuseNames = {
    "not_allowed", "max_connections", "max_connections_per_address", "stopping"};

std::uint64_t ms(std::chrono::milliseconds d) { return static_cast<std::uint64_t>(d.count()); }

}  // namespace

std::string_view close_reason_name(CloseReason why, const ServerOptions& options) {
  switch (why) {
    case CloseReason::peer:
      return "peer";
    case CloseReason::read_error:
      return "read_error";
    case CloseReason::idle:
      return "idle";
    case CloseReason::message_timeout:
      return options.message_timeout_label;
    case CloseReason::handshake_timeout:
      return "handshake_timeout";
    case CloseReason::tls_error:
      return "tls_error";
    case CloseReason::bad_input:
      return "bad_input";
    case CloseReason::over_budget:
      return "over_budget";
    case CloseReason::stopping:
      return "stopping";
    case CloseReason::done:
      return "done";
    case CloseReason::evicted:
      return "evicted";
  }
  return "unknown";
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

std::string peer_ip(const sockaddr_storage& addr) {
  char ip[64] = {};
  if (addr.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&addr), ip, sizeof ip);
  } else {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&addr), ip, sizeof ip);
  }
  return ip;
}

std::string peer_name(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET6) {
    return fmt::format("[{}]:{}", peer_ip(addr),
                       ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port));
  }
  return fmt::format("{}:{}", peer_ip(addr),
                     ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port));
}

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

// ---- Connection ----

void Connection::send(std::string_view data) {
  if (state_ != State::open || data.empty()) return;
  if (tls_) {
    std::string& cipher = server_->scratch_;
    cipher.clear();
    if (Status st = tls_->write(data, cipher); !st.ok()) {
      server_->tls_errors_.inc();
      SLUICE_WARN_LIMITED(server_->log_limit_, "{}: closing {}: {}", server_->options_.log_name,
                          peer_, st.message());
      fail_soon(CloseReason::tls_error);
      return;
    }
    write_wire(cipher);  // empty while the handshake runs: TLS holds the plaintext
  } else {
    write_wire(data);
  }
}

void Connection::write_wire(std::string_view data) {
  if (data.empty()) return;
  if (codec_) {
    codec_->encode(data, out_pending_);
  } else {
    out_pending_.append(data);
  }
  flush();
  if (state_ == State::closed) return;
  account();
  update_reading();
}

void Connection::account() {
  if (server_ == nullptr) return;
  const std::size_t now = state_ == State::closed ? 0 : unsent_bytes();
  server_->output_changed(static_cast<std::int64_t>(now) - static_cast<std::int64_t>(accounted_));
  accounted_ = now;
}

void Connection::flush() {
  if (writing_ || out_pending_.empty() || state_ == State::closed) return;
  out_inflight_.swap(out_pending_);
  uv_buf_t b = uv_buf_init(out_inflight_.data(), static_cast<unsigned>(out_inflight_.size()));
  // libuv writes at once what the socket takes; the callback comes on a later loop turn.
  const int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1,
                          [](uv_write_t* req, int status) {
                            auto* c = static_cast<Connection*>(req->data);
                            if (c->state_ == State::closed) return;  // cancelled by uv_close
                            c->on_written(status);
                          });
  if (rc != 0) {
    out_inflight_.clear();
    out_pending_.clear();
    if (state_ == State::open) {
      fail_soon(CloseReason::read_error);
    } else {
      finish();
    }
    return;
  }
  writing_ = true;
}

void Connection::fail_soon(CloseReason why) {
  // Called from inside send(): closing here would run on_close in the middle of the protocol's
  // own call, so the close happens on the next loop turn instead.
  if (state_ != State::open || failing_) return;
  failing_ = true;
  fail_reason_ = why;
  update_reading();
  timer_due_ms_ = server_->now_ms();
  uv_timer_start(&timer_, &TcpServer::timer_fired, 0, 0);
}

void Connection::on_written(int status) {
  writing_ = false;
  out_inflight_.clear();
  if (out_inflight_.capacity() > kKeepOutputCapacity) std::string().swap(out_inflight_);
  if (status < 0) {
    out_pending_.clear();
    account();
    if (state_ == State::open) {
      close(CloseReason::read_error);
    } else {
      finish();
    }
    return;
  }
  flush();
  if (state_ == State::closed) return;
  account();
  if (state_ == State::draining) {
    if (!writing_) shutdown();
    return;
  }
  update_reading();
  // Told here, on a write callback, also when the shared budget's relief resumed reading first
  // (inside another connection's send, where the protocol must not be called).
  if (drain_pending_ && !paused_for_output_ && state_ == State::open) {
    drain_pending_ = false;
    server_->handler_.on_output_drained(*this);
  }
}

void Connection::shutdown() {
  // uv_close on a stream cancels its queued writes; a shutdown completes after them.
  const int rc = uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_),
                             [](uv_shutdown_t* req, int) {
                               auto* c = static_cast<Connection*>(req->data);
                               if (c->state_ != State::closed) c->finish();
                             });
  if (rc != 0) finish();
}

void Connection::update_reading() {
  if (state_ != State::open) return;
  const std::size_t unsent = unsent_bytes();
  const bool over_output =
      unsent > server_->options_.max_unsent_bytes || (unsent > 0 && server_->over_budget());
  if (over_output != paused_for_output_) {
    paused_for_output_ = over_output;
    if (over_output) {
      drain_pending_ = true;
      ++server_->paused_;
      server_->reads_paused_.inc();
    } else {
      --server_->paused_;
    }
  }
  const bool want = !hold_ && !over_output && !failing_ && !yielded_;
  if (want == reading_) return;
  reading_ = want;
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  if (!want) {
    uv_read_stop(stream);
    return;
  }
  uv_read_start(
      stream,
      [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
        auto* c = static_cast<Connection*>(h->data);
        *b = uv_buf_init(c->server_->read_buf_.get(),
                         static_cast<unsigned>(c->server_->options_.read_buffer_bytes));
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
        auto* c = static_cast<Connection*>(s->data);
        c->server_->on_read(*c, n, b);
      });
}

void Connection::begin_message() { begin_message(server_->options_.message_timeout); }

void Connection::begin_message(std::chrono::milliseconds timeout) {
  if (state_ != State::open) return;
  in_message_ = true;
  message_start_ms_ = server_->now_ms();
  message_timeout_ms_ = ms(timeout);
  server_->arm(*this);
}

void Connection::set_message_timeout(std::chrono::milliseconds timeout) {
  if (state_ != State::open || !in_message_) return;
  message_timeout_ms_ = ms(timeout);
  server_->arm(*this);
}

void Connection::end_message() {
  if (!in_message_) return;
  in_message_ = false;
  if (state_ == State::open) server_->arm(*this);
}

void Connection::set_busy(bool busy) {
  if (busy_ == busy) return;
  busy_ = busy;
  // Idle time counts from the answer, not from the request.
  if (!busy) last_read_ms_ = std::max(last_read_ms_, server_->now_ms());
  if (!busy && state_ == State::open) server_->arm(*this);
}

void Connection::hold_reading(bool hold) {
  hold_ = hold;
  update_reading();
}

void Connection::close(CloseReason why) {
  if (state_ != State::open) return;
  state_ = State::draining;
  close_start_ms_ = server_->now_ms();
  if (reading_) uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
  if (paused_for_output_) --server_->paused_;
  paused_for_output_ = false;
  in_message_ = false;
  TcpServer* server = server_;
  server->closed(*this, why);
  if (!writing_) {
    if (out_pending_.empty()) {
      shutdown();
    } else {
      flush();
    }
  }
  if (state_ != State::draining) return;
  account();
  server->arm(*this);
}

std::uint64_t Connection::deadline_ms() const {
  const ServerOptions& o = server_->options_;
  if (state_ == State::draining) return close_start_ms_ + ms(o.close_timeout);
  if (state_ != State::open) return kNever;
  std::uint64_t d = kNever;
  if (in_message_) d = std::min(d, message_start_ms_ + message_timeout_ms_);
  if (!in_message_ && !busy_) d = std::min(d, last_read_ms_ + ms(o.idle_timeout));
  if (tls_ && !tls_->established()) d = std::min(d, accepted_ms_ + ms(o.handshake_timeout));
  return d;
}

void Connection::finish() {
  if (state_ == State::closed) return;
  state_ = State::closed;
  account();  // what was never written leaves the budget
  close_handles();
}

void Connection::close_handles() {
  auto on_closed = [](uv_handle_t* h) {
    auto* c = static_cast<Connection*>(h->data);
    if (--c->open_handles_ > 0) return;
    if (c->server_ != nullptr) c->server_->draining_.erase(c);
    delete c;
  };
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_closed);
  }
  if (timer_.loop != nullptr && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer_))) {
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_closed);
  }
}

// ---- TcpServer ----

TcpServer::TcpServer(Loop& loop, ServerOptions options, ConnectionHandler& handler,
                     MetricsRegistry* metrics, const Labels& labels)
    : own_metrics_(metrics == nullptr ? std::make_unique<MetricsRegistry>() : nullptr),
      metrics_(metrics != nullptr ? *metrics : *own_metrics_),
      loop_(loop),
      options_(std::move(options)),
      handler_(handler),
      read_buf_(std::make_unique_for_overwrite<char[]>(options_.read_buffer_bytes)),
      connections_(metrics_.gauge(options_.metric_prefix + "_connections",
                                  "Open client connections.", labels)),
      reads_paused_(metrics_.counter(
          options_.metric_prefix + "_reads_paused_total",
          "Times a connection stopped being read because its unsent answers (or all connections' "
          "buffers) exceeded their bound.",
          labels)),
      tls_errors_(tls::handshake_errors(metrics_, labels)) {
  for (std::size_t i = 0; i < kRefuseReasons; ++i) {
    refused_[i] =
        &metrics_.counter(options_.metric_prefix + "_connections_refused_total",
                          "Connections refused at accept: not in `allow`, max_connections, "
                          "max_connections_per_address, or stopping.",
                          with_label(labels, "reason", kRefuseNames[i]));
  }
  for (std::size_t i = 0; i < kCloseReasons; ++i) {
    closed_[i] = &metrics_.counter(
        options_.metric_prefix + "_connections_closed_total", "Connections closed, by reason.",
        with_label(labels, "reason",
                   std::string(close_reason_name(static_cast<CloseReason>(i), options_))));
  }
}

TcpServer::~TcpServer() {
  loop_.cancel_deferred(this);
  stop_accepting();
  // No handler calls from here: the protocol owning this server is being destroyed.
  for (auto& [id, c] : open_) {
    Connection* p = c.release();
    p->server_ = nullptr;
    p->state_ = Connection::State::closed;
    p->close_handles();
  }
  for (Connection* p : draining_) {
    p->server_ = nullptr;
    p->state_ = Connection::State::closed;
    p->close_handles();
  }
}

Status TcpServer::listen(std::string_view address) {
  auto l = tcp_listen(
      loop_, address, this,
      [](uv_stream_t* s, int status) {
        if (status == 0 && s->data != nullptr) static_cast<TcpServer*>(s->data)->on_connection();
      },
      bound_);
  if (!l) return l.error();
  listener_ = *l;
  accepting_ = true;
  return {};
}

void TcpServer::stop_accepting() {
  accepting_ = false;
  if (listener_ == nullptr) return;
  listener_->data = nullptr;
  close_and_delete(listener_);
  listener_ = nullptr;
}

void TcpServer::close_all(CloseReason why) {
  std::vector<Connection*> all;
  all.reserve(open_.size());
  for (auto& [id, c] : open_) all.push_back(c.get());
  for (Connection* c : all) c->close(why);
}

void TcpServer::yield(Connection& c) {
  c.read_since_yield_ = 0;
  c.yielded_ = true;
  c.update_reading();
  yielded_.push_back(c.id_);
}

void TcpServer::next_turn(void* self, std::uint64_t) {
  auto& s = *static_cast<TcpServer*>(self);
  s.next_turn_queued_ = false;
  s.turn_read_bytes_ = 0;
  std::size_t room =
      s.options_.max_server_read_bytes_per_turn == 0
          ? s.yielded_.size()
          : std::max<std::size_t>(1, s.options_.max_server_read_bytes_per_turn /
                                         std::max<std::size_t>(1, s.options_.read_buffer_bytes));
  while (room > 0 && !s.yielded_.empty()) {
    Connection* c = s.find(s.yielded_.front());
    s.yielded_.pop_front();
    if (c == nullptr || !c->yielded_) continue;  // closed meanwhile
    c->yielded_ = false;
    c->update_reading();
    --room;
  }
  if (!s.yielded_.empty()) {
    s.next_turn_queued_ = true;
    s.loop_.defer(&TcpServer::next_turn, &s, 0);
  }
}

Connection* TcpServer::find(std::uint64_t id) {
  auto it = open_.find(id);
  return it == open_.end() ? nullptr : it->second.get();
}

std::uint64_t TcpServer::closed_count(CloseReason why) const {
  return closed_[static_cast<std::size_t>(why)]->value();
}
std::uint64_t TcpServer::refused_count(RefuseReason why) const {
  return refused_[static_cast<std::size_t>(why)]->value();
}
std::uint64_t TcpServer::reads_paused() const { return reads_paused_.value(); }

void TcpServer::on_connection() {
  auto* c = new Connection();
  c->server_ = this;
  uv_tcp_init(loop_.uv(), &c->tcp_);
  c->tcp_.data = c;
  c->open_handles_ = 1;
  c->state_ = Connection::State::closed;  // until accepted: nothing to drain
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_),
                reinterpret_cast<uv_stream_t*>(&c->tcp_)) != 0) {
    c->server_ = nullptr;
    c->close_handles();
    return;
  }
  int len = sizeof c->addr_;
  uv_tcp_getpeername(&c->tcp_, reinterpret_cast<sockaddr*>(&c->addr_), &len);
  c->peer_ = peer_name(c->addr_);
  c->ip_ = peer_ip(c->addr_);
  std::optional<RefuseReason> refuse;
  bool address_full = false;
  if (options_.max_connections_per_address != 0) {
    auto it = per_address_.find(c->ip_);
    address_full = it != per_address_.end() && it->second >= options_.max_connections_per_address;
  }
  if (!accepting_) {
    refuse = RefuseReason::stopping;
  } else if (!filter_.allows(c->addr_)) {
    refuse = RefuseReason::not_allowed;
  } else if (open_.size() >= options_.max_connections) {
    // Evict only for a connection that is then let in.
    Connection* victim = !address_full && options_.evict_when_full ? eviction_victim() : nullptr;
    if (victim == nullptr) {
      refuse = RefuseReason::max_connections;
    } else {
      spdlog::debug("{}: evicting {} for a new connection from {}", options_.log_name,
                    victim->peer_, c->peer_);
      victim->close(CloseReason::evicted);
    }
  } else if (address_full) {
    refuse = RefuseReason::max_connections_per_address;
  }
  if (refuse) {
    refused_[static_cast<std::size_t>(*refuse)]->inc();
    SLUICE_WARN_LIMITED(log_limit_, "{}: refused a connection from {}: {}", options_.log_name,
                        c->peer_, kRefuseNames[static_cast<std::size_t>(*refuse)]);
    c->server_ = nullptr;
    c->close_handles();
    return;
  }
  c->state_ = Connection::State::open;
  c->id_ = ++next_id_;
  uv_timer_init(loop_.uv(), &c->timer_);
  c->timer_.data = c;
  c->open_handles_ = 2;
  c->write_req_.data = c;
  c->shutdown_req_.data = c;
  uv_tcp_nodelay(&c->tcp_, 1);
  uv_tcp_keepalive(&c->tcp_, 1, 60);
  if (tls_) c->tls_ = std::make_unique<tls::TlsSession>(tls_);
  c->accepted_ms_ = c->last_read_ms_ = now_ms();
  ++per_address_[c->ip_];
  open_.emplace(c->id_, std::unique_ptr<Connection>(c));
  connections_.set(static_cast<std::int64_t>(open_.size()));
  handler_.on_open(*c);
  if (c->state_ != Connection::State::open) return;
  c->update_reading();
  arm(*c);
}

Connection* TcpServer::eviction_victim() {
  Connection* victim = nullptr;
  for (auto& [id, c] : open_) {
    if (c->busy_ || c->failing_ || c->state_ != Connection::State::open) continue;
    if (victim != nullptr && c->last_read_ms_ >= victim->last_read_ms_) continue;
    if (handler_.evictable(*c)) victim = c.get();
  }
  return victim;
}

void TcpServer::on_read(Connection& c, ssize_t n, const uv_buf_t* buf) {
  if (c.state_ != Connection::State::open) return;
  if (n < 0) {
    c.close(n == UV_EOF ? CloseReason::peer : CloseReason::read_error);
    return;
  }
  if (n == 0) return;
  c.last_read_ms_ = now_ms();
  c.read_since_yield_ += static_cast<std::size_t>(n);
  turn_read_bytes_ += static_cast<std::size_t>(n);
  if (options_.max_server_read_bytes_per_turn != 0 &&
      turn_read_bytes_ >= options_.max_server_read_bytes_per_turn) {
    // The server's turn is used up: no connection is read again before the next one (libuv
    // skips the ready sockets it has not served yet once they stop reading).
    for (auto& [id, other] : open_) {
      if (other->state_ == Connection::State::open && !other->yielded_ && other->reading())
        yield(*other);
    }
    if (!c.yielded_) yield(c);
  } else if (options_.max_read_bytes_per_turn != 0 &&
             c.read_since_yield_ >= options_.max_read_bytes_per_turn) {
    // Stops libuv's reading of this socket for the rest of the turn (after this buffer).
    yield(c);
  }
  if (!next_turn_queued_) {  // the budget starts again at the next turn
    next_turn_queued_ = true;
    loop_.defer(&TcpServer::next_turn, this, 0);
  }
  std::string_view data(buf->base, static_cast<std::size_t>(n));
  if (c.codec_) {
    decoded_.clear();
    if (Status st = c.codec_->decode(data, decoded_); !st.ok()) {
      SLUICE_WARN_LIMITED(log_limit_, "{}: closing {}: {}", options_.log_name, c.peer_,
                          st.message());
      c.close(CloseReason::bad_input);
      return;
    }
    data = decoded_;
  }
  if (c.tls_) {
    plain_.clear();
    std::string send;
    const Status st = c.tls_->read(data, plain_, send);
    if (!send.empty()) c.write_wire(send);  // handshake answers and alerts
    if (!st.ok()) {
      tls_errors_.inc();
      SLUICE_WARN_LIMITED(log_limit_, "{}: closing {}: {}", options_.log_name, c.peer_,
                          st.message());
      c.close(CloseReason::tls_error);
      return;
    }
    if (plain_.empty() || c.state_ != Connection::State::open) return;
    data = plain_;
  }
  handler_.on_data(c, data);
}

void TcpServer::arm(Connection& c) {
  const std::uint64_t due = c.deadline_ms();
  if (due == kNever) return;
  if (c.timer_due_ms_ != 0 && c.timer_due_ms_ <= due) return;  // fires first and re-arms
  c.timer_due_ms_ = due;
  const std::uint64_t now = now_ms();
  uv_timer_start(&c.timer_, &TcpServer::timer_fired, due > now ? due - now : 0, 0);
}

void TcpServer::timer_fired(uv_timer_t* t) {
  auto* c = static_cast<Connection*>(t->data);
  c->server_->on_timer(*c);
}

void TcpServer::on_timer(Connection& c) {
  c.timer_due_ms_ = 0;
  const std::uint64_t now = now_ms();
  if (c.state_ == Connection::State::draining) {
    if (now >= c.close_start_ms_ + ms(options_.close_timeout)) {
      spdlog::debug("{}: {} did not take its last {} bytes within {} ms; cut off",
                    options_.log_name, c.peer_, c.unsent_bytes(), options_.close_timeout.count());
      c.finish();
      return;
    }
    arm(c);
    return;
  }
  if (c.state_ != Connection::State::open) return;
  if (c.failing_) {
    c.close(c.fail_reason_);
    return;
  }
  if (c.in_message_ && now >= c.message_start_ms_ + c.message_timeout_ms_) {
    SLUICE_WARN_LIMITED(log_limit_, "{}: closing {}: a message unfinished after {} ms ({})",
                        options_.log_name, c.peer_, c.message_timeout_ms_,
                        options_.message_timeout_label);
    expire(c, CloseReason::message_timeout);
    return;
  }
  if (c.tls_ && !c.tls_->established() && now >= c.accepted_ms_ + ms(options_.handshake_timeout)) {
    SLUICE_WARN_LIMITED(log_limit_, "{}: closing {}: TLS handshake unfinished after {} ms",
                        options_.log_name, c.peer_, options_.handshake_timeout.count());
    expire(c, CloseReason::handshake_timeout);
    return;
  }
  if (!c.in_message_ && !c.busy_ && now >= c.last_read_ms_ + ms(options_.idle_timeout)) {
    spdlog::debug("{}: closing {}: idle for {} ms", options_.log_name, c.peer_,
                  options_.idle_timeout.count());
    expire(c, CloseReason::idle);
    return;
  }
  arm(c);
}

void TcpServer::expire(Connection& c, CloseReason why) {
  handler_.on_timeout(c, why);
  c.close(why);  // a no-op if the protocol closed it itself
}

void TcpServer::output_changed(std::int64_t delta) {
  const bool was_over = over_budget();
  output_bytes_ = static_cast<std::uint64_t>(static_cast<std::int64_t>(output_bytes_) + delta);
  if (was_over && !over_budget()) resume_paused();
}

void TcpServer::charge_input(std::int64_t delta) {
  const bool was_over = over_budget();
  input_bytes_ = static_cast<std::uint64_t>(static_cast<std::int64_t>(input_bytes_) + delta);
  if (was_over && !over_budget()) resume_paused();
}

void TcpServer::resume_paused() {
  if (paused_ == 0) return;
  std::vector<Connection*> paused;
  for (auto& [id, c] : open_) {
    if (c->paused_for_output_) paused.push_back(c.get());
  }
  for (Connection* c : paused) c->update_reading();
}

void TcpServer::closed(Connection& c, CloseReason why) {
  closed_[static_cast<std::size_t>(why)]->inc();
  spdlog::debug("{}: closing {}: {}", options_.log_name, c.peer_, close_reason_name(why, options_));
  auto it = open_.find(c.id_);
  if (it != open_.end()) {
    draining_.insert(it->second.release());
    open_.erase(it);
  }
  if (auto a = per_address_.find(c.ip_); a != per_address_.end() && --a->second == 0) {
    per_address_.erase(a);
  }
  connections_.set(static_cast<std::int64_t>(open_.size()));
  handler_.on_close(c, why);
}

}  // namespace sluice::net

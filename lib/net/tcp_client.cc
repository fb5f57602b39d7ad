#include "lib/net/tcp_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "lib/config/units.h"
#include "lib/core/assert.h"
#include "lib/net/tcp_server.h"

namespace sluice::net {

// One socket with what libuv may still touch after the client let go of it: the handle, its
// connect and write requests and the bytes of the write in flight. Freed by the close callback,
// which libuv runs after the cancelled requests' callbacks; `client` is null once dropped.
struct TcpClient::Conn {
  TcpClient* client = nullptr;
  uv_tcp_t tcp{};
  uv_connect_t creq{};
  uv_write_t wreq{};
  bool writing = false;
  bool established = false;
  std::string inflight;
  std::unique_ptr<tls::TlsSession> tls;
  std::string plain, send;  // TLS scratch
  std::unique_ptr<WireCodec> wire;
  std::string decoded;  // wire scratch
  std::vector<char> buf;
};

TcpClient::TcpClient(Loop& loop, TcpClientOptions options, TcpClientHandler& handler,
                     Counter* tls_errors)
    : loop_(loop),
      options_(std::move(options)),
      handler_(handler),
      tls_errors_(tls_errors),
      connect_timer_(loop),
      write_timer_(loop),
      backoff_timer_(loop),
      backoff_(options_.backoff_initial) {
  if (!split_host_port(options_.address, host_, port_)) port_ = 0;
}

TcpClient::~TcpClient() {
  close();
  loop_.cancel_deferred(this);
}

void TcpClient::connect() {
  if (state_ == State::backoff || abort_pending_) {
    want_connect_ = true;
    return;
  }
  if (state_ != State::idle) return;
  start_connect();
}

void TcpClient::connect_now() {
  if (state_ == State::backoff) {
    backoff_timer_.stop();
    state_ = State::idle;
  }
  connect();
}

void TcpClient::start_connect() {
  SLUICE_ASSERT(state_ == State::idle && conn_ == nullptr);
  state_ = State::connecting;
  want_connect_ = false;
  confirmed_ = false;
  connect_timer_.start(options_.connect_timeout, [this] {
    fail(Status(Errc::timeout, fmt::format("could not connect to {} within {}", options_.address,
                                           format_duration(options_.connect_timeout))));
  });
  if (port_ == 0) {
    // Parsing checked the address; this is a client built by hand with a bad one.
    abort(Status(Errc::config, fmt::format("\"{}\" is not HOST:PORT", options_.address)));
    return;
  }
  sockaddr_storage ss{};
  if (uv_ip4_addr(host_.c_str(), port_, reinterpret_cast<sockaddr_in*>(&ss)) == 0 ||
      uv_ip6_addr(host_.c_str(), port_, reinterpret_cast<sockaddr_in6*>(&ss)) == 0) {
    addrinfo ai{};
    ai.ai_addr = reinterpret_cast<sockaddr*>(&ss);
    on_resolved(0, &ai);
    return;
  }
  gai_ = new uv_getaddrinfo_t{};
  gai_->data = this;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string port = std::to_string(port_);
  const int rc = uv_getaddrinfo(
      loop_.uv(), gai_,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* self = static_cast<TcpClient*>(req->data);
        delete req;
        if (self != nullptr) {
          self->gai_ = nullptr;
          self->on_resolved(status, res);
        }
        uv_freeaddrinfo(res);
      },
      host_.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    delete gai_;
    gai_ = nullptr;
    abort(Status::from_uv(rc, "getaddrinfo " + host_));
  }
}

void TcpClient::on_resolved(int status, addrinfo* res) {
  if (status != 0 || res == nullptr) {
    fail(Status(Errc::unavailable, fmt::format("cannot resolve {}: {}", options_.address,
                                               status != 0 ? uv_strerror(status) : "no address")));
    return;
  }
  auto* c = new Conn{};
  c->client = this;
  c->buf.resize(options_.read_buffer_bytes);
  if (options_.wire_codec) c->wire = options_.wire_codec();
  uv_tcp_init(loop_.uv(), &c->tcp);
  c->tcp.data = c;
  c->creq.data = c;
  conn_ = c;
  const int rc = uv_tcp_connect(&c->creq, &c->tcp, res->ai_addr, [](uv_connect_t* r, int st) {
    auto* conn = static_cast<Conn*>(r->data);
    if (conn->client != nullptr) conn->client->on_tcp_connected(st);
  });
  // Reached from inside connect() for a numeric address: report on the next turn.
  if (rc != 0) abort(Status::from_uv(rc, "connect " + options_.address));
}

void TcpClient::on_tcp_connected(int status) {
  if (status != 0) {
    fail(Status::from_uv(status, "connect " + options_.address));
    return;
  }
  uv_tcp_nodelay(&conn_->tcp, 1);
  const int rc = uv_read_start(
      reinterpret_cast<uv_stream_t*>(&conn_->tcp),
      [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
        auto* c = static_cast<Conn*>(h->data);
        *b = uv_buf_init(c->buf.data(), static_cast<unsigned>(c->buf.size()));
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
        auto* c = static_cast<Conn*>(s->data);
        if (c->client != nullptr) c->client->on_read(n, b);
      });
  if (rc != 0) {
    fail(Status::from_uv(rc, "read " + options_.address));
    return;
  }
  if (!options_.tls) {
    on_established();
    return;
  }
  const std::string& name = options_.server_name.empty() ? host_ : options_.server_name;
  conn_->tls = std::make_unique<tls::TlsSession>(options_.tls, name);
  std::string hello;
  if (Status st = conn_->tls->start(hello); !st.ok()) {
    fail(std::move(st), true);
    return;
  }
  send_cipher(hello);
}

void TcpClient::on_established() {
  connect_timer_.stop();
  conn_->established = true;
  state_ = State::connected;
  ++connects_;
  handler_.on_connected();
}

void TcpClient::on_read(ssize_t n, const uv_buf_t* buf) {
  if (n == 0) return;
  if (n < 0) {
    fail(n == UV_EOF ? Status(Errc::unavailable, options_.address + " closed the connection")
                     : Status::from_uv(static_cast<int>(n), "read " + options_.address));
    return;
  }
  std::string_view data(buf->base, static_cast<std::size_t>(n));
  Conn* c = conn_;
  if (c->wire) {
    c->decoded.clear();
    if (Status st = c->wire->decode(data, c->decoded); !st.ok()) {
      fail(std::move(st));
      return;
    }
    data = c->decoded;
    if (data.empty()) return;
  }
  if (!c->tls) {
    handler_.on_data(data);
    return;
  }
  c->plain.clear();
  c->send.clear();
  const Status st = c->tls->read(data, c->plain, c->send);
  if (!c->send.empty()) send_cipher(c->send);
  if (conn_ != c) return;
  if (!st.ok()) {
    fail(st, true);
    return;
  }
  if (!c->established && c->tls->established()) {
    on_established();
    if (conn_ != c) return;
  }
  if (!c->plain.empty()) handler_.on_data(c->plain);
}

std::uint64_t TcpClient::write(std::string_view data) {
  SLUICE_ASSERT(state_ == State::connected && conn_ != nullptr);
  queued_ += data.size();
  if (conn_->tls) {
    // Errors surface on the next read or write; a failed TLS write leaves the session broken.
    if (Status st = conn_->tls->write(data, pending_); !st.ok()) {
      abort(std::move(st));
      return queued_;
    }
  } else {
    pending_.append(data);
  }
  flush();
  return queued_;
}

void TcpClient::send_cipher(std::string_view data) {
  pending_.append(data);
  flush();
}

void TcpClient::flush() {
  Conn* c = conn_;
  if (c == nullptr || c->writing || pending_.empty() || abort_pending_) return;
  if (c->wire) {
    c->inflight.clear();
    c->wire->encode(pending_, c->inflight);
  } else {
    c->inflight.swap(pending_);
  }
  pending_.clear();
  inflight_mark_ = queued_;
  c->writing = true;
  c->wreq.data = c;
  uv_buf_t b = uv_buf_init(c->inflight.data(), static_cast<unsigned>(c->inflight.size()));
  const int rc = uv_write(&c->wreq, reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1,
                          [](uv_write_t* r, int status) {
                            auto* conn = static_cast<Conn*>(r->data);
                            conn->writing = false;
                            if (conn->client != nullptr) conn->client->on_write_done(status);
                          });
  if (rc != 0) {
    c->writing = false;
    abort(Status::from_uv(rc, "write " + options_.address));
    return;
  }
  if (options_.write_timeout.count() > 0) {
    write_timer_.start(options_.write_timeout, [this] {
      fail(Status(Errc::timeout,
                  fmt::format("a write to {} did not complete within {} (the peer is not reading)",
                              options_.address, format_duration(options_.write_timeout))));
    });
  }
}

void TcpClient::on_write_done(int status) {
  write_timer_.stop();
  if (status != 0) {
    fail(Status::from_uv(status, "write " + options_.address));
    return;
  }
  const bool progressed = inflight_mark_ > written_;
  written_ = std::max(written_, inflight_mark_);
  if (progressed && !confirmed_) {
    confirmed_ = true;
    backoff_ = options_.backoff_initial;
  }
  if (conn_->inflight.capacity() > (std::size_t{4} << 20)) std::string().swap(conn_->inflight);
  flush();
  if (progressed) handler_.on_written(written_);
}

void TcpClient::drop() {
  connect_timer_.stop();
  write_timer_.stop();
  if (gai_ != nullptr) {
    gai_->data = nullptr;  // its callback frees it
    gai_ = nullptr;
  }
  if (conn_ != nullptr) {
    Conn* c = conn_;
    conn_ = nullptr;
    c->client = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
             [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
  }
  pending_.clear();
  // What was never taken by the kernel is gone with the socket.
  queued_ = written_;
}

void TcpClient::fail(Status why, bool tls_error) {
  if (tls_error && tls_errors_ != nullptr) tls_errors_->inc();
  const bool had_unsent = queued_ != written_;
  const bool was_connected = state_ == State::connected;
  drop();
  // A connection that worked and had nothing outstanding (the peer closed an idle connection)
  // reconnects at once when next needed; everything else waits out the backoff.
  if (was_connected && !had_unsent && confirmed_) {
    state_ = State::idle;
  } else {
    state_ = State::backoff;
    const auto wait = backoff_;
    backoff_ = std::min(backoff_ * 2, options_.backoff_max);
    backoff_timer_.start(wait, [this] {
      state_ = State::idle;
      if (want_connect_) start_connect();
    });
  }
  handler_.on_disconnected(why);
}

void TcpClient::abort(Status why) {
  // Dropped now (nothing more is written); reported on the next turn, never from inside a call.
  drop();
  state_ = State::connecting;  // neither usable nor reconnectable until reported
  abort_why_ = std::move(why);
  abort_pending_ = true;
  loop_.defer(&TcpClient::reported, this, 0);
}

void TcpClient::reported(void* self, std::uint64_t) {
  auto* c = static_cast<TcpClient*>(self);
  if (!c->abort_pending_) return;
  c->abort_pending_ = false;
  c->state_ = State::idle;
  c->confirmed_ = false;
  c->fail(std::move(c->abort_why_));
}

void TcpClient::close() {
  drop();
  backoff_timer_.stop();
  abort_pending_ = false;
  loop_.cancel_deferred(this);
  want_connect_ = false;
  state_ = State::idle;
}

}  // namespace sluice::net

namespace sluice::net {

bool StreamSinkOptions::parse(const ConfigNode& node, ConfigErrors& errors,
                              StreamSinkOptions& out) {
  const std::size_t before = errors.size();
  if (node.required("address", out.client.address, errors)) {
    std::string host;
    int port = 0;
    if (!split_host_port(out.client.address, host, port) || port == 0) {
      node.error_at("address", errors, "\"" + out.client.address + "\" is not HOST:PORT");
    }
  }
  using std::chrono::milliseconds;
  node.optional("connect_timeout", out.client.connect_timeout, errors,
                InRange<milliseconds>{milliseconds(10), std::chrono::minutes(10)});
  node.optional("reconnect_backoff", out.client.backoff_initial, errors,
                InRange<milliseconds>{milliseconds(1), std::chrono::minutes(10)});
  node.optional("max_reconnect_backoff", out.client.backoff_max, errors,
                InRange<milliseconds>{milliseconds(1), std::chrono::hours(1)});
  node.optional("flush_timeout", out.flush_timeout, errors,
                InRange<milliseconds>{milliseconds(0), std::chrono::minutes(10)});
  // The agent reads and checks delivery_timeout for the group; here it bounds each write. Its
  // errors are the agent's to report, once.
  ConfigErrors ignored;
  std::chrono::nanoseconds delivery{std::chrono::seconds(5)};
  if (node.optional("delivery_timeout", delivery, ignored) && delivery.count() > 0) {
    out.client.write_timeout =
        std::max(milliseconds(1), std::chrono::duration_cast<milliseconds>(delivery));
  }
  tls::TlsConfig tls;
  if (tls::TlsConfig::parse(node, errors, tls, /*server=*/false) && tls.enabled) {
    if (auto ctx = tls::TlsContext::make(tls, /*server=*/false)) {
      out.client.tls = std::move(*ctx);
      out.client.server_name = tls.server_name;
    }
  }
  if (out.client.backoff_max < out.client.backoff_initial) {
    node.error_at("max_reconnect_backoff", errors, "must not be below reconnect_backoff");
  }
  return errors.size() == before;
}

StreamSink::StreamSink(SinkContext& ctx, StreamSinkOptions options, std::string_view metric_prefix)
    : ctx_(ctx),
      options_(std::move(options)),
      client_(ctx.loop, options_.client, *this, &tls::handshake_errors(ctx.metrics, ctx.labels())),
      stop_timer_(ctx.loop),
      connects_(ctx.metrics.counter(fmt::format("{}_connects_total", metric_prefix),
                                    "Connections made to the peer.", ctx.labels())),
      disconnects_(ctx.metrics.counter(
          fmt::format("{}_disconnects_total", metric_prefix),
          "Connects that failed and connections lost (closed, reset, write timeout).",
          ctx.labels())),
      bytes_(ctx.metrics.counter(fmt::format("{}_bytes_total", metric_prefix),
                                 "Bytes of batches taken by the kernel.", ctx.labels())) {}

StreamSink::~StreamSink() {
  ctx_.loop.cancel_deferred(this);
  client_.close();
}

void StreamSink::deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) {
  if (stopping_ || client_.state() == TcpClient::State::backoff) {
    // Known down: answer at once so that a failover group moves on; the client reconnects when
    // the backoff ends (or a probe asks).
    client_.connect();
    answer_later(id, &done,
                 DeliveryResult::retry(stopping_ ? "the sink is stopping"
                                                 : "not connected to " + client_.address() +
                                                       " (reconnecting)"));
    return;
  }
  jobs_.push_back({&batch, id, &done, 0, false, {}, {}});
  if (client_.connected()) {
    send(jobs_.back());
  } else {
    client_.connect();
  }
}

void StreamSink::send(Job& job) {
  scratch_.clear();
  encode(*job.batch, scratch_, job.rejected, job.why);
  job.sent = true;
  const bool nothing = scratch_.empty();
  job.mark = nothing ? client_.queued_mark() : client_.write(scratch_);
  bytes_.inc(scratch_.size());
  if (scratch_.capacity() > (std::size_t{8} << 20)) std::string().swap(scratch_);
  // A write that failed at once (TLS, uv_write) dropped its bytes and left the mark at the written
  // mark: only the disconnect that follows may answer it (Retry). A drain already queued for this
  // turn would otherwise have answered it Ok.
  if (!nothing && job.mark <= client_.written_mark()) job.mark = UINT64_MAX;
  if (nothing && job.mark <= client_.written_mark()) {
    // Nothing to write (every event rejected, or an empty batch): answered on the next turn,
    // in order, by the same path as a completed write.
    if (later_.empty()) ctx_.loop.defer(&StreamSink::later_task, this, 0);
    later_.push_back({DeliveryId{0}, nullptr, DeliveryResult::ok(), Later::Kind::drain});
  }
}

void StreamSink::on_connected() {
  connects_.inc();
  for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
    if (!it->sent) send(*it);
    if (!client_.connected()) break;
  }
  if (probe_ != nullptr) finish_probe(true);
}

void StreamSink::answer(Job& job) {
  DeliveryResult r = job.rejected.empty()
                         ? DeliveryResult::ok()
                         : DeliveryResult::reject(job.why, std::move(job.rejected));
  job.done->on_delivered(job.id, r);
}

void StreamSink::on_written(std::uint64_t mark) {
  while (!jobs_.empty() && jobs_.front().sent && jobs_.front().mark <= mark) {
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    answer(job);  // may deliver() again: the job is off the queue already
  }
  maybe_stopped();
}

void StreamSink::on_disconnected(const Status& why) {
  disconnects_.inc();
  Fifo<Job> failed;
  failed.swap(jobs_);
  if (!failed.empty() && !stopping_) {
    SLUICE_WARN_LIMITED(log_limit_, "sink {}: {}: {} batches answer Retry", ctx_.name,
                        why.message(), failed.size());
  }
  for (Job& job : failed) job.done->on_delivered(job.id, DeliveryResult::retry(why.message()));
  if (probe_ != nullptr) finish_probe(false);
  maybe_stopped();
}

void StreamSink::cancel(DeliveryId id) {
  for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
    if (it->id != id) continue;
    if (it->sent) {
      // Its bytes are on the wire, partly: only a new connection keeps the framing intact.
      client_.abort(Status(Errc::timeout, "delivery cancelled by the group"));
    } else {
      Job job = std::move(*it);
      jobs_.erase(it);
      answer_later(job.id, job.done, DeliveryResult::retry("cancelled"));
    }
    return;
  }
}

bool StreamSink::probe(ProbeListener& listener) {
  if (probe_ != nullptr || stopping_ || on_stopped_) return false;
  probe_ = &listener;
  if (client_.connected()) {
    // Healthy already; answered on a later turn like every probe.
    answer_later(DeliveryId{0}, nullptr, DeliveryResult::ok());
    return true;
  }
  client_.connect_now();
  return true;
}

void StreamSink::finish_probe(bool healthy) {
  ProbeListener* l = probe_;
  probe_ = nullptr;
  l->on_probed(*this, healthy);
}

void StreamSink::answer_later(DeliveryId id, DeliveryListener* done, DeliveryResult result) {
  if (later_.empty()) ctx_.loop.defer(&StreamSink::later_task, this, 0);
  later_.push_back(
      {id, done, std::move(result), done != nullptr ? Later::Kind::answer : Later::Kind::probe});
}

void StreamSink::later_task(void* self, std::uint64_t) {
  auto* s = static_cast<StreamSink*>(self);
  std::deque<Later> now;
  now.swap(s->later_);
  for (Later& l : now) {
    if (l.kind == Later::Kind::answer) {
      l.done->on_delivered(l.id, l.result);
    } else if (l.kind == Later::Kind::drain) {
      s->on_written(s->client_.written_mark());
    } else if (s->probe_ != nullptr) {
      s->finish_probe(l.result.is_ok());  // a probe answered without a connect
    }
  }
  s->maybe_stopped();
}

void StreamSink::stop(StopCallback on_stopped) {
  on_stopped_ = std::move(on_stopped);
  if (probe_ != nullptr && jobs_.empty() && !client_.connected() && later_.empty()) {
    // A probe's connect in flight is cancelled; it reports unhealthy before on_stopped.
    client_.close();
    answer_later(DeliveryId{0}, nullptr, DeliveryResult::retry("stopping"));
  }
  if (!jobs_.empty()) {
    stop_timer_.start(options_.flush_timeout, [this] {
      if (on_stopped_ && !jobs_.empty()) {
        stopping_ = true;
        client_.abort(Status(Errc::timeout, "flush_timeout passed at stop"));
      }
    });
  }
  maybe_stopped();
}

void StreamSink::maybe_stopped() {
  if (!on_stopped_ || !jobs_.empty() || !later_.empty() || probe_ != nullptr) return;
  stop_timer_.stop();
  stopping_ = true;
  client_.close();
  auto cb = std::move(on_stopped_);
  on_stopped_ = nullptr;
  cb();
}

}  // namespace sluice::net

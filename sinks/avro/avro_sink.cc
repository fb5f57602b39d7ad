#include "sinks/avro/avro_sink.h"

#include <spdlog/spdlog.h>

#include "lib/net/tcp_server.h"

namespace sluice::sinks {

struct AvroSink::Conn {
  AvroSink* self = nullptr;
  uv_getaddrinfo_t* gai = nullptr;
  uv_connect_t* creq = nullptr;
  uv_tcp_t* tcp = nullptr;
  bool ready = false, handshaken = false;
  avro::FrameDecoder decoder;
  std::unique_ptr<codec::Inflater> inflate;
  std::unique_ptr<codec::Deflater> deflate;
  std::unique_ptr<tls::TlsSession> tls;
  std::string inflated, decrypted;
  char buf[64 * 1024];
};

// A TCP connect to the server. Its connect callback always runs (ECANCELED when the socket is
// closed first) and frees it; `sink` is cleared when the sink is destroyed before that.
struct AvroSink::Probe {
  AvroSink* sink = nullptr;
  ProbeListener* listener = nullptr;
  uv_tcp_t* tcp = nullptr;
  uv_connect_t req{};
};

// An answer on its way through the loop; `sink` is cleared if the sink is destroyed first.
struct AvroSink::Later {
  AvroSink* sink;
  Job job;
  DeliveryResult result;
};

std::optional<AvroSinkConfig> AvroSinkConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  AvroSinkConfig c;
  const std::size_t before = errors.size();
  if (node.required("address", c.address, errors)) {
    std::string host;
    int port = 0;
    if (!net::split_host_port(c.address, host, port) || port == 0) {
      node.error_at("address", errors, "\"" + c.address + "\" is not HOST:PORT");
    }
  }
  node.optional_enum("compression", c.deflate, errors, {{"none", false}, {"deflate", true}});
  node.optional_enum("layering", c.zlib_outside_tls, errors,
                     {{"tls_outside", false}, {"zlib_outside", true}});
  std::uint32_t level = 6;
  node.optional("compression_level", level, errors, InRange<std::uint64_t>{0, 9});
  c.compression_level = static_cast<int>(level);
  node.optional(
      "connect_timeout", c.connect_timeout, errors,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(10), std::chrono::minutes(10)});
  node.optional(
      "request_timeout", c.request_timeout, errors,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(10), std::chrono::hours(1)});
  node.optional(
      "flush_timeout", c.flush_timeout, errors,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(0), std::chrono::minutes(10)});
  tls::TlsConfig::parse(node, errors, c.tls, /*server=*/false);
  node.reject_unknown_keys(errors);
  if (errors.size() != before) return std::nullopt;
  return c;
}

Result<std::unique_ptr<AvroSink>> AvroSink::create(const AvroSinkConfig& config, SinkContext& ctx) {
  std::shared_ptr<tls::TlsContext> tls;
  if (config.tls.enabled) {
    auto t = tls::TlsContext::make(config.tls, /*server=*/false);
    if (!t) return t.error();
    tls = std::move(*t);
  }
  return std::make_unique<AvroSink>(config, ctx, std::move(tls));
}

AvroSink::AvroSink(const AvroSinkConfig& config, SinkContext& ctx,
                   std::shared_ptr<tls::TlsContext> tls)
    : config_(config),
      ctx_(ctx),
      tls_(std::move(tls)),
      request_timer_(ctx.loop),
      connect_timer_(ctx.loop),
      probe_timer_(ctx.loop),
      stop_timer_(ctx.loop),
      connects_(ctx.metrics.counter("sluice_avro_sink_connects_total",
                                    "Connections opened to the Avro server.", ctx.labels())),
      failures_(ctx.metrics.counter(
          "sluice_avro_sink_failures_total",
          "Requests that failed: FAILED answers, errors, timeouts, lost connections.",
          ctx.labels())),
      tls_errors_(tls::handshake_errors(ctx.metrics, ctx.labels())) {
  int port = 0;
  net::split_host_port(config_.address, host_, port);
  port_ = std::to_string(port);
}

AvroSink::~AvroSink() {
  ctx_.loop.cancel_deferred(this);
  // Whoever listened is gone: nothing is answered from here on.
  on_stopped_ = nullptr;
  queue_.clear();
  in_flight_ = false;
  if (probe_ != nullptr) {
    // Destroyed without stop(): the probe's callback must not reach this sink or its listener.
    probe_->sink = nullptr;
    close_and_delete(probe_->tcp);
    probe_ = nullptr;
  }
  if (conn_) drop_connection("shutting down");
  for (Later* l : later_) l->sink = nullptr;
}

void AvroSink::deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) {
  queue_.push_back({&batch, id, &done});
  pump();
}

void AvroSink::pump() {
  if (in_flight_ || queue_.empty()) return;
  if (!conn_) return connect();
  if (!conn_->ready) return;  // connecting
  send_front();
}

void AvroSink::connect() {
  conn_ = std::make_unique<Conn>();
  conn_->self = this;
  if (config_.deflate) {
    conn_->inflate = std::make_unique<codec::Inflater>(std::size_t{64} << 20);
    conn_->deflate = std::make_unique<codec::Deflater>(config_.compression_level);
  }
  connect_timer_.start(config_.connect_timeout, [this] {
    if (conn_ && !conn_->ready) {
      drop_connection("could not connect to " + config_.address + " within the connect_timeout");
    }
  });
  conn_->gai = new uv_getaddrinfo_t{};
  conn_->gai->data = conn_.get();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const int rc = uv_getaddrinfo(
      ctx_.loop.uv(), conn_->gai,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* c = static_cast<Conn*>(req->data);
        delete req;
        if (c == nullptr) {  // the connection was dropped meanwhile
          uv_freeaddrinfo(res);
          return;
        }
        c->gai = nullptr;
        AvroSink* self = c->self;
        if (status != 0 || res == nullptr) {
          uv_freeaddrinfo(res);
          self->drop_connection("cannot resolve " + self->config_.address + ": " +
                                uv_strerror(status));
          return;
        }
        c->tcp = new uv_tcp_t{};
        uv_tcp_init(self->ctx_.loop.uv(), c->tcp);
        c->tcp->data = c;
        c->creq = new uv_connect_t{};
        c->creq->data = c;
        const int crc = uv_tcp_connect(c->creq, c->tcp, res->ai_addr, [](uv_connect_t* r, int st) {
          auto* conn = static_cast<Conn*>(r->data);
          delete r;
          if (conn == nullptr) return;
          conn->creq = nullptr;
          conn->self->on_connected(st);
        });
        uv_freeaddrinfo(res);
        if (crc != 0) {
          delete c->creq;
          c->creq = nullptr;
          self->drop_connection(std::string("connect: ") + uv_strerror(crc));
        }
      },
      host_.c_str(), port_.c_str(), &hints);
  if (rc != 0) {
    delete conn_->gai;
    conn_->gai = nullptr;
    drop_connection(std::string("getaddrinfo: ") + uv_strerror(rc));
  }
}

void AvroSink::on_connected(int status) {
  if (status != 0) {
    drop_connection("cannot connect to " + config_.address + ": " + uv_strerror(status));
    return;
  }
  connect_timer_.stop();
  connects_.inc();
  conn_->ready = true;
  uv_tcp_nodelay(conn_->tcp, 1);
  if (tls_) {
    const std::string& name = config_.tls.server_name.empty() ? host_ : config_.tls.server_name;
    conn_->tls = std::make_unique<tls::TlsSession>(tls_, name);
    std::string hello;
    if (Status st = conn_->tls->start(hello); !st.ok()) {
      tls_errors_.inc();
      drop_connection(st.message());
      return;
    }
    send_wire(std::move(hello));
    if (!conn_) return;
  }
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(conn_->tcp),
      [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
        auto* c = static_cast<Conn*>(h->data);
        b->base = c->buf;
        b->len = sizeof c->buf;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
        if (s->data == nullptr) return;
        static_cast<Conn*>(s->data)->self->on_read(n, b);
      });
  pump();
}

void AvroSink::send_front() {
  const Job& job = queue_.front();
  scratch_.clear();
  avro::Writer w(scratch_);
  handshake_in_request_ = !conn_->handshaken;
  if (handshake_in_request_) {
    avro::HandshakeRequest h;
    h.client_hash = avro::kFlumeHash;
    h.client_protocol = avro::kFlumeProtocol;
    h.server_hash = avro::kFlumeHash;
    avro::write_handshake_request(w, h);
  }
  avro::write_append_batch(w, *job.batch, 0, job.batch->size());
  std::string frame;
  avro::encode_frame(++serial_, scratch_, frame);
  if (conn_->deflate && !zlib_outside()) {
    std::string compressed;
    conn_->deflate->write(frame, compressed);
    frame.swap(compressed);
  }
  if (conn_->tls) {
    std::string cipher;
    if (Status st = conn_->tls->write(frame, cipher); !st.ok()) {
      drop_connection(st.message());
      return;
    }
    frame.swap(cipher);
  }
  in_flight_ = true;
  if (!frame.empty()) send_wire(std::move(frame));  // empty: held until the TLS handshake ends
  if (!conn_) return;
  request_timer_.start(config_.request_timeout, [this] {
    drop_connection("no answer from " + config_.address + " within the request_timeout");
  });
}

void AvroSink::on_read(ssize_t n, const uv_buf_t* buf) {
  if (n < 0) {
    drop_connection(n == UV_EOF ? "the server closed the connection"
                                : std::string("read: ") + uv_strerror(static_cast<int>(n)));
    return;
  }
  std::string_view data(buf->base, static_cast<std::size_t>(n));
  const bool outer = zlib_outside();
  if (outer) {
    conn_->inflated.clear();
    if (Status st = conn_->inflate->write(data, conn_->inflated); !st.ok()) {
      drop_connection(st.message());
      return;
    }
    data = conn_->inflated;
  }
  if (conn_->tls) {
    std::string send;
    conn_->decrypted.clear();
    const Status st = conn_->tls->read(data, conn_->decrypted, send);
    if (!send.empty()) send_wire(std::move(send));
    if (!conn_) return;
    if (!st.ok()) {
      tls_errors_.inc();
      drop_connection(st.message());
      return;
    }
    data = conn_->decrypted;
    if (data.empty()) return;
  }
  if (conn_->inflate && !outer) {
    conn_->inflated.clear();
    if (Status st = conn_->inflate->write(data, conn_->inflated); !st.ok()) {
      drop_connection(st.message());
      return;
    }
    data = conn_->inflated;
  }
  Conn* c = conn_.get();
  std::int32_t serial = 0;
  std::string payload;
  bool got = false;
  const Status st = c->decoder.feed(data, [&](std::int32_t s, std::string_view p) {
    serial = s;
    payload.assign(p);
    got = true;
  });
  if (!st.ok()) {
    drop_connection("a bad frame from the server: " + st.message());
    return;
  }
  if (got) on_frame(serial, payload);
}

void AvroSink::on_frame(std::int32_t serial, std::string_view payload) {
  if (!in_flight_ || serial != serial_) {
    drop_connection("an answer to request " + std::to_string(serial) + " while waiting for " +
                    std::to_string(serial_));
    return;
  }
  avro::Reader r(payload);
  if (handshake_in_request_) {
    avro::HandshakeResponse h;
    if (!avro::read_handshake_response(r, h)) {
      drop_connection("a malformed handshake response");
      return;
    }
    if (h.match == avro::Match::none) {
      drop_connection("the server refused the handshake (NONE): not a Flume Avro source?");
      return;
    }
    if (h.match == avro::Match::client &&
        (!h.server_protocol || h.server_protocol->find("appendBatch") == std::string_view::npos)) {
      drop_connection("the server's protocol has no appendBatch");
      return;
    }
    conn_->handshaken = true;
  }
  avro::CallStatus status = avro::CallStatus::unknown;
  std::string error;
  if (!avro::read_response(r, status, error)) {
    drop_connection("the server answered an error: " + error);
    return;
  }
  request_timer_.stop();
  in_flight_ = false;
  if (status == avro::CallStatus::ok) {
    finish_front(DeliveryResult::ok());
  } else {
    failures_.inc();
    finish_front(
        DeliveryResult::retry(std::string("the Avro server at ") + config_.address + " answered " +
                              (status == avro::CallStatus::failed ? "FAILED" : "UNKNOWN")));
  }
  pump();
  maybe_stopped();
}

bool AvroSink::zlib_outside() const {
  return conn_ && conn_->tls && conn_->deflate && config_.zlib_outside_tls;
}

void AvroSink::send_wire(std::string data) {
  if (zlib_outside()) {
    std::string compressed;
    conn_->deflate->write(data, compressed);
    data.swap(compressed);
  }
  write_raw(std::move(data));
}

void AvroSink::write_raw(std::string data) {
  if (const int rc = write_owned(reinterpret_cast<uv_stream_t*>(conn_->tcp), std::move(data))) {
    drop_connection(std::string("write: ") + uv_strerror(rc));
  }
}

void AvroSink::finish_front(DeliveryResult result) {
  Job job = queue_.front();
  queue_.pop_front();
  job.done->on_delivered(job.id, result);
}

void AvroSink::drop_connection(const std::string& why) {
  request_timer_.stop();
  connect_timer_.stop();
  if (conn_) {
    if (conn_->gai != nullptr) conn_->gai->data = nullptr;  // its callback frees it
    if (conn_->creq != nullptr) conn_->creq->data = nullptr;
    if (conn_->tcp != nullptr) {
      conn_->tcp->data = nullptr;
      close_and_delete(conn_->tcp);
    }
    conn_.reset();
  }
  const bool had_work = in_flight_ || !queue_.empty();
  in_flight_ = false;
  if (had_work && !stopping_) {
    SLUICE_WARN_LIMITED(log_limit_, "avro sink {}: {}", ctx_.name, why);
  }
  // Everything queued answers Retry: the group rolls back in order and may fail over.
  fail_all(why);
  maybe_stopped();
}

void AvroSink::fail_all(const std::string& why) {
  while (!queue_.empty()) {
    failures_.inc();
    Job job = queue_.front();
    queue_.pop_front();
    answer_later(job, DeliveryResult::retry(why));
  }
}

void AvroSink::answer_later(Job job, DeliveryResult result) {
  // Never answer from inside deliver(): hand it to the loop. stop() waits for these.
  auto* later = new Later{this, job, std::move(result)};
  later_.push_back(later);
  ctx_.loop.defer(
      [](void* p, std::uint64_t) {
        std::unique_ptr<Later> l(static_cast<Later*>(p));
        AvroSink* sink = l->sink;
        if (sink == nullptr) return;
        std::erase(sink->later_, l.get());
        l->job.done->on_delivered(l->job.id, l->result);
        sink->maybe_stopped();
      },
      later, 0);
}

void AvroSink::cancel(DeliveryId id) {
  if (queue_.empty()) return;
  if (in_flight_ && queue_.front().id == id) {
    drop_connection("delivery cancelled by the group");
    return;
  }
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (it->id == id && !(in_flight_ && it == queue_.begin())) {
      Job job = *it;
      queue_.erase(it);
      answer_later(job, DeliveryResult::retry("cancelled"));
      return;
    }
  }
}

bool AvroSink::probe(ProbeListener& listener) {
  // A TCP connect to the server: enough to know that something listens again.
  if (probe_ != nullptr || on_stopped_ || stopping_) return false;
  sockaddr_storage ss{};
  if (uv_ip4_addr(host_.c_str(), std::stoi(port_), reinterpret_cast<sockaddr_in*>(&ss)) != 0 &&
      uv_ip6_addr(host_.c_str(), std::stoi(port_), reinterpret_cast<sockaddr_in6*>(&ss)) != 0) {
    return false;  // a name: tried with the next batch instead
  }
  auto* p = new Probe{this, &listener, new uv_tcp_t{}, {}};
  uv_tcp_init(ctx_.loop.uv(), p->tcp);
  p->req.data = p;
  const int rc = uv_tcp_connect(&p->req, p->tcp, reinterpret_cast<sockaddr*>(&ss),
                                [](uv_connect_t* r, int status) {
                                  auto* pr = static_cast<Probe*>(r->data);
                                  close_and_delete(pr->tcp);
                                  AvroSink* sink = pr->sink;
                                  if (sink != nullptr) sink->on_probe_done(pr, status);
                                  delete pr;
                                });
  if (rc != 0) {
    close_and_delete(p->tcp);
    delete p;
    return false;
  }
  probe_ = p;
  // A connect that hangs (a black-holed address) fails the probe after connect_timeout; closing
  // the socket makes the connect callback run with ECANCELED.
  probe_timer_.start(config_.connect_timeout, [this] {
    if (probe_ != nullptr) close_and_delete(probe_->tcp);
  });
  return true;
}

void AvroSink::on_probe_done(Probe* probe, int status) {
  SLUICE_ASSERT(probe == probe_);
  probe_ = nullptr;
  probe_timer_.stop();
  probe->listener->on_probed(*this, status == 0);
  maybe_stopped();
}

void AvroSink::stop(StopCallback on_stopped) {
  on_stopped_ = std::move(on_stopped);
  // A probe in flight is cancelled: its callback (ECANCELED, reported as failed) runs on the
  // next loop turn, before on_stopped, while the group still listens.
  if (probe_ != nullptr) close_and_delete(probe_->tcp);
  // Requests in flight get flush_timeout to be answered; then they answer Retry.
  if (in_flight_ || !queue_.empty()) {
    stop_timer_.start(config_.flush_timeout, [this] {
      if (on_stopped_ && (in_flight_ || !queue_.empty())) {
        stopping_ = true;
        drop_connection("flush_timeout passed at stop");
      }
    });
  }
  maybe_stopped();
}

void AvroSink::maybe_stopped() {
  if (!on_stopped_ || in_flight_ || !queue_.empty() || probe_ != nullptr || !later_.empty()) return;
  stop_timer_.stop();
  auto cb = std::move(on_stopped_);
  on_stopped_ = nullptr;
  stopping_ = true;
  if (conn_) drop_connection("stopping");
  cb();
}

}  // namespace sluice::sinks

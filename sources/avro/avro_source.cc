#include "sources/avro/avro_source.h"

#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "lib/core/clock.h"
#include "lib/http/http_server.h"
#include "lib/ingest/line_source.h"

namespace sluice::sources {

namespace {

constexpr std::size_t kReadBuffer = 64 * 1024;

}  // namespace

struct AvroSource::Conn {
  AvroSource* self = nullptr;
  std::uint64_t id = 0;
  uv_tcp_t* tcp = nullptr;
  avro::FrameDecoder decoder;
  std::string peer;
  bool connected = false, closing = false;
  const char* close_reason = nullptr;
  TimePoint last_activity{};
  std::unique_ptr<codec::Inflater> inflate;
  std::unique_ptr<codec::Deflater> deflate;
  std::unique_ptr<tls::TlsSession> tls;
  std::string inflated, decrypted;

  explicit Conn(const avro::FrameLimits& limits) : decoder(limits) {}
};

std::optional<AvroSourceConfig> AvroSourceConfig::parse(const ConfigNode& node,
                                                        ConfigErrors& errors) {
  AvroSourceConfig c;
  const std::size_t before = errors.size();
  node.required("listen", c.listen, errors);
  node.optional_enum("compression", c.deflate, errors, {{"none", false}, {"deflate", true}});
  node.optional_enum("layering", c.zlib_outside_tls, errors,
                     {{"tls_outside", false}, {"zlib_outside", true}});
  node.optional("max_connections", c.max_connections, errors, InRange<std::uint64_t>{1, 100000});
  node.optional("idle_timeout", c.idle_timeout, errors,
                InRange<std::chrono::nanoseconds>{std::chrono::seconds(1), std::chrono::hours(24)});
  node.optional("allow", c.allow, errors);
  for (std::size_t i = 0; i < c.allow.size(); ++i) {  // every bad entry, each at its position
    if (auto f = net::AddressFilter::make({c.allow[i]}); !f)
      node.error_at_element("allow", i, errors, f.error().message());
  }
  ByteSize frame{c.frame.max_frame_bytes}, buffer{c.frame.max_buffer_bytes};
  node.optional("max_frame_bytes", frame, errors, InRange<ByteSize>{{64}, {1ULL << 30}});
  node.optional("max_buffer_bytes", buffer, errors, InRange<ByteSize>{{64}, {1ULL << 30}});
  c.frame.max_frame_bytes = static_cast<std::uint32_t>(frame.bytes);
  c.frame.max_buffer_bytes = static_cast<std::uint32_t>(buffer.bytes);
  node.optional("max_buffered_bytes", c.max_buffered_bytes, errors,
                InRange<ByteSize>{{1024}, {1ULL << 40}});
  node.optional("max_buffers_per_frame", c.frame.max_buffers, errors,
                InRange<std::uint64_t>{1, 1'000'000});
  node.optional("max_batch_events", c.call.max_events, errors,
                InRange<std::uint64_t>{1, 10'000'000});
  node.optional("max_headers", c.call.max_headers, errors, InRange<std::uint64_t>{0, 100'000});
  tls::TlsConfig::parse(node, errors, c.tls, /*server=*/true);
  parse::PipelineConfig::parse(node, errors, c.pipeline, /*lines=*/false);
  node.reject_unknown_keys(errors);
  if (errors.size() != before) return std::nullopt;
  return c;
}

Result<std::unique_ptr<AvroSource>> AvroSource::create(const AvroSourceConfig& config,
                                                       SourceContext& ctx) {
  auto pipeline = parse::EventPipeline::make(config.pipeline, ctx);
  if (!pipeline) return pipeline.error();
  auto allow = net::AddressFilter::make(config.allow);
  if (!allow) return allow.error();
  return std::make_unique<AvroSource>(config, ctx, std::move(*pipeline), std::move(*allow));
}

AvroSource::AvroSource(const AvroSourceConfig& config, SourceContext& ctx,
                       std::unique_ptr<parse::EventPipeline> pipeline, net::AddressFilter allow)
    : config_(config),
      ctx_(ctx),
      output_(ctx.output),
      putter_(ctx.output),
      pipeline_(pipeline && !pipeline->trivial() ? std::move(pipeline) : nullptr),
      allow_(std::move(allow)),
      id_base_(run_id_base(ctx.name)),
      read_buf_(kReadBuffer),
      idle_timer_(ctx.loop),
      stop_waiter_(ctx.loop),
      metrics_(ctx),
      connections_(
          ctx.metrics.gauge("sluice_avro_connections", "Open client connections.", ctx.labels())),
      refused_(ctx.metrics.counter("sluice_avro_connections_refused_total",
                                   "Connections refused: not in `allow`, or over max_connections.",
                                   ctx.labels())),
      requests_ok_(ctx.metrics.counter("sluice_avro_requests_total", "Calls answered, by status.",
                                       with_label(ctx.labels(), "status", "ok"))),
      requests_failed_(ctx.metrics.counter("sluice_avro_requests_total",
                                           "Calls answered, by status.",
                                           with_label(ctx.labels(), "status", "failed"))),
      call_errors_(ctx.metrics.counter("sluice_avro_requests_total", "Calls answered, by status.",
                                       with_label(ctx.labels(), "status", "error"))),
      frame_errors_(ctx.metrics.counter(
          "sluice_avro_frame_errors_total",
          "Connections closed for a frame over the limits or a broken stream.", ctx.labels())),
      handshake_refused_(ctx.metrics.counter(
          "sluice_avro_handshakes_refused_total",
          "Handshakes answered NONE (unknown client protocol without its text, or incompatible).",
          ctx.labels())),
      tls_errors_(tls::handshake_errors(ctx.metrics, ctx.labels())) {
  putter_.set_on_progress([this] {
    if (stopping_) stop_waiter_.check();
  });
}

AvroSource::~AvroSource() {
  if (listener_ != nullptr) {
    listener_->data = nullptr;
    close_and_delete(listener_);
  }
  for (auto& [id, c] : conns_) {
    c->tcp->data = nullptr;
    close_and_delete(c->tcp);
  }
}

std::uint64_t AvroSource::next_id(void* self, std::uint64_t) {
  auto* s = static_cast<AvroSource*>(self);
  return event_id(s->id_base_, s->id_seq_++);
}

Status AvroSource::start() {
  if (config_.tls.enabled) {
    auto ctx = tls::TlsContext::make(config_.tls, /*server=*/true);
    if (!ctx) return ctx.error();
    tls_ = std::move(*ctx);
  }
  auto l = http::tcp_listen(
      ctx_.loop, config_.listen, this,
      [](uv_stream_t* s, int status) {
        if (status == 0 && s->data != nullptr) static_cast<AvroSource*>(s->data)->on_connection();
      },
      bound_);
  if (!l) return l.error();
  listener_ = *l;
  const auto tick = std::max<Duration>(config_.idle_timeout / 4, std::chrono::seconds(1));
  idle_timer_.start(
      tick, [this] { sweep_idle(); }, tick);
  return {};
}

void AvroSource::on_connection() {
  auto* tcp = new uv_tcp_t{};
  uv_tcp_init(ctx_.loop.uv(), tcp);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_), reinterpret_cast<uv_stream_t*>(tcp)) !=
      0) {
    close_and_delete(tcp);
    return;
  }
  sockaddr_storage peer{};
  int len = sizeof peer;
  uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&peer), &len);
  const std::string name = http::peer_name(peer);
  const char* refuse = nullptr;
  if (!allow_.allows(peer)) refuse = "not in allow";
  if (conns_.size() >= config_.max_connections) refuse = "max_connections reached";
  if (stopping_) refuse = "shutting down";
  if (refuse != nullptr) {
    refused_.inc();
    SLUICE_WARN_LIMITED(log_limit_, "avro {}: refused a connection from {}: {}", ctx_.name, name,
                        refuse);
    close_and_delete(tcp);
    return;
  }
  uv_tcp_nodelay(tcp, 1);
  uv_tcp_keepalive(tcp, 1, 60);
  auto c = std::make_unique<Conn>(config_.frame);
  c->self = this;
  c->id = ++next_conn_;
  c->tcp = tcp;
  c->peer = name;
  c->last_activity = std::chrono::steady_clock::now();
  if (config_.deflate) {
    c->inflate = std::make_unique<codec::Inflater>(config_.frame.max_frame_bytes);
    c->deflate = std::make_unique<codec::Deflater>(6);
  }
  if (tls_) c->tls = std::make_unique<tls::TlsSession>(tls_);
  tcp->data = c.get();
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(tcp),
      [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
        auto* conn = static_cast<Conn*>(h->data);
        b->base = conn->self->read_buf_.data();
        b->len = conn->self->read_buf_.size();
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
        if (s->data == nullptr) return;
        auto* conn = static_cast<Conn*>(s->data);
        conn->self->on_read(*conn, n, b);
      });
  conns_.emplace(c->id, std::move(c));
  connections_.set(static_cast<double>(conns_.size()));
}

void AvroSource::on_read(Conn& c, ssize_t n, const uv_buf_t* buf) {
  if (n < 0) {
    close_conn(c, n == UV_EOF ? nullptr : "read error");
    return;
  }
  if (n == 0) return;
  c.last_activity = std::chrono::steady_clock::now();
  std::string_view data(buf->base, static_cast<std::size_t>(n));
  const bool zlib_outside = c.inflate && c.tls && config_.zlib_outside_tls;
  if (zlib_outside) {
    c.inflated.clear();
    if (Status st = c.inflate->write(data, c.inflated); !st.ok()) {
      frame_errors_.inc();
      SLUICE_WARN_LIMITED(log_limit_, "avro {}: closing {}: {}", ctx_.name, c.peer, st.message());
      close_conn(c, "bad compressed stream");
      return;
    }
    data = c.inflated;
  }
  if (c.tls) {
    // Flume <= 1.9: TLS outermost, then deflate, then the frames (zlib_outside: the reverse).
    std::string send;
    c.decrypted.clear();
    const Status st = c.tls->read(data, c.decrypted, send);
    if (!send.empty()) send_wire(c, std::move(send));
    if (!st.ok()) {
      tls_errors_.inc();
      SLUICE_WARN_LIMITED(log_limit_, "avro {}: closing {}: {}", ctx_.name, c.peer, st.message());
      close_conn(c, "TLS error");
      return;
    }
    data = c.decrypted;
    if (data.empty()) return;
  }
  if (c.inflate && !zlib_outside) {
    c.inflated.clear();
    if (Status st = c.inflate->write(data, c.inflated); !st.ok()) {
      frame_errors_.inc();
      SLUICE_WARN_LIMITED(log_limit_, "avro {}: closing {}: {}", ctx_.name, c.peer, st.message());
      close_conn(c, "bad compressed stream");
      return;
    }
    data = c.inflated;
  }
  now_ns_ = wall_clock_ns();
  const std::size_t before = c.decoder.buffered();
  const Status st = c.decoder.feed(data, [&](std::int32_t serial, std::string_view payload) {
    if (!c.closing) on_frame(c, serial, payload);
  });
  buffered_ = buffered_ - before + c.decoder.buffered();
  if (!st.ok()) {
    frame_errors_.inc();
    SLUICE_WARN_LIMITED(log_limit_, "avro {}: closing {}: {}", ctx_.name, c.peer, st.message());
    close_conn(c, "bad frame");
    return;
  }
  if (buffered_ > config_.max_buffered_bytes.bytes) {
    frame_errors_.inc();
    SLUICE_WARN_LIMITED(log_limit_,
                        "avro {}: closing {}: unfinished frames of all clients exceed "
                        "max_buffered_bytes ({} bytes)",
                        ctx_.name, c.peer, config_.max_buffered_bytes.bytes);
    close_conn(c, "max_buffered_bytes");
    return;
  }
  if (c.closing) close_conn(c, c.close_reason);
}

bool AvroSource::compatible(std::string_view text) {
  // The writer's protocol must encode what we decode: appendBatch(array<AvroFlumeEvent>) and
  // append(AvroFlumeEvent), an event being {headers: map<string>, body: bytes}, Status responses.
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(text.data(), text.size()).get(doc)) return false;
  simdjson::dom::array types;
  if (doc["types"].get_array().get(types)) return false;
  bool event_ok = false, status_ok = false;
  for (auto t : types) {
    std::string_view name, type;
    if (t["name"].get_string().get(name) || t["type"].get_string().get(type)) continue;
    if (name == "Status" && type == "enum") {
      simdjson::dom::array symbols;
      if (!t["symbols"].get_array().get(symbols) && symbols.size() >= 2) {
        std::string_view a, b;
        status_ok = !symbols.at(0).get_string().get(a) && !symbols.at(1).get_string().get(b) &&
                    a == "OK" && b == "FAILED";
      }
    }
    if (name == "AvroFlumeEvent" && type == "record") {
      simdjson::dom::array fields;
      if (t["fields"].get_array().get(fields) || fields.size() != 2) continue;
      std::string_view f0, f1, body_type, map_type, values;
      event_ok = !fields.at(0)["name"].get_string().get(f0) && f0 == "headers" &&
                 !fields.at(0)["type"]["type"].get_string().get(map_type) && map_type == "map" &&
                 !fields.at(0)["type"]["values"].get_string().get(values) && values == "string" &&
                 !fields.at(1)["name"].get_string().get(f1) && f1 == "body" &&
                 !fields.at(1)["type"].get_string().get(body_type) && body_type == "bytes";
    }
  }
  std::string_view items, append_type;
  const bool batch_ok =
      !doc["messages"]["appendBatch"]["request"].at(0)["type"]["items"].get_string().get(items) &&
      items == "AvroFlumeEvent";
  const bool append_ok =
      !doc["messages"]["append"]["request"].at(0)["type"].get_string().get(append_type) &&
      append_type == "AvroFlumeEvent";
  return event_ok && status_ok && batch_ok && append_ok;
}

bool AvroSource::handshake(Conn& c, avro::Reader& r, std::string& prefix) {
  avro::HandshakeRequest h;
  if (!avro::read_handshake_request(r, h)) {
    frame_errors_.inc();
    SLUICE_WARN_LIMITED(log_limit_, "avro {}: closing {}: a malformed handshake ({})", ctx_.name,
                        c.peer, r.error() != nullptr ? r.error() : "?");
    c.closing = true;
    c.close_reason = "malformed handshake";
    return false;
  }
  bool known = h.client_hash == avro::kFlumeHash || h.client_hash == avro::kFlumeHeadHash ||
               accepted_hashes_.count(h.client_hash) != 0;
  if (!known && h.client_protocol) {
    if (compatible(*h.client_protocol)) {
      accepted_hashes_.insert(h.client_hash);
      known = true;
    } else {
      SLUICE_WARN_LIMITED(log_limit_,
                          "avro {}: {} speaks a protocol without Flume's append/appendBatch; "
                          "refusing it",
                          ctx_.name, c.peer);
    }
  }
  avro::HandshakeResponse resp;
  if (h.server_hash == avro::kFlumeHash) {
    resp.match = known ? avro::Match::both : avro::Match::none;
  } else {
    resp.match = known ? avro::Match::client : avro::Match::none;
  }
  if (resp.match != avro::Match::both) {
    resp.server_protocol = avro::kFlumeProtocol;
    resp.server_hash = avro::kFlumeHash;
  }
  avro::Writer w(prefix);
  avro::write_handshake_response(w, resp);
  if (resp.match == avro::Match::none) {
    handshake_refused_.inc();
    return false;
  }
  c.connected = true;
  return true;
}

void AvroSource::on_frame(Conn& c, std::int32_t serial, std::string_view payload) {
  avro::Reader r(payload);
  std::string prefix;
  if (!c.connected && !handshake(c, r, prefix)) {
    if (!c.closing) reply(c.id, serial, prefix, std::nullopt);  // NONE: the handshake alone
    return;
  }
  decoded_.clear();
  avro::Call call;
  const Status st =
      avro::read_call(r, config_.call, now_ns_, &AvroSource::next_id, this, decoded_, call);
  if (!st.ok()) {
    call_errors_.inc();
    SLUICE_WARN_LIMITED(log_limit_, "avro {}: bad request from {}: {}", ctx_.name, c.peer,
                        st.message());
    reply(c.id, serial, prefix, std::nullopt, st.message());
    return;
  }
  if (call.message.empty()) {
    reply(c.id, serial, prefix, std::nullopt);  // a ping
    return;
  }
  put_request(c, serial, std::move(prefix));
}

void AvroSource::put_request(Conn& c, std::int32_t serial, std::string prefix) {
  Batch* batch = &decoded_;
  if (pipeline_) {
    parsed_.clear();
    pipeline_->process_batch(decoded_, parsed_, c.peer);
    batch = &parsed_;
  }
  if (batch->empty()) {
    requests_ok_.inc();
    reply(c.id, serial, prefix, avro::CallStatus::ok);
    return;
  }
  if (stopping_ || !putter_.accepting()) {
    requests_failed_.inc();
    reply(c.id, serial, prefix, avro::CallStatus::failed);
    return;
  }
  metrics_.events.inc(batch->size());
  metrics_.bytes.inc(batch->bytes());
  putter_.submit(*batch, [this, conn = c.id, serial, prefix = std::move(prefix)](bool safe) {
    (safe ? requests_ok_ : requests_failed_).inc();
    reply(conn, serial, prefix, safe ? avro::CallStatus::ok : avro::CallStatus::failed);
  });
}

void AvroSource::reply(std::uint64_t conn, std::int32_t serial, std::string_view prefix,
                       std::optional<avro::CallStatus> status, std::string_view error) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return;  // the client left; its events are in the channel anyway
  Conn& c = *it->second;
  std::string payload(prefix);
  avro::Writer w(payload);
  if (status) {
    avro::write_response(w, *status);
  } else if (!error.empty()) {
    avro::write_error_response(w, error);
  }
  std::string frame;
  avro::encode_frame(serial, payload, frame);
  if (c.deflate && !(c.tls && config_.zlib_outside_tls)) {
    std::string compressed;
    c.deflate->write(frame, compressed);
    frame.swap(compressed);
  }
  if (c.tls) {
    std::string cipher;
    if (!c.tls->write(frame, cipher).ok()) return;
    frame.swap(cipher);
  }
  send_wire(c, std::move(frame));
}

void AvroSource::send_wire(Conn& c, std::string data) {
  if (c.deflate && c.tls && config_.zlib_outside_tls) {
    std::string compressed;
    c.deflate->write(data, compressed);
    data.swap(compressed);
  }
  write_raw(c, std::move(data));
}

void AvroSource::write_raw(Conn& c, std::string data) {
  write_owned(reinterpret_cast<uv_stream_t*>(c.tcp), std::move(data));
}

void AvroSource::close_conn(Conn& c, const char* why) {
  if (why != nullptr) spdlog::debug("avro {}: closing {}: {}", ctx_.name, c.peer, why);
  buffered_ -= c.decoder.buffered();
  c.tcp->data = nullptr;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(c.tcp));
  close_and_delete(c.tcp);
  conns_.erase(c.id);  // `c` is gone
  connections_.set(static_cast<double>(conns_.size()));
  if (stopping_) stop_waiter_.check();
}

void AvroSource::sweep_idle() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<Conn*> idle;
  for (auto& [id, c] : conns_) {
    if (now - c->last_activity < config_.idle_timeout) continue;
    idle.push_back(c.get());  // a request still waiting for its answer is answered to no one
  }
  for (Conn* c : idle) close_conn(*c, "idle");
}

void AvroSource::stop(StopCallback on_stopped) {
  stopping_ = true;
  if (listener_ != nullptr) {
    listener_->data = nullptr;
    close_and_delete(listener_);
    listener_ = nullptr;
  }
  idle_timer_.stop();
  // Requests already received finish (answered at on_safe); then every connection closes.
  stop_waiter_.wait(
      [this] {
        if (!putter_.idle()) return false;
        std::vector<Conn*> all;
        for (auto& [id, c] : conns_) all.push_back(c.get());
        stopping_ = false;  // close_conn must not re-enter the waiter
        for (Conn* c : all) close_conn(*c, "stopping");
        stopping_ = true;
        return true;
      },
      std::move(on_stopped));
}

}  // namespace sluice::sources

#include "sources/avro/avro_source.h"

#include <malloc.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include "lib/core/clock.h"
#include "lib/ingest/line_source.h"

namespace sluice::sources {

namespace {

// A client may pipeline calls; past this many unanswered ones its connection is not read until
// answers go out (Flume's clients keep one call in flight, sluice's avro sink max_in_flight).
constexpr std::uint32_t kMaxPendingCalls = 1024;

std::chrono::milliseconds to_ms(std::chrono::nanoseconds d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d);
}

// Flume 1.10+'s layering with TLS: zlib outermost, on the raw socket bytes.
class ZlibOutsideTls final : public net::WireCodec {
 public:
  ZlibOutsideTls(std::size_t max_out, Counter& errors) : inflate_(max_out), errors_(errors) {}
  Status decode(std::string_view wire, std::string& out) override {
    Status st = inflate_.write(wire, out);
    if (!st.ok()) errors_.inc();
    return st;
  }
  void encode(std::string_view data, std::string& out) override { deflate_.write(data, out); }

 private:
  codec::Inflater inflate_;
  codec::Deflater deflate_{6};
  Counter& errors_;
};

}  // namespace

struct AvroSource::Conn {
  net::Connection* net = nullptr;
  std::uint64_t id = 0;
  avro::FrameDecoder decoder;
  bool connected = false;
  bool malformed = false;  // a malformed handshake: closed after this read
  std::uint32_t pending_calls = 0;
  // A large call of this connection is on the threadpool: the calls after it wait here (at most
  // what one read held, since the connection is not read meanwhile), so that the events reach the
  // channel in the order the client sent them.
  bool decoding = false;
  std::deque<std::pair<std::int32_t, avro::FrameBuffer>> held;
  // Deflate inside TLS (Flume <= 1.9) or without TLS: on the plaintext frames.
  std::unique_ptr<codec::Inflater> inflate;
  std::unique_ptr<codec::Deflater> deflate;
  std::string inflated;

  explicit Conn(const avro::FrameLimits& limits) : decoder(limits) {}
};

// A call decoded on the uv threadpool: it owns everything the worker touches, so that neither
// the connection closing nor the source going away frees memory under it.
struct AvroSource::DecodeJob {
  uv_work_t work{};
  std::weak_ptr<int> alive;
  AvroSource* source = nullptr;
  std::uint64_t conn = 0;
  std::int32_t serial = 0;
  std::string prefix;       // the handshake's answer, if the call's frame began with one
  avro::FrameBuffer frame;  // taken from the frame decoder, not copied
  std::size_t call_at = 0;  // where the call part begins (after the handshake)
  avro::CallLimits limits{};
  std::int64_t now = 0;
  std::uint64_t id_base = 0, id_seq = 0;
  Status status;
  bool ping = false;
  Batch events;
  // The source's format pipeline, run here too (a copy from the pool: one thread at a time uses
  // one); null without a pipeline. `parsed` holds its output until it is swapped into `events`.
  std::unique_ptr<parse::EventPipeline> pipeline;
  std::string peer;  // names the call in the pipeline's log lines
  Batch parsed;
  bool through_pipeline = false;

  static std::uint64_t next_id(void* self, std::uint64_t) {
    auto* j = static_cast<DecodeJob*>(self);
    return event_id(j->id_base, j->id_seq++);
  }
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
  node.optional("max_connections_per_address", c.max_connections_per_address, errors,
                InRange<std::uint64_t>{1, 100000});
  node.optional(
      "frame_timeout", c.frame_timeout, errors,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(100), std::chrono::hours(1)});
  node.optional(
      "handshake_timeout", c.handshake_timeout, errors,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(100), std::chrono::minutes(10)});
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

net::ServerOptions AvroSource::server_options(const AvroSourceConfig& config,
                                              const std::string& name) {
  net::ServerOptions o;
  o.max_connections = config.max_connections;
  o.max_connections_per_address = config.max_connections_per_address;
  o.idle_timeout = to_ms(config.idle_timeout);
  o.message_timeout = to_ms(config.frame_timeout);
  o.handshake_timeout = to_ms(config.handshake_timeout);
  o.max_buffered_bytes = config.max_buffered_bytes.bytes;
  o.message_timeout_label = "frame_timeout";
  o.log_name = "avro " + name;
  o.metric_prefix = "sluice_avro";
  return o;
}

AvroSource::AvroSource(const AvroSourceConfig& config, SourceContext& ctx,
                       std::unique_ptr<parse::EventPipeline> pipeline, net::AddressFilter allow)
    : config_(config),
      ctx_(ctx),
      putter_(ctx.loop, ctx.output),
      pipeline_(pipeline && !pipeline->trivial() ? std::move(pipeline) : nullptr),
      pipelines_(config.pipeline, ctx, kMaxDecodes),
      id_base_(run_id_base(ctx.name)),
      stop_waiter_(ctx.loop),
      metrics_(ctx),
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
      server_(ctx.loop, server_options(config, ctx.name), *this, &ctx.metrics, ctx.labels()) {
  server_.set_filter(std::move(allow));
  putter_.set_on_progress([this] {
    if (stopping_) stop_waiter_.check();
  });
}

AvroSource::~AvroSource() = default;

std::uint64_t AvroSource::next_id(void* self, std::uint64_t) {
  auto* s = static_cast<AvroSource*>(self);
  return event_id(s->id_base_, s->id_seq_++);
}

Status AvroSource::start() {
  if (config_.tls.enabled) {
    auto ctx = tls::TlsContext::make(config_.tls, /*server=*/true);
    if (!ctx) return ctx.error();
    tls_ = std::move(*ctx);
    server_.set_tls(tls_);
  }
  return server_.listen(config_.listen);
}

void AvroSource::on_open(net::Connection& nc) {
  auto c = std::make_unique<Conn>(config_.frame);
  c->net = &nc;
  c->id = nc.id();
  if (config_.deflate && tls_ && config_.zlib_outside_tls) {
    nc.set_wire_codec(
        std::make_unique<ZlibOutsideTls>(config_.frame.max_frame_bytes, frame_errors_));
  } else if (config_.deflate) {
    c->inflate = std::make_unique<codec::Inflater>(config_.frame.max_frame_bytes);
    c->deflate = std::make_unique<codec::Deflater>(6);
  }
  nc.user = c.get();
  conns_.emplace(c->id, std::move(c));
}

void AvroSource::on_close(net::Connection& nc, net::CloseReason) {
  auto it = conns_.find(nc.id());
  if (it == conns_.end()) return;
  server_.charge_input(-static_cast<std::int64_t>(it->second->decoder.buffered()));
  conns_.erase(it);  // answers still owed go to no one; their events are in the channel anyway
  if (stopping_) stop_waiter_.check();
}

void AvroSource::on_data(net::Connection& nc, std::string_view data) {
  Conn& c = *static_cast<Conn*>(nc.user);
  if (c.inflate) {
    c.inflated.clear();
    if (Status st = c.inflate->write(data, c.inflated); !st.ok()) {
      frame_errors_.inc();
      SLUICE_WARN_LIMITED(log_limit_, "avro {}: closing {}: {}", ctx_.name, nc.peer(),
                          st.message());
      nc.close(net::CloseReason::bad_input);
      return;
    }
    data = c.inflated;
  }
  now_ns_ = wall_clock_ns();
  // Once the channel refused a call, the other calls of this read are answered FAILED without
  // trying: a flood of tiny calls costs one refused put per read, not one per call.
  refusing_ = false;
  const std::size_t before = c.decoder.buffered();
  std::size_t frames = 0;
  // Nothing in here closes `c` (send() never does): its decoder outlives the feed.
  const Status st = c.decoder.feed(data, [&](std::int32_t serial, std::string_view) {
    ++frames;
    if (!c.malformed && !nc.closing()) on_frame(c, serial, c.decoder.frame_buffer());
  });
  server_.charge_input(static_cast<std::int64_t>(c.decoder.buffered()) -
                       static_cast<std::int64_t>(before));
  if (!st.ok()) {
    frame_errors_.inc();
    SLUICE_WARN_LIMITED(log_limit_, "avro {}: closing {}: {}", ctx_.name, nc.peer(), st.message());
    nc.close(net::CloseReason::bad_input);
    return;
  }
  if (c.malformed) {
    nc.close(net::CloseReason::bad_input);
    return;
  }
  if (c.decoder.buffered() > 0 && server_.over_budget()) {
    frame_errors_.inc();
    SLUICE_WARN_LIMITED(log_limit_,
                        "avro {}: closing {}: unfinished frames and unsent answers of all "
                        "clients exceed max_buffered_bytes ({} bytes)",
                        ctx_.name, nc.peer(), config_.max_buffered_bytes.bytes);
    nc.close(net::CloseReason::over_budget);
    return;
  }
  if (nc.closing()) return;
  // frame_timeout runs from the first byte of each frame to its last.
  if (c.decoder.in_frame()) {
    if (frames > 0 || !nc.in_message()) nc.begin_message();
  } else {
    nc.end_message();
  }
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
                        c.net->peer(), r.error() != nullptr ? r.error() : "?");
    c.malformed = true;
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
                          ctx_.name, c.net->peer());
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

void AvroSource::on_frame(Conn& c, std::int32_t serial, avro::FrameBuffer& frame) {
  if (c.decoding) {
    c.held.emplace_back(serial, std::move(frame));
    return;
  }
  const std::string_view payload = frame.view();
  avro::Reader r(payload);
  std::string prefix;
  if (!c.connected && !handshake(c, r, prefix)) {
    if (!c.malformed) reply(c, serial, prefix, std::nullopt);  // NONE: the handshake alone
    return;
  }
  if (r.left() > kInlineDecodeBytes) {
    // Decoding a large appendBatch on the loop held every connection, timers and /healthz for
    // its time (75-108 ms for 60,000 events of 1,000 bytes).
    start_decode(c, serial, std::move(prefix), std::move(frame), payload.size() - r.left());
    return;
  }
  decoded_.clear();
  avro::Call call;
  const Status st =
      avro::read_call(r, config_.call, now_ns_, &AvroSource::next_id, this, decoded_, call);
  if (!st.ok()) {
    call_errors_.inc();
    SLUICE_WARN_LIMITED(log_limit_, "avro {}: bad request from {}: {}", ctx_.name, c.net->peer(),
                        st.message());
    reply(c, serial, prefix, std::nullopt, st.message());
    return;
  }
  if (call.message.empty()) {
    reply(c, serial, prefix, std::nullopt);  // a ping
    return;
  }
  put_request(c, serial, std::move(prefix), decoded_);
}

void AvroSource::start_decode(Conn& c, std::int32_t serial, std::string prefix,
                              avro::FrameBuffer frame, std::size_t call_at) {
  auto job = std::make_unique<DecodeJob>();
  job->alive = alive_;
  job->source = this;
  job->conn = c.id;
  job->serial = serial;
  job->prefix = std::move(prefix);
  job->frame = std::move(frame);
  job->call_at = call_at;
  job->limits = config_.call;
  job->now = now_ns_;
  job->peer = c.net->peer();
  // The worker numbers the events; reserve the most a call may have so ids stay unique.
  job->id_base = id_base_;
  job->id_seq = id_seq_;
  id_seq_ += config_.call.max_events;
  // The frame counts against max_buffered_bytes until it is decoded, as it did while it arrived.
  server_.charge_input(static_cast<std::int64_t>(job->frame.size()));
  c.decoding = true;
  update_hold(c);
  queued_.push_back(std::move(job));
  run_decodes();
}

void AvroSource::run_decodes() {
  while (decoding_ < kMaxDecodes && !queued_.empty()) {
    std::unique_ptr<DecodeJob> next = std::move(queued_.front());
    queued_.pop_front();
    if (conns_.find(next->conn) == conns_.end()) {
      // The client left: it had no answer and sends the call again elsewhere; nothing is put.
      server_.charge_input(-static_cast<std::int64_t>(next->frame.size()));
      continue;
    }
    DecodeJob* job = next.release();
    job->work.data = job;
    if (pipeline_) job->pipeline = pipelines_.take();
    ++decoding_;
    uv_queue_work(
        ctx_.loop.uv(), &job->work,
        [](uv_work_t* w) {
          auto* j = static_cast<DecodeJob*>(w->data);
          avro::Reader r(j->frame.view().substr(j->call_at));
          avro::Call call;
          j->status =
              avro::read_call(r, j->limits, j->now, &DecodeJob::next_id, j, j->events, call);
          j->ping = call.message.empty();
          if (!j->status.ok() || j->ping || !j->pipeline) return;
          // Parsing a large call's events on the loop held it as long as decoding it did.
          j->pipeline->process_batch(j->events, j->parsed, j->peer);
          j->events.swap(j->parsed);
          j->through_pipeline = true;
        },
        [](uv_work_t* w, int) {
          std::unique_ptr<DecodeJob> j(static_cast<DecodeJob*>(w->data));
          if (j->alive.expired()) return;  // the source is gone: drop the job
          j->source->on_decoded(std::move(j));
        });
  }
}

void AvroSource::on_decoded(std::unique_ptr<DecodeJob> job) {
  --decoding_;
  server_.charge_input(-static_cast<std::int64_t>(job->frame.size()));
  auto it = conns_.find(job->conn);
  if (it != conns_.end()) {  // else the client left before its answer: nothing is put
    Conn& c = *it->second;
    now_ns_ = wall_clock_ns();
    refusing_ = false;
    if (!job->status.ok()) {
      call_errors_.inc();
      SLUICE_WARN_LIMITED(log_limit_, "avro {}: bad request from {}: {}", ctx_.name, c.net->peer(),
                          job->status.message());
      reply(c, job->serial, job->prefix, std::nullopt, job->status.message());
    } else if (job->ping) {
      reply(c, job->serial, job->prefix, std::nullopt);
    } else {
      put_request(c, job->serial, std::move(job->prefix), job->events, job->through_pipeline);
    }
    c.decoding = false;
    run_held(c);  // may close the connection: `c` is not used after it
  }
  free_off_loop(std::move(job));
}

// The calls that waited behind a decoded one, in order, until one of them goes to the threadpool.
void AvroSource::run_held(Conn& c) {
  while (!c.decoding && !c.held.empty() && !c.malformed && !c.net->closing()) {
    auto [serial, frame] = std::move(c.held.front());
    c.held.pop_front();
    on_frame(c, serial, frame);
  }
  if (c.net->closing()) return;
  if (c.malformed) {
    c.net->close(net::CloseReason::bad_input);
    return;
  }
  update_hold(c);
}

// Freeing what a large call grew (munmap of about twice its size) is slow too: on the threadpool.
// The worker then returns the freed heap pages to the system: the batch was allocated in the
// worker's own malloc arena, below glibc's (raised) mmap threshold, and 20 connections that had
// each sent one 20 MB call kept 259 MB of freed memory (21 MB with the pages returned).
void AvroSource::free_off_loop(std::unique_ptr<DecodeJob> job) {
  DecodeJob* j = job.release();
  j->work.data = j;
  ++decoding_;
  uv_queue_work(
      ctx_.loop.uv(), &j->work,
      [](uv_work_t* w) {
        auto* dj = static_cast<DecodeJob*>(w->data);
        dj->events.release();
        dj->parsed.release();
        dj->frame.release();
#if defined(__GLIBC__)
        malloc_trim(0);
#endif
      },
      [](uv_work_t* w, int) {
        std::unique_ptr<DecodeJob> dj(static_cast<DecodeJob*>(w->data));
        if (dj->alive.expired()) return;
        AvroSource& self = *dj->source;
        --self.decoding_;
        self.pipelines_.give(std::move(dj->pipeline));
        self.run_decodes();
        if (self.stopping_) self.stop_waiter_.check();
      });
}

void AvroSource::update_hold(Conn& c) {
  c.net->hold_reading(c.pending_calls >= kMaxPendingCalls || c.decoding || !c.held.empty());
}

void AvroSource::put_request(Conn& c, std::int32_t serial, std::string prefix, Batch& decoded,
                             bool through_pipeline) {
  Batch* batch = &decoded;
  if (pipeline_ && !through_pipeline) {
    parsed_.clear();
    pipeline_->process_batch(decoded, parsed_, c.net->peer());
    batch = &parsed_;
  }
  if (batch->empty()) {
    requests_ok_.inc();
    reply(c, serial, prefix, avro::CallStatus::ok);
    return;
  }
  if (stopping_ || refusing_ || !putter_.accepting()) {
    requests_failed_.inc();
    reply(c, serial, prefix, avro::CallStatus::failed);
    return;
  }
  metrics_.events.inc(batch->size());
  metrics_.bytes.inc(batch->bytes());
  // Not marked busy: idle_timeout still closes a client whose answers wait for a stalled
  // channel (Flume's clients gave up after their 20 s request-timeout anyway).
  ++c.pending_calls;
  if (c.pending_calls >= kMaxPendingCalls) update_hold(c);
  submitting_ = true;
  putter_.submit(*batch, [this, conn = c.id, serial, prefix = std::move(prefix)](bool safe) {
    answered(conn, serial, prefix, safe);
  });
  submitting_ = false;
}

void AvroSource::answered(std::uint64_t conn, std::int32_t serial, std::string_view prefix,
                          bool safe) {
  (safe ? requests_ok_ : requests_failed_).inc();
  if (!safe && submitting_) refusing_ = true;  // the channel is full: at once, inside submit()
  auto it = conns_.find(conn);
  if (it == conns_.end()) return;  // the client left; its events are in the channel anyway
  Conn& c = *it->second;
  --c.pending_calls;
  if (c.pending_calls + 1 == kMaxPendingCalls) update_hold(c);
  reply(c, serial, prefix, safe ? avro::CallStatus::ok : avro::CallStatus::failed);
}

void AvroSource::reply(Conn& c, std::int32_t serial, std::string_view prefix,
                       std::optional<avro::CallStatus> status, std::string_view error) {
  std::string payload(prefix);
  avro::Writer w(payload);
  if (status) {
    avro::write_response(w, *status);
  } else if (!error.empty()) {
    avro::write_error_response(w, error);
  }
  frame_.clear();
  avro::encode_frame(serial, payload, frame_);
  if (c.deflate) {
    compressed_.clear();
    c.deflate->write(frame_, compressed_);
    c.net->send(compressed_);
  } else {
    c.net->send(frame_);
  }
}

void AvroSource::stop(StopCallback on_stopped) {
  stopping_ = true;
  server_.stop_accepting();
  // Requests already received finish (answered at on_safe); then every connection closes,
  // sending its last answers first (bounded by the server's close_timeout).
  stop_waiter_.wait(
      [this] {
        if (!putter_.idle() || decoding_ > 0 || !queued_.empty()) return false;
        if (!closed_all_) {
          closed_all_ = true;
          stopping_ = false;  // on_close must not re-enter the waiter
          server_.close_all(net::CloseReason::stopping);
          stopping_ = true;
        }
        return server_.draining() == 0;
      },
      std::move(on_stopped));
}

}  // namespace sluice::sources

#include "sources/http/http_source.h"

#include <openssl/crypto.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "lib/core/clock.h"
#include "lib/core/log.h"
#include "lib/ingest/line_source.h"

namespace sluice::sources {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "Bearer TOKEN" (RFC 6750 2.1; the scheme is case-insensitive, RFC 9110 11.1), compared in
// constant time.
bool bearer_matches(std::string_view credentials, std::string_view token) {
  const auto sp = credentials.find(' ');
  if (sp == std::string_view::npos || lower(credentials.substr(0, sp)) != "bearer") return false;
  std::string_view got = credentials.substr(sp);
  while (!got.empty() && got.front() == ' ') got.remove_prefix(1);
  return got.size() == token.size() && CRYPTO_memcmp(got.data(), token.data(), got.size()) == 0;
}

// The media type of a Content-Type value, without parameters, lower-cased.
std::string media_type(std::string_view ct) {
  const auto semi = ct.find(';');
  if (semi != std::string_view::npos) ct = ct.substr(0, semi);
  while (!ct.empty() && ct.back() == ' ') ct.remove_suffix(1);
  while (!ct.empty() && ct.front() == ' ') ct.remove_prefix(1);
  return lower(ct);
}

}  // namespace

void BodyDecoder::shrink() {
  if (inflated.capacity() > kWarmBytes) std::string().swap(inflated);
  if (padded_bytes > kWarmBytes) padded = parse::PaddedBuffer();
  padded_bytes = 0;
  if (json.capacity() > kWarmBytes) json = simdjson::ondemand::parser();
  if (line_parser.capacity() > kWarmBytes) line_parser = simdjson::dom::parser();
  if (headers.capacity() > 1024) decltype(headers)().swap(headers);
}

std::optional<HttpSourceConfig> HttpSourceConfig::parse(const ConfigNode& node,
                                                        ConfigErrors& errors) {
  HttpSourceConfig c;
  const std::size_t before = errors.size();
  node.required("listen", c.listen, errors);
  node.optional("max_body_bytes", c.max_body_bytes, errors, InRange<ByteSize>{{1}, {1ULL << 30}});
  node.optional("max_events", c.max_events, errors, InRange<std::uint64_t>{1, 10'000'000});
  node.optional("max_connections", c.max_connections, errors, InRange<std::uint64_t>{1, 100000});
  node.optional("max_buffered_bytes", c.max_buffered_bytes, errors,
                InRange<ByteSize>{{64 * 1024}, {1ULL << 40}});
  node.optional("idle_timeout", c.idle_timeout, errors,
                InRange<std::chrono::nanoseconds>{std::chrono::seconds(1), std::chrono::hours(24)});
  node.optional(
      "request_timeout", c.request_timeout, errors,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(100), std::chrono::hours(1)});
  node.optional(
      "header_timeout", c.header_timeout, errors,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(100), std::chrono::hours(1)});
  node.optional(
      "ack_timeout", c.ack_timeout, errors,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(100), std::chrono::hours(1)});
  node.optional("auth_token", c.auth_token, errors);
  if (auto h = node.child("headers", errors)) {
    for (const auto& [k, v] : h->table()) {
      std::string to;
      if (h->required(k.str(), to, errors)) c.headers.emplace_back(lower(k.str()), to);
    }
  }
  tls::TlsConfig::parse(node, errors, c.tls, /*server=*/true);
  parse::PipelineConfig::parse(node, errors, c.pipeline, /*lines=*/false);
  node.reject_unknown_keys(errors);
  if (errors.size() != before) return std::nullopt;
  return c;
}

Result<std::unique_ptr<HttpSource>> HttpSource::create(const HttpSourceConfig& config,
                                                       SourceContext& ctx) {
  auto pipeline = parse::EventPipeline::make(config.pipeline, ctx);
  if (!pipeline) return pipeline.error();
  return std::make_unique<HttpSource>(config, ctx, std::move(*pipeline));
}

HttpSource::HttpSource(const HttpSourceConfig& config, SourceContext& ctx,
                       std::unique_ptr<parse::EventPipeline> pipeline)
    : config_(config),
      ctx_(ctx),
      putter_(ctx.loop, ctx.output),
      pipeline_(pipeline && !pipeline->trivial() ? std::move(pipeline) : nullptr),
      pipelines_(config.pipeline, ctx, kMaxDecodes),
      id_base_(run_id_base(ctx.name)),
      stop_waiter_(ctx.loop),
      metrics_(ctx),
      ack_timer_(ctx.loop) {
  ack_timeouts_ = &ctx.metrics.counter(
      "sluice_http_source_ack_timeouts_total",
      "Requests answered 503 because their events were not safe within ack_timeout.", ctx.labels());
  putter_.set_on_progress([this] {
    if (stopping_) stop_waiter_.check();
  });
}

Status HttpSource::start() {
  http::ServerLimits limits;
  limits.max_body_bytes = config_.max_body_bytes.bytes;
  limits.max_connections = config_.max_connections;
  limits.max_buffered_bytes = config_.max_buffered_bytes.bytes;
  limits.idle_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config_.idle_timeout);
  limits.request_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(config_.request_timeout);
  limits.header_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(config_.header_timeout);
  limits.evict_when_full = http::ServerLimits::Eviction::unfinished;
  server_ = std::make_unique<http::Server>(
      ctx_.loop, limits,
      [this](http::Request& req, http::Responder r) { handle(req, std::move(r)); }, &ctx_.metrics,
      ctx_.labels());
  // What the server refuses itself (malformed, slow, oversized) is counted and logged here too.
  server_->set_on_refused([this](int status, std::string_view peer, std::string_view why) {
    count(status);
    SLUICE_WARN_LIMITED(log_limit_, "http {}: {} for {}: {}", ctx_.name, status, log_excerpt(peer),
                        log_excerpt(why));
  });
  if (config_.tls.enabled) {
    auto ctx = tls::TlsContext::make(config_.tls, /*server=*/true);
    if (!ctx) return ctx.error();
    server_->set_tls(std::move(*ctx));
  }
  return server_->listen(config_.listen);
}

void HttpSource::warn_refused(std::string_view peer, http_method method, std::string_view path,
                              int status, std::string_view why) {
  SLUICE_WARN_LIMITED(log_limit_, "http {}: {} for {} {} {}: {}", ctx_.name, status,
                      log_excerpt(peer), http_method_str(method), log_excerpt(path),
                      log_excerpt(why));
}

void HttpSource::count(int status) {
  for (auto& [s, c] : by_status_) {
    if (s == status) return c->inc();
  }
  Counter& c =
      ctx_.metrics.counter("sluice_http_source_requests_total", "Requests answered, by status.",
                           with_label(ctx_.labels(), "status", std::to_string(status)));
  by_status_.emplace_back(status, &c);
  c.inc();
}

void HttpSource::refuse(http::Responder& responder, int status, std::string message,
                        std::vector<std::pair<std::string, std::string>> headers) {
  count(status);
  http::Response r;
  r.status = status;
  r.body = std::move(message) + "\n";
  r.headers = std::move(headers);
  responder.respond(std::move(r));
}

std::optional<std::pair<int, std::string>> decode_body(std::string_view content_type,
                                                       std::string_view content_encoding,
                                                       std::string_view body,
                                                       const BodyLimits& limits, std::int64_t now,
                                                       std::uint64_t id_base, std::uint64_t& id_seq,
                                                       BodyDecoder& decoder, Batch& out) {
  std::string& scratch = decoder.inflated;
  const std::string encoding = lower(content_encoding);
  if (encoding == "gzip" || encoding == "x-gzip" || encoding == "zstd") {
    scratch.clear();
    bool exceeded = false;
    Status st;
    if (encoding == "zstd") {
      st = decoder.zstd.decode(body, limits.max_body_bytes, scratch, exceeded);
    } else {
      codec::Inflater gzip(limits.max_body_bytes, codec::Inflater::Wrapper::gzip);
      st = gzip.write(body, scratch);
      exceeded = gzip.exceeded();
      if (st.ok() && !gzip.ended()) st = Status(Errc::invalid_data, "truncated gzip body");
    }
    if (!st.ok() && !exceeded) return std::pair{400, st.message()};
    if (exceeded) {
      return std::pair{413, "body larger than " + std::to_string(limits.max_body_bytes) +
                                " bytes once decompressed"};
    }
    body = scratch;
  } else if (!encoding.empty() && encoding != "identity") {
    return std::pair{415, "Content-Encoding '" + escape_for_log(encoding, 64) +
                              "' is not supported (gzip, zstd)"};
  }
  const std::string type = media_type(content_type);
  auto too_many = [&] {
    return std::pair{413,
                     "more than " + std::to_string(limits.max_events) + " events in one request"};
  };
  if (type == "application/json") {
    // Flume's JSON handler: [{"headers": {"k": "v"}, "body": "text"}, ...]
    simdjson::ondemand::document doc;
    simdjson::ondemand::array arr;
    auto bad = [](std::string_view why) {
      return std::pair{400, "malformed Flume JSON body (" + std::string(why) +
                                "): expected [{\"headers\": {...}, \"body\": \"...\"}, ...]"};
    };
    decoder.padded_bytes = std::max(decoder.padded_bytes, body.size());
    if (auto e = decoder.json.iterate(decoder.padded.load(body)).get(doc))
      return bad(simdjson::error_message(e));
    if (auto e = doc.get_array().get(arr)) return bad(simdjson::error_message(e));
    auto& headers = decoder.headers;
    for (auto element : arr) {
      simdjson::ondemand::object o;
      if (auto e = element.get_object().get(o)) return bad(simdjson::error_message(e));
      headers.clear();
      std::string_view text;
      for (auto field : o) {
        std::string_view key;
        if (auto e = field.unescaped_key().get(key)) return bad(simdjson::error_message(e));
        if (key == "headers") {
          simdjson::ondemand::object h;
          if (field.value().get_object().get(h)) return bad("headers is not an object");
          for (auto hf : h) {
            std::string_view k, v;
            if (hf.unescaped_key().get(k) || hf.value().get_string().get(v))
              return bad("header values must be strings");
            headers.emplace_back(k, v);
          }
        } else if (key == "body") {
          if (field.value().get_string().get(text)) return bad("body is not a string");
        }
      }
      if (out.size() >= limits.max_events) return too_many();
      out.add(text, now, event_id(id_base, id_seq++));
      for (const auto& [k, v] : headers) out.add_header(k, v);
    }
    const char* rest = nullptr;
    if (!doc.current_location().get(rest)) return bad("content after the array");
  } else if (type == "application/x-ndjson" || type == "application/ndjson" ||
             type == "application/jsonl" || type == "text/plain" || type.empty()) {
    const bool ndjson = type != "text/plain" && !type.empty();
    std::size_t line_no = 0;
    for (std::size_t at = 0; at < body.size();) {
      std::size_t nl = body.find('\n', at);
      if (nl == std::string_view::npos) nl = body.size();
      std::string_view line = body.substr(at, nl - at);
      at = nl + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty() && ndjson) continue;
      if (ndjson) {
        simdjson::dom::element el;
        decoder.padded_bytes = std::max(decoder.padded_bytes, line.size());
        const auto padded = decoder.padded.load(line);  // one reused buffer, not a copy per line
        if (auto e = decoder.line_parser.parse(padded.data(), padded.size(), false).get(el)) {
          return std::pair{400, "line " + std::to_string(line_no) + " is not JSON (" +
                                    simdjson::error_message(e) + ")"};
        }
      }
      if (out.size() >= limits.max_events) return too_many();
      out.add(line, now, event_id(id_base, id_seq++));
    }
  } else {
    return std::pair{415, "Content-Type '" + type +
                              "' is not supported (application/json: Flume's JSON events, "
                              "application/x-ndjson, text/plain)"};
  }
  return std::nullopt;
}

std::optional<std::pair<int, std::string>> HttpSource::decode(const http::Request& req) {
  events_.clear();
  const BodyLimits limits{config_.max_body_bytes.bytes, config_.max_events};
  if (auto err =
          decode_body(req.header("content-type"), req.header("content-encoding"), req.body.view(),
                      limits, wall_clock_ns(), id_base_, id_seq_, decoder_, events_)) {
    events_.clear();
    return err;
  }
  // Mapped request headers, the same for every event of the request.
  for (const auto& [from, to] : config_.headers) {
    const std::string_view v = req.header(from);
    if (!v.empty()) events_.set_common_header(to, v);
  }
  return std::nullopt;
}

// A body decoded on the uv threadpool: it owns everything the worker touches, so that neither
// the connection closing nor the source going away frees memory under it.
struct HttpSource::DecodeJob {
  uv_work_t work{};
  std::weak_ptr<int> alive;
  HttpSource* source = nullptr;
  ByteBuffer body;
  std::string content_type, content_encoding, path, peer;
  http_method method = HTTP_POST;
  std::vector<std::pair<std::string, std::string>> common;  // mapped request headers
  BodyLimits limits{};
  std::int64_t now = 0;
  std::uint64_t id_base = 0, id_seq = 0;
  std::optional<http::Responder> responder;
  std::optional<std::pair<int, std::string>> error;
  BodyDecoder decoder;
  Batch events;
  // The source's format pipeline, run here too (a copy of it: one thread at a time uses one);
  // null without a pipeline. `parsed` holds its output until it is swapped into `events`.
  std::unique_ptr<parse::EventPipeline> pipeline;
  Batch parsed;
  bool through_pipeline = false;
};

HttpSource::~HttpSource() = default;

void HttpSource::handle(http::Request& req, http::Responder responder) {
  handle_request(req, std::move(responder));
  // The events were copied into the channel (or refused): what a large body grew is freed here.
  decoder_.shrink();
  for (Batch* b : {&events_, &parsed_}) {
    if (b->capacity_bytes() > BodyDecoder::kWarmBytes) b->release();
  }
}

void HttpSource::handle_request(http::Request& req, http::Responder responder) {
  if (req.method != HTTP_POST && req.method != HTTP_PUT) {
    return refuse(responder, 405, "use POST", {{"Allow", "POST, PUT"}});
  }
  std::size_t authorizations = 0;
  std::string_view credentials;
  for (const auto& [name, value] : req.headers) {
    if (name == "authorization") {
      ++authorizations;
      credentials = value;
    }
  }
  if (authorizations > 1) {
    // Two sets of credentials are ambiguous (which one would a proxy have checked?).
    warn_refused(req.peer, req.method, req.path(), 400, "more than one Authorization header");
    return refuse(responder, 400, "more than one Authorization header");
  }
  if (!config_.auth_token.empty() && !bearer_matches(credentials, config_.auth_token)) {
    warn_refused(req.peer, req.method, req.path(), 401,
                 credentials.empty() ? "no bearer token" : "wrong bearer token");
    return refuse(responder, 401, "missing or wrong bearer token",
                  {{"WWW-Authenticate", "Bearer"}});
  }
  if (stopping_) return refuse(responder, 503, "shutting down", {{"Retry-After", "1"}});
  const std::string_view encoding = req.header("content-encoding");
  if (req.body.size() > kInlineDecodeBytes ||
      (!encoding.empty() && lower(encoding) != "identity")) {
    // Inflating (up to max_body_bytes, whatever the wire size) and framing a large body would
    // stall the loop (0.65 s for 128 MiB): /healthz and every other connection would wait.
    return start_decode(req, std::move(responder));
  }
  if (auto err = decode(req)) {
    warn_refused(req.peer, req.method, req.path(), err->first, err->second);
    return refuse(responder, err->first, std::move(err->second));
  }
  submit(events_, req.path(), std::move(responder));
}

void HttpSource::start_decode(http::Request& req, http::Responder responder) {
  std::unique_ptr<DecodeJob> job;
  if (idle_jobs_.empty()) {
    job = std::make_unique<DecodeJob>();
  } else {
    job = std::move(idle_jobs_.back());
    idle_jobs_.pop_back();
  }
  job->alive = alive_;
  job->source = this;
  job->body = std::move(req.body);  // the request is done with it; no copy
  job->content_type.assign(req.header("content-type"));
  job->content_encoding.assign(req.header("content-encoding"));
  job->path.assign(req.path());
  job->peer = req.peer;
  job->method = req.method;
  job->common.clear();
  for (const auto& [from, to] : config_.headers) {
    const std::string_view v = req.header(from);
    if (!v.empty()) job->common.emplace_back(to, v);
  }
  job->limits = BodyLimits{config_.max_body_bytes.bytes, config_.max_events};
  job->now = wall_clock_ns();
  // The worker numbers the events; reserve the most a request may have so ids stay unique.
  job->id_base = id_base_;
  job->id_seq = id_seq_;
  id_seq_ += config_.max_events;
  job->responder = std::move(responder);
  job->error.reset();
  job->events.clear();
  queued_.push_back(std::move(job));
  run_decodes();
}

// At most kMaxDecodes bodies at a time on the threadpool (it is shared with other work); the
// others wait in arrival order, their connections busy.
void HttpSource::run_decodes() {
  while (decoding_ < kMaxDecodes && !queued_.empty()) {
    DecodeJob* job = queued_.front().release();
    queued_.pop_front();
    job->work.data = job;
    if (pipeline_ && !job->pipeline) job->pipeline = pipelines_.take();
    job->through_pipeline = false;
    ++decoding_;
    uv_queue_work(
        ctx_.loop.uv(), &job->work,
        [](uv_work_t* w) {
          auto* j = static_cast<DecodeJob*>(w->data);
          std::uint64_t seq = j->id_seq;
          j->error = decode_body(j->content_type, j->content_encoding, j->body.view(), j->limits,
                                 j->now, j->id_base, seq, j->decoder, j->events);
          if (j->error) return;
          for (const auto& [k, v] : j->common) j->events.set_common_header(k, v);
          if (j->pipeline) {
            // Parsing a large body's events on the loop held it as long as decoding it did.
            j->parsed.clear();
            j->pipeline->process_batch(j->events, j->parsed, j->path);
            j->events.swap(j->parsed);
            j->through_pipeline = true;
          }
        },
        [](uv_work_t* w, int) {
          std::unique_ptr<DecodeJob> j(static_cast<DecodeJob*>(w->data));
          if (j->alive.expired()) return;  // the source is gone: drop the job
          j->source->on_decoded(std::move(j));
        });
  }
}

void HttpSource::on_decoded(std::unique_ptr<DecodeJob> job) {
  --decoding_;
  http::Responder responder = std::move(*job->responder);
  job->responder.reset();
  if (job->error) {
    job->events.clear();
    warn_refused(job->peer, job->method, job->path, job->error->first, job->error->second);
    refuse(responder, job->error->first, std::move(job->error->second));
  } else {
    submit(job->events, job->path, std::move(responder), job->through_pipeline);
  }
  if (parsed_.capacity_bytes() > BodyDecoder::kWarmBytes) parsed_.release();
  // Freeing what a large body grew (munmap of ~2x the inflated size) is slow too: do it on the
  // threadpool, then keep the job for the next body.
  ++decoding_;
  DecodeJob* j = job.release();
  j->work.data = j;
  uv_queue_work(
      ctx_.loop.uv(), &j->work,
      [](uv_work_t* w) {
        auto* dj = static_cast<DecodeJob*>(w->data);
        dj->decoder.shrink();
        if (dj->events.capacity_bytes() > BodyDecoder::kWarmBytes) dj->events.release();
        if (dj->parsed.capacity_bytes() > BodyDecoder::kWarmBytes) dj->parsed.release();
        if (dj->body.capacity() > BodyDecoder::kWarmBytes) dj->body.release();
      },
      [](uv_work_t* w, int) {
        std::unique_ptr<DecodeJob> dj(static_cast<DecodeJob*>(w->data));
        if (dj->alive.expired()) return;
        HttpSource& self = *dj->source;
        --self.decoding_;
        if (self.idle_jobs_.size() < kMaxDecodes) self.idle_jobs_.push_back(std::move(dj));
        self.run_decodes();
        if (self.stopping_) self.stop_waiter_.check();
      });
}

void HttpSource::submit(Batch& events, std::string_view path, http::Responder responder,
                        bool through_pipeline) {
  Batch* batch = &events;
  if (pipeline_ && !through_pipeline) {
    parsed_.clear();
    pipeline_->process_batch(events, parsed_, path);
    batch = &parsed_;
  }
  if (!putter_.accepting()) {
    return refuse(responder, 503, "the channel is full; retry later", {{"Retry-After", "1"}});
  }
  metrics_.events.inc(batch->size());
  metrics_.bytes.inc(batch->bytes());
  const std::uint64_t id = ++next_waiting_;
  waiting_.push_back({id, std::chrono::steady_clock::now() + config_.ack_timeout, responder});
  if (!ack_timer_.active()) {
    ack_timer_.start(config_.ack_timeout, [this] { on_ack_timer(); });
  }
  putter_.submit(*batch, [this, id](bool safe) {
    // Acks come in submit order, so the request is at (or near) the front unless it timed out.
    auto it = std::find_if(waiting_.begin(), waiting_.end(),
                           [id](const Waiting& w) { return w.id == id; });
    if (it == waiting_.end()) return;  // answered 503 at ack_timeout already
    http::Responder answer = std::move(it->responder);
    waiting_.erase(it);
    if (!safe) {
      return refuse(answer, 503, "the channel is full; retry later", {{"Retry-After", "1"}});
    }
    count(200);
    http::Response r;
    r.status = 200;
    answer.respond(std::move(r));
  });
}

void HttpSource::on_ack_timer() {
  const TimePoint now = std::chrono::steady_clock::now();
  while (!waiting_.empty() && waiting_.front().deadline <= now) {
    http::Responder responder = std::move(waiting_.front().responder);
    waiting_.pop_front();
    ack_timeouts_->inc();
    SLUICE_WARN_LIMITED(
        log_limit_,
        "http {}: events of a request not safe within ack_timeout ({} ms): 503; "
        "they stay in the channel and may still be delivered",
        ctx_.name,
        std::chrono::duration_cast<std::chrono::milliseconds>(config_.ack_timeout).count());
    refuse(responder, 503,
           "the events were not acknowledged in time; retry later (they may still be "
           "delivered: at-least-once)",
           {{"Retry-After", "1"}});
  }
  if (!waiting_.empty()) {
    ack_timer_.start(waiting_.front().deadline - now, [this] { on_ack_timer(); });
  }
}

void HttpSource::stop(StopCallback on_stopped) {
  stopping_ = true;
  // Requests already received are answered once safe; then the server closes.
  stop_waiter_.wait(
      [this] {
        if (!putter_.idle() || decoding_ > 0 || !queued_.empty()) return false;
        ack_timer_.stop();
        if (server_) server_->close();
        return true;
      },
      std::move(on_stopped));
}

}  // namespace sluice::sources

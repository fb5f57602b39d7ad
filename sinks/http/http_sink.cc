#include "sinks/http/http_sink.h"

#include <strings.h>
#include <uv.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "lib/codec/hash.h"
#include "lib/codec/json.h"
#include "lib/core/assert.h"
#include "lib/net/tls.h"

namespace sluice::sinks {

namespace {

using namespace std::chrono_literals;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// The URL without a password: "https://user:pw@host/x" -> "https://***@host/x".
std::string redact_userinfo(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::string(url);
  const std::size_t host_at = scheme_end + 3;
  const std::size_t path_at = std::min(url.find_first_of("/?#", host_at), url.size());
  const std::size_t at = url.substr(0, path_at).rfind('@');
  if (at == std::string_view::npos || at < host_at) return std::string(url);
  return std::string(url.substr(0, host_at)) + "***" + std::string(url.substr(at));
}

bool http_url(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return false;
  const std::string_view scheme = url.substr(0, scheme_end);
  if (!iequals(scheme, "http") && !iequals(scheme, "https")) return false;
  const std::string_view rest = url.substr(scheme_end + 3);
  return !rest.empty() && rest.front() != '/' &&
         rest.find_first_of(" \t\r\n") == std::string_view::npos;
}

// A header name is an RFC 9110 token.
bool token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 32 || u >= 127 || std::strchr("\"(),/:;<=>?@[\\]{}", c) != nullptr) return false;
  }
  return true;
}

std::string_view method_name(http::Method m) {
  switch (m) {
    case http::Method::get:
      return "GET";
    case http::Method::head:
      return "HEAD";
    case http::Method::post:
      return "POST";
    case http::Method::put:
      return "PUT";
  }
  return "POST";
}

}  // namespace

std::optional<HttpSinkConfig> HttpSinkConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  HttpSinkConfig c;
  if (node.required("url", c.url, errors) && !http_url(c.url)) {
    node.error_at("url", errors,
                  "\"" + redact_userinfo(c.url) + "\" is not an http:// or https:// URL");
  }
  node.optional_enum("format", c.format, errors,
                     {{"json", HttpBodyFormat::json},
                      {"ndjson", HttpBodyFormat::ndjson},
                      {"raw", HttpBodyFormat::raw}});
  node.optional_enum("method", c.method, errors,
                     {{"POST", http::Method::post}, {"PUT", http::Method::put}});
  node.optional_enum("compression", c.compression, errors,
                     {{"none", http::Compression::none},
                      {"gzip", http::Compression::gzip},
                      {"zstd", http::Compression::zstd}});
  std::int64_t level = 0;
  if (node.optional("compression_level", level, errors, InRange<std::int64_t>{0, 19})) {
    c.compression_level = static_cast<int>(level);
    if (c.compression == http::Compression::gzip && level > 9) {
      node.error_at("compression_level", errors,
                    "must be in [0, 9] for gzip, got " + std::to_string(level));
    }
  }
  read_secret(node, "auth_token", c.auth_token, errors);
  node.optional("idempotency_header", c.idempotency_header, errors);
  if (!c.idempotency_header.empty() && !token(c.idempotency_header)) {
    node.error_at("idempotency_header", errors, "is not a valid header name");
  }
  // The agent reads delivery_timeout too; a request must not outlive it.
  node.optional("delivery_timeout", c.request_timeout, errors,
                InRange<std::chrono::nanoseconds>{1ms, std::chrono::hours(1)});
  node.optional("request_timeout", c.request_timeout, errors,
                InRange<std::chrono::nanoseconds>{10ms, std::chrono::hours(1)});
  node.optional("connect_timeout", c.connect_timeout, errors,
                InRange<std::chrono::nanoseconds>{10ms, std::chrono::minutes(10)});
  node.optional("flush_timeout", c.flush_timeout, errors,
                InRange<std::chrono::nanoseconds>{0ms, std::chrono::minutes(10)});
  node.optional("max_retry_after", c.max_retry_after, errors,
                InRange<std::chrono::nanoseconds>{0ms, std::chrono::hours(1)});
  node.optional("max_in_flight", c.max_in_flight, errors, InRange<std::uint32_t>{1, 64});
  if (node.optional("probe_url", c.probe_url, errors) && !c.probe_url.empty() &&
      !http_url(c.probe_url)) {
    node.error_at("probe_url", errors, "\"" + c.probe_url + "\" is not an http:// or https:// URL");
  }
  node.optional_enum("probe_method", c.probe_method, errors,
                     {{"HEAD", http::Method::head}, {"GET", http::Method::get}});
  node.optional("reason_body_bytes", c.reason_body_bytes, errors,
                InRange<std::uint32_t>{0, 64 * 1024});
  node.optional("proxy", c.proxy, errors);
  if (!c.proxy.empty() && c.proxy.find("://") == std::string::npos) {
    node.error_at("proxy", errors,
                  "\"" + c.proxy + "\" needs a scheme (http://, https://, socks5://)");
  }
  node.optional("http2", c.http2, errors);

  node.mark_known("headers");
  if (const toml::node* h = node.table().get("headers")) {
    if (const auto* t = h->as_table()) {
      ConfigNode hn(*t, node.path() + ".headers", node.file());
      for (const auto& [k, v] : *t) {
        const std::string name(k.str());
        // A header may carry a credential (X-Api-Key): its value is a secret like auth_token.
        Secret secret;
        if (!read_secret(hn, name, secret, errors, /*required=*/true)) continue;
        const std::string& value = secret.reveal();
        if (!token(name)) {
          hn.error_at(name, errors, "is not a valid header name", true);
        } else if (value.find_first_of("\r\n") != std::string::npos) {
          hn.error_at(name, errors, "a header value must not contain a line break");
        } else if (iequals(name, "Content-Length") || iequals(name, "Content-Encoding") ||
                   iequals(name, "Transfer-Encoding") || iequals(name, "Host") ||
                   iequals(name, "Connection")) {
          hn.error_at(name, errors, "is set by the sink", true);
        } else if (iequals(name, "Authorization") && node.has("auth_token")) {
          hn.error_at(name, errors, "conflicts with auth_token", true);
        } else {
          c.headers.emplace_back(name, value);
        }
      }
    } else {
      node.error_at("headers", errors, "expected a table of header names and string values");
    }
  }

  tls::TlsConfig tls;
  if (tls::TlsConfig::parse(node, errors, tls, /*server=*/false) && tls.enabled) {
    if (!tls.server_name.empty()) {
      node.error_at("tls", errors,
                    "server_name is not supported by the http sink: the URL's host is verified");
    }
    c.tls.ca_file = tls.ca;
    c.tls.ca_dir = tls.ca_dir;
    c.tls.cert_file = tls.cert;
    c.tls.key_file = tls.key;
    c.tls.verify = tls.verify;
    c.tls.min_version = tls.min_version == tls::TlsConfig::Version::tls1_3 ? "1.3" : "1.2";
  }
  node.reject_unknown_keys(errors);
  if (errors.size() != before) return std::nullopt;
  return c;
}

struct HttpSink::Later {
  HttpSink* sink = nullptr;
  DeliveryId id;
  DeliveryListener* done = nullptr;
  DeliveryResult result;
};

Result<std::unique_ptr<HttpSink>> HttpSink::create(const HttpSinkConfig& config, SinkContext& ctx) {
  http::ClientOptions o;
  o.connect_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config.connect_timeout);
  o.request_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config.request_timeout);
  o.max_in_flight = config.max_in_flight;
  o.max_response_body = std::max<std::size_t>(4096, config.reason_body_bytes + 16);
  o.tls = config.tls;
  o.proxy = config.proxy;
  o.http2 = config.http2;
  o.user_agent = "sluice";
  auto client = http::Client::create(ctx.loop, std::move(o));
  if (!client) return client.error();
  return std::make_unique<HttpSink>(config, ctx, std::move(*client));
}

HttpSink::HttpSink(const HttpSinkConfig& config, SinkContext& ctx,
                   std::unique_ptr<http::Client> client)
    : config_(config),
      ctx_(ctx),
      client_(std::move(client)),
      log_url_(redact_userinfo(config.url)),
      splits_(ctx.metrics.counter("sluice_http_sink_splits_total",
                                  "Requests answered 413 (too large) and sent again as two halves.",
                                  ctx.labels())),
      limit_gauge_(ctx.metrics.gauge(
          "sluice_http_sink_request_bytes_limit",
          "Most event bytes (before encoding) per request since a 413 (0: no limit).",
          ctx.labels())),
      stop_timer_(ctx.loop),
      metrics_(ctx.metrics, ctx.labels()) {
  switch (config_.format) {
    case HttpBodyFormat::json:
      content_type_ = "application/json";
      break;
    case HttpBodyFormat::ndjson:
      content_type_ = "application/x-ndjson";
      break;
    case HttpBodyFormat::raw:
      content_type_ = "text/plain; charset=utf-8";
      break;
  }
  bool has_content_type = false;
  for (const auto& [k, v] : config_.headers) {
    if (iequals(k, "Content-Type")) has_content_type = true;
  }
  if (!has_content_type) headers_.emplace_back("Content-Type", content_type_);
  if (config_.compression != http::Compression::none) {
    headers_.emplace_back("Content-Encoding",
                          std::string(http::content_encoding(config_.compression)));
  }
  if (!config_.auth_token.empty()) {
    headers_.emplace_back("Authorization", "Bearer " + config_.auth_token.reveal());
  }
  headers_.insert(headers_.end(), config_.headers.begin(), config_.headers.end());
}

HttpSink::~HttpSink() {
  // Whoever listened is gone: nothing is answered from here on.
  on_stopped_ = nullptr;
  if (client_) client_->close();
  if (probe_client_) probe_client_->close();
  for (auto& [id, d] : deliveries_) {
    if (d.work != nullptr) d.work->abandon();  // frees itself when the threadpool is done
  }
  deliveries_.clear();
  for (Later* l : later_) l->sink = nullptr;
  ctx_.loop.cancel_deferred(this);
  // The header holding the token is wiped with the strings' memory.
  for (auto& [k, v] : headers_) {
    volatile char* p = v.data();
    for (std::size_t i = 0; i < v.size(); ++i) p[i] = 0;
  }
}

std::string HttpSink::idempotency_key(const Batch& batch) {
  // FNV-1a over the ids' bytes, then the count: the same events in the same order, same key.
  std::uint64_t h = codec::kFnvBasis;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    std::uint64_t id = batch[i].id();
    char bytes[8];  // little-endian, whatever the machine
    for (char& b : bytes) {
      b = static_cast<char>(id & 0xff);
      id >>= 8;
    }
    h = codec::fnv1a64({bytes, sizeof bytes}, h);
  }
  char buf[48];
  const int n = std::snprintf(buf, sizeof buf, "%016llx-%zu", static_cast<unsigned long long>(h),
                              batch.size());
  return std::string(buf, static_cast<std::size_t>(n));
}

void HttpSink::encode(const Batch& batch, HttpBodyFormat format, std::string& out) {
  switch (format) {
    case HttpBodyFormat::raw:
      codec::encode_batch(batch, codec::OutputFormat::body, out);
      return;
    case HttpBodyFormat::ndjson:
      codec::encode_batch(batch, codec::OutputFormat::json, out);
      return;
    case HttpBodyFormat::json: {
      // The file sink's json lines, joined into an array: inside the objects every newline is
      // escaped, so each raw '\n' is an object's end.
      const std::size_t start = out.size();
      out += '[';
      codec::encode_batch(batch, codec::OutputFormat::json, out);
      if (out.size() == start + 1) {
        out += ']';
        return;
      }
      char* p = out.data() + start + 1;
      char* end = out.data() + out.size();
      while (char* nl =
                 static_cast<char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)))) {
        *nl = ',';
        p = nl + 1;
      }
      out.back() = ']';
      return;
    }
  }
}

void HttpSink::deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) {
  const TimePoint now = std::chrono::steady_clock::now();
  if (stopping_ || waiting_retry_after(now)) {
    if (!stopping_) metrics_.retry_after.inc();
    metrics_.retries.inc();
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(retry_after_until_ - now);
    answer_later(id, &done,
                 DeliveryResult::retry(stopping_ ? std::string("stopping")
                                                 : "the server asked to retry after " +
                                                       format_duration(left)));
    return;
  }
  Delivery& d = deliveries_[id.value];
  d.id = id;
  d.done = &done;
  d.batch = &batch;
  // The requests in order, from the back: chunks of at most the bytes a 413 taught, each of at
  // least one event.
  const auto n = static_cast<std::uint32_t>(batch.size());
  if (request_bytes_limit_ == 0 || batch.bytes() <= request_bytes_limit_) {
    d.todo.emplace_back(0, n);
  } else {
    std::uint32_t first = 0;
    std::uint64_t bytes = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
      const std::uint64_t b = batch[i].bytes();
      if (i > first && bytes + b > request_bytes_limit_) {
        d.todo.emplace_back(first, i);
        first = i;
        bytes = 0;
      }
      bytes += b;
    }
    d.todo.emplace_back(first, n);
    std::reverse(d.todo.begin(), d.todo.end());
  }
  send_next(d);
}

void HttpSink::send_next(Delivery& d) {
  if (d.todo.empty()) {
    if (d.rejected.empty()) return answer(d.id, DeliveryResult::ok());
    if (d.rejected.size() == d.batch->size()) {
      return answer(d.id, DeliveryResult::reject(std::move(d.why)));  // every event
    }
    std::sort(d.rejected.begin(), d.rejected.end());
    return answer(d.id, DeliveryResult::reject(std::move(d.why), std::move(d.rejected)));
  }
  if (stopping_) return answer(d.id, DeliveryResult::retry("stopping"));  // between two halves
  const auto [first, end] = d.todo.back();
  d.sending = d.batch;
  if (end - first != d.batch->size()) {
    d.part.clear();
    d.part.append_range(*d.batch, first, end);
    d.sending = &d.part;
  }
  std::string body;
  encode(*d.sending, config_.format, body);
  d.raw_bytes = body.size();
  if (config_.compression == http::Compression::none) {
    send(d, std::move(body));
    return;
  }
  // Compression runs on the threadpool: a large batch would stall the loop for milliseconds.
  Status error;
  const DeliveryId id = d.id;
  d.work = http::CompressJob::start(
      ctx_.loop, config_.compression, config_.compression_level, std::move(body),
      [this, id](Status st, std::string&& compressed) {
        auto it = deliveries_.find(id.value);
        if (it == deliveries_.end()) return;
        Delivery& dl = it->second;
        dl.work = nullptr;
        if (dl.cancelled) return answer(dl.id, DeliveryResult::retry("cancelled"));
        if (!st.ok()) {
          return answer(dl.id, DeliveryResult::retry("compression failed: " + st.message()));
        }
        send(dl, std::move(compressed));
      },
      error);
  if (d.work == nullptr) {
    DeliveryListener* done = d.done;
    deliveries_.erase(id.value);
    answer_later(id, done, DeliveryResult::retry(error.message()));
  }
}

void HttpSink::send(Delivery& d, std::string body) {
  metrics_.body(d.raw_bytes, body.size());
  http::ClientRequest req;
  req.method = config_.method;
  req.url = config_.url;
  req.headers = headers_;
  if (!config_.idempotency_header.empty()) {
    req.headers.emplace_back(config_.idempotency_header, idempotency_key(*d.sending));
  }
  req.body = std::move(body);
  const DeliveryId id = d.id;
  d.request = client_->submit(
      std::move(req), [this, id](http::ClientResponse&& r) { on_response(id, std::move(r)); });
}

namespace {
// Answers that say the endpoint or the configuration is wrong rather than the batch.
bool config_error(int status) {
  return (status >= 300 && status < 400) || status == 401 || status == 403 || status == 404 ||
         status == 407;
}
}  // namespace

void HttpSink::on_response(DeliveryId id, http::ClientResponse&& r) {
  auto it = deliveries_.find(id.value);
  if (it == deliveries_.end()) return;
  metrics_.answered(r);
  http::Classification c = http::classify(r, config_.reason_body_bytes);
  Delivery& d = it->second;
  const auto [first, end] = d.todo.back();
  const std::uint32_t events = end - first;
  if (c.verdict == http::Verdict::reject && config_error(r.status)) {
    // A redirect, missing or refused credentials, a path that is not there (yet): the endpoint or
    // the configuration is wrong, not the events. Retry keeps them until an operator fixes it
    // (as the ilp and datahub sinks do), where Reject would drop or dead-letter every batch.
    metrics_.retries.inc();
    if (!r.cancelled && !stopping_) {
      SLUICE_WARN_LIMITED(log_limit_,
                          "http sink {}: {} {} answered {} (check the url and credentials); the "
                          "batch is kept and sent again",
                          ctx_.name, method_name(config_.method), log_excerpt(log_url_), c.reason);
    }
    return answer(id, DeliveryResult::retry(std::move(c.reason)));
  }
  switch (c.verdict) {
    case http::Verdict::ok:
      if (request_bytes_limit_ != 0 && ++accepted_since_limit_ >= kGrowAfter) {
        // Perhaps the receiver takes more again: try twice as much (a 413 halves it back).
        request_bytes_limit_ =
            request_bytes_limit_ >= (std::uint64_t{1} << 40) ? 0 : request_bytes_limit_ * 2;
        accepted_since_limit_ = 0;
        limit_gauge_.set(static_cast<std::int64_t>(request_bytes_limit_));
      }
      d.todo.pop_back();
      return send_next(d);
    case http::Verdict::retry:
      metrics_.retries.inc();
      if (c.retry_after) {
        const Duration wait = std::min<Duration>(*c.retry_after, config_.max_retry_after);
        retry_after_until_ = std::max(retry_after_until_, std::chrono::steady_clock::now() + wait);
        c.reason += " (retry after " + format_duration(wait) + ")";
      }
      if (!r.cancelled && !stopping_) {
        SLUICE_WARN_LIMITED(log_limit_, "http sink {}: {} {}: {}", ctx_.name,
                            method_name(config_.method), log_excerpt(log_url_), c.reason);
      }
      return answer(id, DeliveryResult::retry(std::move(c.reason)));
    case http::Verdict::reject:
      d.todo.pop_back();
      if (r.status == 413 && events > 1) {
        // Too large: the two halves, the first sent first. The limit is learned for the next
        // batches, so that each does not meet the same 413.
        const std::uint32_t half = first + events / 2;
        d.todo.emplace_back(half, end);
        d.todo.emplace_back(first, half);
        splits_.inc();
        const std::uint64_t refused = std::max<std::uint64_t>(1, d.sending->bytes() / 2);
        if (request_bytes_limit_ == 0 || refused < request_bytes_limit_) {
          request_bytes_limit_ = refused;
          limit_gauge_.set(static_cast<std::int64_t>(request_bytes_limit_));
        }
        accepted_since_limit_ = 0;
        SLUICE_WARN_LIMITED(log_limit_,
                            "http sink {}: {} events too large for the server ({}): sending at "
                            "most {} bytes of events per request",
                            ctx_.name, events, c.reason, request_bytes_limit_);
        return send_next(d);
      }
      metrics_.rejects.inc();
      SLUICE_WARN_LIMITED(log_limit_, "http sink {}: batch of {} events rejected: {}", ctx_.name,
                          events, c.reason);
      if (d.rejected.empty()) d.why = std::move(c.reason);
      for (std::uint32_t i = first; i < end; ++i) d.rejected.push_back(i);
      return send_next(d);
  }
}

void HttpSink::answer(DeliveryId id, DeliveryResult result) {
  auto it = deliveries_.find(id.value);
  if (it == deliveries_.end()) return;
  DeliveryListener* done = it->second.done;
  deliveries_.erase(it);
  done->on_delivered(id, result);
  maybe_stopped();
}

void HttpSink::answer_later(DeliveryId id, DeliveryListener* done, DeliveryResult result) {
  // Never answer from inside deliver(): hand it to the loop. stop() waits for these.
  auto* later = new Later{this, id, done, std::move(result)};
  later_.push_back(later);
  ctx_.loop.defer(
      [](void* p, std::uint64_t) {
        std::unique_ptr<Later> l(static_cast<Later*>(p));
        HttpSink* sink = l->sink;
        if (sink == nullptr) return;
        std::erase(sink->later_, l.get());
        l->done->on_delivered(l->id, l->result);
        sink->maybe_stopped();
      },
      later, 0);
}

void HttpSink::cancel(DeliveryId id) {
  auto it = deliveries_.find(id.value);
  if (it == deliveries_.end()) return;
  Delivery& d = it->second;
  if (d.work != nullptr) {
    d.cancelled = true;  // answered when the compression comes back
    return;
  }
  client_->cancel(d.request);  // answers later, with cancelled: Retry
}

bool HttpSink::probe(ProbeListener& listener) {
  if (probe_in_flight_ || stopping_ || on_stopped_) return false;
  if (!probe_client_) {
    http::ClientOptions o = client_->options();
    o.max_in_flight = 1;
    o.request_timeout = std::min(o.request_timeout, std::chrono::milliseconds(5000));
    auto c = http::Client::create(ctx_.loop, std::move(o));
    if (!c) return false;
    probe_client_ = std::move(*c);
  }
  probe_listener_ = &listener;
  probe_in_flight_ = true;
  http::ClientRequest req;
  req.method = config_.probe_method;
  req.url = config_.probe_url.empty() ? config_.url : config_.probe_url;
  for (const auto& [k, v] : headers_) {
    if (iequals(k, "Authorization")) req.headers.emplace_back(k, v);
  }
  probe_client_->submit(std::move(req),
                        [this](http::ClientResponse&& r) { on_probe_response(std::move(r)); });
  return true;
}

void HttpSink::on_probe_response(http::ClientResponse&& r) {
  probe_in_flight_ = false;
  bool healthy = false;
  if (waiting_retry_after(std::chrono::steady_clock::now())) {
    healthy = false;  // the server asked for time: do not send it batches yet
  } else if (!config_.probe_url.empty()) {
    healthy = r.status >= 200 && r.status < 300;
  } else {
    healthy = r.status != 0 && r.status != 408 && r.status != 429 && r.status < 500;
  }
  ProbeListener* l = probe_listener_;
  probe_listener_ = nullptr;
  l->on_probed(*this, healthy);
  maybe_stopped();
}

void HttpSink::stop(StopCallback on_stopped) {
  on_stopped_ = std::move(on_stopped);
  // A probe in flight is cancelled: it reports unhealthy on a later turn, before on_stopped.
  if (probe_in_flight_ && probe_client_) probe_client_->cancel_all();
  if (!deliveries_.empty()) {
    stop_timer_.start(config_.flush_timeout, [this] {
      if (!on_stopped_) return;
      stopping_ = true;
      for (auto& [id, d] : deliveries_) {
        if (d.work != nullptr) d.cancelled = true;
      }
      client_->cancel_all();  // each answers Retry: the batches stay in the channel
    });
  }
  maybe_stopped();
}

void HttpSink::maybe_stopped() {
  if (!on_stopped_ || !deliveries_.empty() || probe_in_flight_ || !later_.empty()) return;
  stop_timer_.stop();
  auto cb = std::move(on_stopped_);
  on_stopped_ = nullptr;
  stopping_ = true;
  client_->close();
  if (probe_client_) probe_client_->close();
  cb();
}

}  // namespace sluice::sinks

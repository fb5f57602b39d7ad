#include "sinks/ilp/ilp_sink.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace sluice::sinks {

namespace {

std::string_view precision_param(IlpPrecision p) {
  switch (p) {
    case IlpPrecision::ns:
      return "n";
    case IlpPrecision::us:
      return "u";
    case IlpPrecision::ms:
      return "ms";
    case IlpPrecision::s:
      return "s";
  }
  return "n";
}

// The value of `key` in the query of `url`, or nullopt.
std::optional<std::string_view> query_param(std::string_view url, std::string_view key) {
  const auto q = url.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = url.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    const auto eq = kv.find('=');
    if (kv.substr(0, eq) == key) {
      return eq == std::string_view::npos ? std::string_view() : kv.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

bool same_precision(std::string_view given, IlpPrecision p) {
  switch (p) {
    case IlpPrecision::ns:
      return given == "n" || given == "ns";
    case IlpPrecision::us:
      return given == "u" || given == "us";
    case IlpPrecision::ms:
      return given == "ms";
    case IlpPrecision::s:
      return given == "s";
  }
  return false;
}

}  // namespace

std::optional<IlpConfig> IlpConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  IlpConfig c;
  const bool has_url = node.has("url"), has_address = node.has("address");
  if (has_url == has_address) {
    node.error(errors, has_url ? "set either 'url' (HTTP) or 'address' (TCP), not both"
                               : "missing required key 'url' (HTTP) or 'address' (TCP)");
  }
  node.mark_known("url");
  node.mark_known("address");
  if (node.required("table", c.mapping.table, errors) && c.mapping.table.empty()) {
    node.error_at("table", errors, "must not be empty");
  }
  node.optional("tags", c.mapping.tags, errors);
  node.mark_known("fields");
  if (const toml::node* f = node.table().get("fields"); f == nullptr) {
    node.error(errors, "missing required key 'fields'");
  } else if (f->is_table()) {
    if (auto fn = node.child("fields", errors)) {
      // In the order written (toml++ keeps a table's keys sorted): the columns' order.
      std::vector<std::pair<toml::source_position, std::string>> keys;
      for (const auto& [key, value] : fn->table()) {
        keys.emplace_back(value.source().begin, std::string(key.str()));
      }
      std::sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) {
        return a.first.line != b.first.line ? a.first.line < b.first.line
                                            : a.first.column < b.first.column;
      });
      for (const auto& [pos, key] : keys) {
        IlpType t = IlpType::auto_type;
        if (fn->optional_enum(std::string_view(key), t, errors,
                              {{"auto", IlpType::auto_type},
                               {"integer", IlpType::integer},
                               {"float", IlpType::floating},
                               {"string", IlpType::string},
                               {"boolean", IlpType::boolean}})) {
          c.mapping.fields.emplace_back(key, t);
        }
      }
    }
  } else {
    std::vector<std::string> names;
    if (node.optional("fields", names, errors)) {
      for (auto& n : names) c.mapping.fields.emplace_back(std::move(n), IlpType::auto_type);
    }
  }
  if (node.has("fields") && c.mapping.fields.empty() && errors.size() == before) {
    node.error_at("fields", errors, "needs at least one field (a line without fields is invalid)");
  }
  node.optional_enum("precision", c.mapping.precision, errors,
                     {{"ns", IlpPrecision::ns},
                      {"us", IlpPrecision::us},
                      {"ms", IlpPrecision::ms},
                      {"s", IlpPrecision::s}});
  node.optional_enum("timestamp", c.mapping.timestamp, errors, {{"event", true}, {"none", false}});
  if (has_address && !has_url) {
    net::StreamSinkOptions tcp;
    if (net::StreamSinkOptions::parse(node, errors, tcp)) c.tcp = std::move(tcp);
  } else if (has_url) {
    if (node.optional("url", c.url, errors)) {
      if (c.url.rfind("http://", 0) != 0 && c.url.rfind("https://", 0) != 0) {
        node.error_at("url", errors, "must start with http:// or https://");
      } else if (auto p = query_param(c.url, "precision");
                 p && !same_precision(*p, c.mapping.precision)) {
        node.error_at("url", errors,
                      fmt::format("precision={} differs from the sink's precision (\"{}\"); set "
                                  "'precision' instead",
                                  *p, precision_param(c.mapping.precision)));
      }
    }
    read_secret(node, "username", c.username, errors);
    read_secret(node, "password", c.password, errors);
    read_secret(node, "auth_token", c.auth_token, errors);
    if (c.username.empty() != c.password.empty()) {
      node.error(errors, "'username' and 'password' go together");
    }
    using std::chrono::milliseconds;
    node.optional("connect_timeout", c.connect_timeout, errors,
                  InRange<milliseconds>{milliseconds(10), std::chrono::minutes(10)});
    if (node.optional("probe_path", c.probe_path, errors) &&
        (c.probe_path.empty() || c.probe_path[0] != '/')) {
      node.error_at("probe_path", errors, "must start with '/'");
    }
    node.optional("max_retry_after", c.max_retry_after, errors,
                  InRange<milliseconds>{milliseconds(0), std::chrono::hours(1)});
    node.optional("flush_timeout", c.flush_timeout, errors,
                  InRange<milliseconds>{milliseconds(0), std::chrono::minutes(10)});
    std::uint64_t in_flight = c.max_in_flight;
    node.optional("max_in_flight", in_flight, errors, InRange<std::uint64_t>{1, 64});
    c.max_in_flight = in_flight;
    ConfigErrors ignored;  // the agent reports a bad delivery_timeout
    std::chrono::nanoseconds delivery{std::chrono::seconds(5)};
    if (node.optional("delivery_timeout", delivery, ignored) && delivery.count() > 0) {
      c.request_timeout =
          std::max(milliseconds(1), std::chrono::duration_cast<milliseconds>(delivery));
    }
    tls::TlsConfig tls;
    if (tls::TlsConfig::parse(node, errors, tls, /*server=*/false) && tls.enabled) {
      c.tls.ca_file = tls.ca;
      c.tls.cert_file = tls.cert;
      c.tls.key_file = tls.key;
      c.tls.verify = tls.verify;
    }
  }
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{std::move(c)} : std::nullopt;
}

std::string IlpConfig::write_url() const {
  if (query_param(url, "precision")) return url;
  return url + (url.find('?') == std::string::npos ? "?" : "&") +
         "precision=" + std::string(precision_param(mapping.precision));
}

IlpMetrics::IlpMetrics(SinkContext& ctx)
    : rows_written(ctx.metrics.counter("sluice_ilp_rows_written_total",
                                       "Rows the server accepted (TCP: the kernel took).",
                                       ctx.labels())),
      rejected_value(ctx.metrics.counter("sluice_ilp_rows_rejected_total",
                                         "Events rejected, by reason.",
                                         with_label(ctx.labels(), "reason", "invalid_value"))),
      rejected_no_fields(ctx.metrics.counter("sluice_ilp_rows_rejected_total",
                                             "Events rejected, by reason.",
                                             with_label(ctx.labels(), "reason", "no_fields"))),
      rejected_server(ctx.metrics.counter("sluice_ilp_rows_rejected_total",
                                          "Events rejected, by reason.",
                                          with_label(ctx.labels(), "reason", "server"))) {}

Result<std::unique_ptr<Sink>> IlpSink::create(const IlpConfig& config, SinkContext& ctx) {
  if (config.tcp) return std::unique_ptr<Sink>(std::make_unique<IlpTcpSink>(config, ctx));
  http::ClientOptions o;
  o.connect_timeout = config.connect_timeout;
  o.request_timeout = config.request_timeout;
  o.max_in_flight = config.max_in_flight;
  o.tls = config.tls;
  o.http2 = false;
  auto client = http::Client::create(ctx.loop, o);
  if (!client) return client.error();
  return std::unique_ptr<Sink>(std::make_unique<IlpHttpSink>(config, ctx, std::move(*client)));
}

// ---- TCP ----

IlpTcpSink::IlpTcpSink(const IlpConfig& config, SinkContext& ctx)
    : StreamSink(ctx, *config.tcp, "sluice_ilp_tcp"), encoder_(config.mapping), metrics_(ctx) {}

void IlpTcpSink::encode(const Batch& batch, std::string& out, std::vector<std::uint32_t>& rejected,
                        std::string& why) {
  std::size_t written = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (encoder_.encode(batch[i], out, reason_)) {
      ++written;
      continue;
    }
    (reason_.rfind("the event has none", 0) == 0 ? metrics_.rejected_no_fields
                                                 : metrics_.rejected_value)
        .inc();
    if (rejected.empty()) why = reason_;
    rejected.push_back(static_cast<std::uint32_t>(i));
  }
  if (rejected.size() > 1) why += fmt::format(" (and {} more)", rejected.size() - 1);
  metrics_.rows_written.inc(written);
}

// ---- HTTP ----

IlpHttpSink::IlpHttpSink(const IlpConfig& config, SinkContext& ctx,
                         std::unique_ptr<http::Client> client)
    : ctx_(ctx),
      config_(config),
      encoder_(config.mapping),
      url_(config.write_url()),
      client_(std::move(client)),
      stop_timer_(ctx.loop),
      metrics_(ctx),
      http_metrics_(ctx.metrics, ctx.labels()),
      splits_(ctx.metrics.counter(
          "sluice_ilp_partial_write_splits_total",
          "Requests sent again in halves to find the lines an InfluxDB partial write refused.",
          ctx.labels())) {
  // scheme://authority of the url, and the probe's path on it.
  const std::size_t authority = url_.find("://") + 3;
  probe_url_ = url_.substr(0, url_.find('/', authority)) + config_.probe_path;
  headers_.emplace_back("Content-Type", "text/plain; charset=utf-8");
  if (!config_.auth_token.empty()) {
    headers_.emplace_back("Authorization", "Bearer " + config_.auth_token.reveal());
  }
  if (!config_.username.empty()) {
    // Basic credentials, for QuestDB and InfluxDB alike.
    static constexpr char kB64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const std::string in = config_.username.reveal() + ":" + config_.password.reveal();
    std::string out;
    for (std::size_t i = 0; i < in.size(); i += 3) {
      const std::uint32_t n = (static_cast<unsigned char>(in[i]) << 16) |
                              (i + 1 < in.size() ? static_cast<unsigned char>(in[i + 1]) << 8 : 0) |
                              (i + 2 < in.size() ? static_cast<unsigned char>(in[i + 2]) : 0);
      out += kB64[(n >> 18) & 63];
      out += kB64[(n >> 12) & 63];
      out += i + 1 < in.size() ? kB64[(n >> 6) & 63] : '=';
      out += i + 2 < in.size() ? kB64[n & 63] : '=';
    }
    headers_.emplace_back("Authorization", "Basic " + out);
  }
}

IlpHttpSink::~IlpHttpSink() {
  client_->close();
  ctx_.loop.cancel_deferred(this);
}

void IlpHttpSink::deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) {
  Job& job = jobs_.emplace_back();
  job.batch = &batch;
  job.id = id;
  job.done = &done;
  const auto now = std::chrono::steady_clock::now();
  if (now < retry_after_until_) {
    // The server asked for a pause (503/429 with Retry-After): no request until it passed.
    http_metrics_.retry_after.inc();
    return finish(job, DeliveryResult::retry(fmt::format(
                           "the server asked to retry after {}",
                           format_duration(std::chrono::duration_cast<std::chrono::nanoseconds>(
                               retry_after_until_ - now)))));
  }
  job.body.reserve(batch.bytes() + batch.size() * 16);
  std::string why;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const std::size_t at = job.body.size();
    if (encoder_.encode(batch[i], job.body, why)) {
      job.line_event.push_back(static_cast<std::uint32_t>(i));
      job.line_offset.push_back(static_cast<std::uint32_t>(at));
      continue;
    }
    (why.rfind("the event has none", 0) == 0 ? metrics_.rejected_no_fields
                                             : metrics_.rejected_value)
        .inc();
    if (job.rejected.empty()) job.why = why;
    job.rejected.push_back(static_cast<std::uint32_t>(i));
  }
  job.line_offset.push_back(static_cast<std::uint32_t>(job.body.size()));
  if (!job.line_event.empty()) {
    job.todo.emplace_back(0, static_cast<std::uint32_t>(job.line_event.size()));
  }
  next(job);
}

void IlpHttpSink::next(Job& job) {
  while (!job.todo.empty() && job.todo.back().first >= job.todo.back().second) job.todo.pop_back();
  if (job.todo.empty()) {
    if (job.rejected.empty()) {
      finish(job, DeliveryResult::ok());
    } else {
      std::sort(job.rejected.begin(), job.rejected.end());
      std::string why = job.why;
      if (job.rejected.size() > 1) why += fmt::format(" (and {} more)", job.rejected.size() - 1);
      finish(job, DeliveryResult::reject(std::move(why), std::move(job.rejected)));
    }
    return;
  }
  const auto [first, end] = job.todo.back();
  http::ClientRequest req;
  req.method = http::Method::post;
  req.url = url_;
  req.headers = headers_;
  req.body.assign(job.body, job.line_offset[first], job.line_offset[end] - job.line_offset[first]);
  http_metrics_.body(req.body.size(), req.body.size());
  job.in_request = true;
  Job* j = &job;
  job.request = client_->submit(std::move(req), [this, j](http::ClientResponse&& r) {
    j->in_request = false;
    on_response(*j, std::move(r));
  });
}

void IlpHttpSink::reject_line(Job& job, std::uint32_t line, const std::string& why) {
  metrics_.rejected_server.inc();
  http_metrics_.rejects.inc();
  if (job.rejected.empty()) job.why = why;
  job.rejected.push_back(job.line_event[line]);
}

void IlpHttpSink::on_response(Job& job, http::ClientResponse&& r) {
  http_metrics_.answered(r);
  if (job.cancelled) return finish(job, DeliveryResult::retry("cancelled"));
  const auto [first, end] = job.todo.back();
  const std::uint32_t lines = end - first;
  if (r.status >= 200 && r.status < 300) {
    metrics_.rows_written.inc(lines);
    job.todo.pop_back();
    return next(job);
  }
  // InfluxDB answers a missing db= with 400 too: a configuration error, not a bad line.
  const bool config_error =
      r.status == 401 || r.status == 403 || r.status == 404 ||
      (r.status == 400 && r.body.find("database is required") != std::string::npos);
  const bool split_status = !config_error && (r.status == 400 || r.status == 413);
  if (!split_status) {
    const http::Classification c = http::classify(r);
    std::string why = c.reason.empty() ? fmt::format("HTTP {}", r.status) : c.reason;
    if (config_error) {
      // Credentials, a missing database: Retry keeps the events until an operator fixes it,
      // where Reject would drop or dead-letter every one of them.
      SLUICE_WARN_LIMITED(log_limit_, "sink {}: {} answered {} (check the url, db and credentials)",
                          ctx_.name, url_, why);
      return finish(job, DeliveryResult::retry(why));
    }
    if (c.verdict != http::Verdict::reject) {
      if (c.retry_after) {
        const auto wait =
            std::min<std::chrono::nanoseconds>(*c.retry_after, config_.max_retry_after);
        retry_after_until_ = std::max(retry_after_until_, std::chrono::steady_clock::now() + wait);
      }
      return finish(job, DeliveryResult::retry(why));
    }
    // Another 4xx: the lines not yet written are rejected with the answer.
    for (const auto& [a, b] : job.todo) {
      for (std::uint32_t l = a; l < b; ++l) reject_line(job, l, why);
    }
    job.todo.clear();
    return next(job);
  }
  const std::string reason =
      fmt::format("HTTP {}: {}", r.status, escape_for_log(r.body, 300));  // the peer's text
  // QuestDB names the failing line (1-based, in this request) and committed nothing.
  if (const auto at = r.body.find("\"line\":"); at != std::string::npos && r.status == 400) {
    std::uint32_t n = 0;
    const char* p = r.body.data() + at + 7;
    while (p < r.body.data() + r.body.size() && *p == ' ') ++p;
    const auto res = std::from_chars(p, r.body.data() + r.body.size(), n);
    if (res.ec == std::errc() && n >= 1 && n <= lines) {
      job.todo.pop_back();
      const std::uint32_t bad = first + n - 1;
      reject_line(job, bad, reason);
      job.todo.emplace_back(bad + 1, end);
      job.todo.emplace_back(first, bad);
      return next(job);
    }
  }
  if (lines == 1) {
    job.todo.pop_back();
    reject_line(job, first, reason);
    return next(job);
  }
  // InfluxDB wrote what it could parse and does not say which line failed: send the halves again.
  splits_.inc();
  job.todo.pop_back();
  const std::uint32_t mid = first + lines / 2;
  job.todo.emplace_back(mid, end);
  job.todo.emplace_back(first, mid);
  next(job);
}

void IlpHttpSink::finish(Job& job, DeliveryResult result) {
  // Answered on the next turn: a job can finish inside deliver() (every event rejected).
  if (job.finished) return;
  job.finished = true;
  if (result.is_retry()) http_metrics_.retries.inc();
  job.todo.clear();
  job.result = std::move(result);
  answers_.push_back(&job);
  if (answers_.size() == 1) ctx_.loop.defer(&IlpHttpSink::answer_task, this, 0);
}

void IlpHttpSink::answer_task(void* self, std::uint64_t) {
  auto* s = static_cast<IlpHttpSink*>(self);
  std::vector<Job*> now;
  now.swap(s->answers_);
  for (Job* j : now) {
    const DeliveryResult r = std::move(j->result);
    DeliveryListener* done = j->done;
    const DeliveryId id = j->id;
    s->jobs_.remove_if([j](const Job& x) { return &x == j; });
    done->on_delivered(id, r);
  }
  s->maybe_stopped();
}

void IlpHttpSink::cancel(DeliveryId id) {
  for (Job& j : jobs_) {
    if (j.id == id && !j.finished) {
      j.cancelled = true;
      if (j.in_request) {
        client_->cancel(j.request);  // its answer ends the job with Retry
      } else {
        finish(j, DeliveryResult::retry("cancelled"));
      }
      return;
    }
  }
}

bool IlpHttpSink::probe(ProbeListener& listener) {
  if (probe_ != nullptr || stopping_ || on_stopped_) return false;
  probe_ = &listener;
  http::ClientRequest req;
  req.method = http::Method::get;
  req.url = probe_url_;
  req.headers = headers_;
  probe_request_ = client_->submit(std::move(req), [this](http::ClientResponse&& r) {
    ProbeListener* l = probe_;
    probe_ = nullptr;
    l->on_probed(*this, r.status >= 200 && r.status < 300);
    maybe_stopped();
  });
  return true;
}

void IlpHttpSink::stop(StopCallback on_stopped) {
  on_stopped_ = std::move(on_stopped);
  // A probe in flight is cut short: it reports unhealthy on a later turn, before on_stopped.
  if (probe_ != nullptr) client_->cancel(probe_request_);
  if (!jobs_.empty()) {
    stop_timer_.start(config_.flush_timeout, [this] {
      for (Job& j : jobs_) {
        if (!j.finished && j.in_request) {
          j.cancelled = true;
          client_->cancel(j.request);
        }
      }
    });
  }
  maybe_stopped();
}

void IlpHttpSink::maybe_stopped() {
  if (!on_stopped_ || !jobs_.empty() || probe_ != nullptr) return;
  stopping_ = true;
  stop_timer_.stop();
  auto cb = std::move(on_stopped_);
  on_stopped_ = nullptr;
  cb();
}

}  // namespace sluice::sinks

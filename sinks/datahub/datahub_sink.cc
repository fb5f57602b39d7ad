#include "sinks/datahub/datahub_sink.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

namespace sluice::sinks {

namespace {

constexpr std::string_view kContentType = "application/json";
constexpr auto kMaxBackoff = std::chrono::milliseconds(1000);

Counter& counter(SinkContext& ctx, std::string_view name, std::string_view help,
                 std::optional<std::pair<std::string, std::string>> extra = std::nullopt) {
  Labels l = ctx.labels();
  if (extra) l.push_back(*extra);
  return ctx.metrics.counter(name, help, l);
}

}  // namespace

std::vector<std::pair<std::string, std::string>> DataHubSink::signed_headers(
    const DataHubConfig& config, std::string_view method, std::string_view path,
    std::string_view date, std::vector<std::pair<std::string, std::string>> extra) {
  std::vector<std::pair<std::string, std::string>> h;
  h.emplace_back("Content-Type", std::string(kContentType));
  h.emplace_back("Date", std::string(date));
  h.emplace_back("x-datahub-client-version", config.client_version);
  if (!config.security_token.empty()) {  // STS credentials: the token is a signed header
    h.emplace_back("x-datahub-security-token", config.security_token.reveal());
  }
  for (auto& e : extra) h.push_back(std::move(e));
  const std::string to_sign = datahub::string_to_sign(method, kContentType, date, h, path);
  h.emplace_back("Authorization",
                 datahub::authorization(config.access_id,
                                        datahub::signature(config.access_key.reveal(), to_sign)));
  return h;
}

DataHubSink::DataHubSink(const DataHubConfig& config, SinkContext& ctx,
                         std::unique_ptr<http::Client> client)
    : config_(config),
      ctx_(ctx),
      client_(std::move(client)),
      ledger_(config.ledger_max_records),
      http_metrics_(ctx.metrics, ctx.labels()),
      records_sent_(counter(ctx, "sluice_datahub_records_sent_total", "Records DataHub accepted.")),
      records_failed_(counter(ctx, "sluice_datahub_records_failed_total",
                              "Records named in FailedRecords with a retryable code (resent).")),
      records_rejected_(counter(ctx, "sluice_datahub_records_rejected_total",
                                "Records refused for good (MalformedRecord, a tuple value that "
                                "has no text form of its type, a request refused as invalid).")),
      records_skipped_(counter(ctx, "sluice_datahub_records_skipped_total",
                               "Records of a batch handed back after a Retry that DataHub had "
                               "already accepted: counted as delivered, not sent again.")),
      shard_reloads_(counter(ctx, "sluice_datahub_shard_reloads_total",
                             "Shard listings (GET .../shards) after the first.")),
      halts_(
          counter(ctx, "sluice_datahub_halts_total",
                  "Times the sink stopped sending after Unauthorized, NoPermission or NoSuch*.")),
      ledger_size_(ctx.metrics.gauge("sluice_datahub_ledger_records",
                                     "Accepted records remembered for batches answered Retry.",
                                     ctx.labels())) {
  path_ = path();
  url_ = config_.endpoint + "/projects/" + config_.project + "/topics/" + config_.topic + "/shards";
}

DataHubSink::~DataHubSink() {
  for (http::CompressJob* j : compressing_) j->abandon();  // they free themselves
  client_->close();                                        // no response callback runs after this
  ctx_.loop.cancel_deferred(this);
}

Result<std::unique_ptr<DataHubSink>> DataHubSink::create(const DataHubConfig& config,
                                                         SinkContext& ctx) {
  http::ClientOptions o;
  o.connect_timeout = config.connect_timeout;
  o.request_timeout = config.request_timeout;
  o.max_in_flight = config.max_in_flight;
  o.tls = config.tls;
  o.proxy = config.proxy;
  o.user_agent = "sluice-datahub";
  // A PutRecords answer lists every failed record (80-150 bytes each): it must arrive whole, or the
  // accepted records would be sent again with the failed ones.
  o.max_response_body =
      std::max<std::size_t>(o.max_response_body, config.max_records_per_request * 512 + (64 << 10));
  auto client = http::Client::create(ctx.loop, std::move(o));
  if (!client) return client.error();
  return std::make_unique<DataHubSink>(config, ctx, std::move(*client));
}

std::string DataHubSink::path() const {
  // The path as sent (and signed): whatever follows the host in the endpoint, then the resource.
  const std::size_t host_at = config_.endpoint.find("://") + 3;
  const std::size_t slash = config_.endpoint.find('/', host_at);
  const std::string prefix = slash == std::string::npos ? "" : config_.endpoint.substr(slash);
  return prefix + "/projects/" + config_.project + "/topics/" + config_.topic + "/shards";
}

DataHubSink::Delivery* DataHubSink::find(std::uint64_t id) {
  for (Delivery& d : deliveries_) {
    if (d.id.value == id) return &d;
  }
  return nullptr;
}

void DataHubSink::deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) {
  Delivery& d = deliveries_.emplace_back();
  d.batch = &batch;
  d.id = id;
  d.done = &done;
  if (stopping_) return answer_retry_soon(d, "the sink is stopping");
  if (halted_) return answer_retry_soon(d, "halted: " + halt_reason_);
  if (fences_ > 0) return;  // started once the cancelled deliveries are answered
  start(d);
}

void DataHubSink::answer_retry_soon(Delivery& d, std::string reason) {
  d.answer_retry = true;
  d.retry_reason = std::move(reason);
  ctx_.loop.defer(&DataHubSink::deferred, this, d.id.value);
}

void DataHubSink::deferred(void* self, std::uint64_t id) {
  auto* s = static_cast<DataHubSink*>(self);
  if (Delivery* d = s->find(id)) s->after_answer(*d);
}

void DataHubSink::start(Delivery& d) {
  d.started = true;
  d.tracker.start(*d.batch, &ledger_);
  if (d.tracker.accepted() > 0) {
    records_skipped_.inc(d.tracker.accepted());
    ledger_size_.set(static_cast<std::int64_t>(ledger_.size()));
  }
  if (d.tracker.finished()) {  // everything was accepted before: answer Ok on a later turn
    ctx_.loop.defer(&DataHubSink::deferred, this, d.id.value);
    return;
  }
  send(d);
}

std::string_view DataHubSink::route(const EventView& e) {
  if (config_.shard_key == DataHubConfig::ShardKey::round_robin) {
    const datahub::Shard& s = shards_[rr_++ % shards_.size()];
    return s.id;
  }
  std::string_view key;
  if (config_.shard_key == DataHubConfig::ShardKey::header) {
    key = e.header(config_.shard_key_name).value_or(std::string_view());
  } else {
    for (std::size_t i = 0; i < e.field_count(); ++i) {
      if (e.field(i).key == config_.shard_key_name) {
        key = e.field(i).text;
        break;
      }
    }
  }
  return shards_[datahub::shard_for_hash(shards_, datahub::hash_key(key))].id;
}

void DataHubSink::send(Delivery& d) {
  if (shard_state_ != Shards::ready || shards_.empty()) {
    d.waiting_shards = true;
    if (shard_state_ != Shards::loading) load_shards();
    return;
  }
  const bool tuple = config_.record_type == DataHubConfig::RecordType::tuple;
  std::vector<std::uint32_t> one;
  while (d.tracker.pending() > 0) {
    std::vector<std::uint32_t> sent;
    writer_.begin();
    while (sent.size() < config_.max_records_per_request && d.tracker.pending() > 0 &&
           writer_.size() < config_.max_request_bytes.bytes) {
      one.clear();
      d.tracker.take_pending(1, one);
      if (one.empty()) break;
      const std::uint32_t i = one[0];
      const EventView e = (*d.batch)[i];
      const std::string_view shard = route(e);
      if (tuple) {
        if (!writer_.add_tuple(shard, config_.fields, e, error_)) {
          d.tracker.reject(i, error_);
          records_rejected_.inc();
          continue;
        }
      } else {
        writer_.add_blob(shard, e.body());
      }
      sent.push_back(i);
    }
    if (sent.empty()) continue;
    const std::string& body = writer_.finish();
    if (config_.compression != http::Compression::none) {
      compress(d, std::move(sent), body);
    } else {
      submit(d, std::move(sent), body, body.size(), false);
    }
  }
  if (d.requests == 0) after_answer(d);  // every pending record was rejected while encoding
}

// The body is compressed on the uv threadpool (a 1000-record body takes milliseconds), so the loop
// never waits for zlib. The delivery counts it as a request in flight until it is sent.
void DataHubSink::compress(Delivery& d, std::vector<std::uint32_t> sent, const std::string& body) {
  ++d.requests;
  Delivery* dp = &d;
  std::vector<std::uint32_t> plain_sent = sent;  // for the (unlikely) refusal below
  auto job = std::make_shared<http::CompressJob*>(nullptr);
  Status error;
  http::CompressJob* started = http::CompressJob::start(
      ctx_.loop, config_.compression, config_.compression_level, body,
      [this, dp, job, sent = std::move(sent), body](Status st, std::string&& wire) mutable {
        compressing_.erase(std::find(compressing_.begin(), compressing_.end(), *job));
        --dp->requests;
        if (dp->cancelled || stopping_) {
          dp->tracker.fail_all(sent);  // never sent: pending again, the batch answers Retry
          return after_answer(*dp);
        }
        if (st.ok() && wire.size() < body.size()) {
          submit(*dp, std::move(sent), std::move(wire), body.size(), true);
        } else {  // not smaller (or failed): sent plain, as the SDKs do
          submit(*dp, std::move(sent), std::move(body), body.size(), false);
        }
      },
      error);
  if (started == nullptr) {  // the threadpool refused: send it plain rather than hold the batch
    --d.requests;
    SLUICE_WARN_LIMITED(log_limit_, "datahub {}: cannot compress, sending plain: {}", ctx_.name,
                        error.str());
    return submit(d, std::move(plain_sent), body, body.size(), false);
  }
  *job = started;
  compressing_.push_back(started);
}

void DataHubSink::submit(Delivery& d, std::vector<std::uint32_t> sent, std::string body,
                         std::size_t raw, bool compressed) {
  http::ClientRequest req;
  req.method = http::Method::post;
  req.url = url_;
  std::vector<std::pair<std::string, std::string>> extra;
  if (compressed) {
    extra.emplace_back("Content-Encoding",
                       std::string(http::content_encoding(config_.compression)));
    extra.emplace_back("x-datahub-content-raw-size", std::to_string(raw));
  }
  req.headers = signed_headers(config_, "POST", path_, datahub::rfc1123_date(std::time(nullptr)),
                               std::move(extra));
  http_metrics_.body(raw, body.size());
  req.body = std::move(body);
  ++d.requests;
  Delivery* dp = &d;
  client_->submit(std::move(req),
                  [this, dp, sent = std::move(sent)](http::ClientResponse&& r) mutable {
                    on_put(*dp, sent, std::move(r));
                  });
}

void DataHubSink::on_put(Delivery& d, const std::vector<std::uint32_t>& sent,
                         http::ClientResponse&& r) {
  --d.requests;
  http_metrics_.answered(r);
  std::string body = std::move(r.body);
  if (r.header("content-encoding") == "deflate") {
    // Bounded like the body itself, and a damaged one is said as such.
    std::string plain;
    const Status st =
        http::decompress(http::Compression::deflate, body, plain, 16 * body.size() + (64 << 10));
    if (st.ok()) {
      body.swap(plain);
    } else {
      body = "(a deflate answer that does not inflate: " + st.message() + ")";
    }
  }
  if (r.body_truncated) body = "(an answer longer than " + std::to_string(body.size()) + " bytes)";
  if (r.status >= 200 && r.status < 300) {
    auto failed = datahub::parse_put_result(body);
    if (!failed) {
      // The records' fate is unknown: send them again (at-least-once), as after a lost answer.
      d.tracker.fail_all(sent);
      d.answer_retry = true;
      d.retry_reason = "an answer that is not PutRecords JSON: " + escape_for_log(body, 200);
    } else {
      const datahub::ApplyCounts c = d.tracker.apply(sent, *failed);
      records_sent_.inc(c.accepted);
      records_failed_.inc(c.retry + c.reroute + c.halt);
      records_rejected_.inc(c.rejected);
      if (c.retry + c.reroute + c.halt > 0 && !d.failing) {
        d.failing = true;
        d.first_failure = std::chrono::steady_clock::now();
      }
      if (c.reroute > 0 && shard_state_ != Shards::loading) {
        shard_state_ = Shards::unknown;  // list again before the resend
      }
    }
  } else {
    const auto err = datahub::parse_error(body);
    const std::string what =
        err ? fmt::format("HTTP {} {}: {}", r.status, err->code, escape_for_log(err->message, 200))
            : http::classify(r).reason;
    const datahub::CodeClass cls =
        err ? datahub::classify_code(err->code)
            : (http::classify(r).verdict == http::Verdict::reject ? datahub::CodeClass::reject
                                                                  : datahub::CodeClass::retry);
    // 401, 403 and 404 (a wrong key, project, topic or endpoint path) stop the sink rather than
    // drop the batch: nothing is lost while an operator fixes it.
    if (r.status == 401 || r.status == 403 || r.status == 404 || cls == datahub::CodeClass::halt) {
      d.tracker.fail_all(sent);
      d.answer_retry = true;
      d.retry_reason = what;
      halt(what);
    } else if (cls == datahub::CodeClass::reroute) {
      d.tracker.fail_all(sent);
      if (!d.failing) {
        d.failing = true;
        d.first_failure = std::chrono::steady_clock::now();
      }
      if (shard_state_ != Shards::loading) shard_state_ = Shards::unknown;
    } else if (cls == datahub::CodeClass::reject && r.status >= 400 && r.status < 500 &&
               r.status != 408 && r.status != 429) {
      d.tracker.reject_all(sent, what);
      records_rejected_.inc(sent.size());
    } else {
      d.tracker.fail_all(sent);
      d.answer_retry = true;
      d.retry_reason = what;
    }
  }
  after_answer(d);
}

void DataHubSink::after_answer(Delivery& d) {
  if (d.answered) return;
  if (d.requests > 0) return;  // the rest of its requests answer first
  if (d.cancelled || d.answer_retry || stopping_) return finish(d);
  if (d.tracker.finished()) return finish(d);
  if (d.waiting_shards) return;
  // FailedRecords to resend.
  const auto now = std::chrono::steady_clock::now();
  if (d.failing && now - d.first_failure >= config_.record_retry_timeout) {
    d.answer_retry = true;
    d.retry_reason =
        fmt::format("{} records still failing after {}: {}", d.tracker.pending(),
                    format_duration(config_.record_retry_timeout), d.tracker.last_failure());
    return finish(d);
  }
  // Resend after a backoff; after InvalidShardOperation the resend lists the shards first.
  d.backoff = d.backoff.count() == 0 ? config_.retry_backoff : std::min(d.backoff * 2, kMaxBackoff);
  Delivery* dp = &d;
  if (!d.timer) d.timer = std::make_unique<Timer>(ctx_.loop);  // only batches that resend
  d.timer->start(std::chrono::duration_cast<Duration>(d.backoff), [this, dp] {
    if (dp->cancelled || stopping_ || halted_) {
      if (halted_) {
        dp->answer_retry = true;
        dp->retry_reason = "halted: " + halt_reason_;
      }
      return finish(*dp);
    }
    send(*dp);
  });
}

void DataHubSink::finish(Delivery& d) {
  if (d.answered || d.requests > 0) return;
  if (d.timer) d.timer->stop();
  d.answered = true;
  DeliveryResult result;
  if (!d.started || d.cancelled || d.answer_retry || !d.tracker.finished()) {
    // Remember what DataHub accepted: the group hands these events back and they are skipped.
    if (d.started && d.tracker.accepted() > 0) {
      d.tracker.spill(*d.batch, ledger_);
      ledger_size_.set(static_cast<std::int64_t>(ledger_.size()));
    }
    std::string reason = !d.retry_reason.empty() ? d.retry_reason
                         : d.cancelled           ? std::string("cancelled by the group")
                                                 : std::string("the sink is stopping");
    result = DeliveryResult::retry(std::move(reason));
    http_metrics_.retries.inc();
  } else if (!d.tracker.rejected().empty()) {
    std::vector<std::uint32_t> rejected = d.tracker.rejected();
    std::sort(rejected.begin(), rejected.end());
    result = DeliveryResult::reject(d.tracker.reject_reason(), std::move(rejected));
    http_metrics_.rejects.inc(result.rejected.size());
    SLUICE_WARN_LIMITED(log_limit_, "datahub {}: {} records rejected: {}", ctx_.name,
                        result.rejected.size(), result.reason);
  }
  const bool was_cancelled = d.cancelled;
  DeliveryListener* done = d.done;
  const DeliveryId id = d.id;
  release(d);
  if (was_cancelled && --fences_ == 0) {
    // Deliveries that arrived while a cancelled one was still out start now: the records it
    // accepted are in the ledger by now, so none of them is sent twice.
    std::vector<std::uint64_t> waiting;
    for (Delivery& w : deliveries_) {
      if (!w.started && !w.answered && !w.answer_retry) waiting.push_back(w.id.value);
    }
    for (std::uint64_t wid : waiting) {
      Delivery* w = find(wid);
      if (w == nullptr || w->started || w->answered) continue;
      if (stopping_ || halted_) {
        answer_retry_soon(*w, stopping_ ? "the sink is stopping" : "halted: " + halt_reason_);
      } else {
        start(*w);
      }
    }
  }
  done->on_delivered(id, result);
  check_stopped();
}

void DataHubSink::release(Delivery& d) {
  for (auto it = deliveries_.begin(); it != deliveries_.end(); ++it) {
    if (&*it == &d) {
      deliveries_.erase(it);
      return;
    }
  }
}

void DataHubSink::cancel(DeliveryId id) {
  Delivery* d = find(id.value);
  if (d == nullptr || d->answered || d->cancelled) return;
  d->cancelled = true;
  ++fences_;
  if (d->timer) d->timer->stop();
  if (d->requests == 0) ctx_.loop.defer(&DataHubSink::deferred, this, id.value);
}

void DataHubSink::halt(const std::string& why) {
  if (!halted_) {
    halts_.inc();
    spdlog::error("datahub {}: stops sending until DataHub answers its probe: {}", ctx_.name, why);
  }
  halted_ = true;
  halt_reason_ = why;
}

void DataHubSink::load_shards() {
  if (shard_state_ == Shards::loading) return;
  if (listed_once_) shard_reloads_.inc();
  shard_state_ = Shards::loading;
  http::ClientRequest req;
  req.method = http::Method::get;
  req.url = url_;
  req.headers =
      signed_headers(config_, "GET", path_, datahub::rfc1123_date(std::time(nullptr)), {});
  client_->submit(std::move(req), [this](http::ClientResponse&& r) { on_shards(std::move(r)); });
}

void DataHubSink::on_shards(http::ClientResponse&& r) {
  std::string failure;
  http_metrics_.answered(r);
  if (r.status >= 200 && r.status < 300) {
    auto all = datahub::parse_shards(r.body);
    if (!all) {
      failure = "listing shards: not a shard list: " + escape_for_log(r.body, 200);
    } else {
      shards_ = datahub::active_shards(*all);
      if (shards_.empty()) failure = "listing shards: no ACTIVE shard";
    }
  } else {
    const auto err = datahub::parse_error(r.body);
    failure = "listing shards: " + (err ? fmt::format("HTTP {} {}: {}", r.status, err->code,
                                                      escape_for_log(err->message, 200))
                                        : http::classify(r).reason);
    if (r.status == 401 || r.status == 403 || r.status == 404 ||
        (err && datahub::classify_code(err->code) == datahub::CodeClass::halt)) {
      halt(failure);
    }
  }
  shard_state_ = failure.empty() ? Shards::ready : Shards::unknown;
  if (failure.empty()) {
    listed_once_ = true;
    if (halted_) spdlog::info("datahub {}: DataHub answers again, sending resumes", ctx_.name);
    halted_ = false;
  } else {
    SLUICE_WARN_LIMITED(log_limit_, "datahub {}: {}", ctx_.name, failure);
  }
  // A probe waits for this listing too.
  if (probe_ != nullptr && probe_request_ == 0) {
    ProbeListener* p = std::exchange(probe_, nullptr);
    p->on_probed(*this, failure.empty());
  }
  std::vector<std::uint64_t> waiting;
  for (Delivery& d : deliveries_) {
    if (d.waiting_shards) waiting.push_back(d.id.value);
  }
  for (std::uint64_t id : waiting) {
    Delivery* d = find(id);
    if (d == nullptr) continue;
    d->waiting_shards = false;
    if (!failure.empty() || d->cancelled || stopping_) {
      if (!failure.empty()) {
        d->answer_retry = true;
        d->retry_reason = failure;
      }
      finish(*d);
    } else {
      send(*d);
    }
  }
  check_stopped();
}

bool DataHubSink::probe(ProbeListener& listener) {
  if (stopping_ || probe_ != nullptr) return false;
  probe_ = &listener;
  if (shard_state_ == Shards::loading) {
    probe_request_ = 0;  // the listing in flight answers it
    return true;
  }
  shard_state_ = Shards::loading;
  if (listed_once_) shard_reloads_.inc();
  http::ClientRequest req;
  req.method = http::Method::get;
  req.url = url_;
  req.headers =
      signed_headers(config_, "GET", path_, datahub::rfc1123_date(std::time(nullptr)), {});
  probe_request_ = 1;
  probe_request_ = client_->submit(std::move(req), [this](http::ClientResponse&& r) {
    probe_request_ = 0;
    on_shards(std::move(r));
  });
  return true;
}

void DataHubSink::stop(StopCallback on_stopped) {
  stopping_ = true;
  on_stopped_ = std::move(on_stopped);
  if (probe_ != nullptr && probe_request_ != 0) client_->cancel(probe_request_);
  std::vector<std::uint64_t> idle;
  for (Delivery& d : deliveries_) {
    if (d.requests == 0 && !d.waiting_shards) idle.push_back(d.id.value);
  }
  for (std::uint64_t id : idle) ctx_.loop.defer(&DataHubSink::deferred, this, id);
  ctx_.loop.defer(
      [](void* self, std::uint64_t) { static_cast<DataHubSink*>(self)->check_stopped(); }, this, 0);
}

void DataHubSink::check_stopped() {
  if (!stopping_ || !on_stopped_ || !deliveries_.empty() || probe_ != nullptr ||
      shard_state_ == Shards::loading) {
    return;
  }
  auto cb = std::move(on_stopped_);
  on_stopped_ = nullptr;
  cb();
}

}  // namespace sluice::sinks

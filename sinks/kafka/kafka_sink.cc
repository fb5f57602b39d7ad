#include "sinks/kafka/kafka_sink.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "lib/core/assert.h"

namespace sluice::sinks {

bool EventTemplate::parse(std::string_view text, std::string& error) {
  text_ = std::string(text);
  parts_.clear();
  std::string literal;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '{') {
      literal += text[i];
      continue;
    }
    const auto close = text.find('}', i);
    if (close == std::string_view::npos) {
      error = fmt::format("unclosed '{{' at offset {} in \"{}\"", i, text);
      return false;
    }
    const std::string_view ref = text.substr(i + 1, close - i - 1);
    Kind kind;
    std::string_view name;
    if (ref.rfind("header.", 0) == 0) {
      kind = Kind::header;
      name = ref.substr(7);
    } else if (ref.rfind("field.", 0) == 0) {
      kind = Kind::field;
      name = ref.substr(6);
    } else {
      error = fmt::format(
          "unknown placeholder '{{{}}}' in \"{}\" (use {{header.NAME}} or {{field.NAME}})", ref,
          text);
      return false;
    }
    if (name.empty()) {
      error = fmt::format("empty name in '{{{}}}' in \"{}\"", ref, text);
      return false;
    }
    if (!literal.empty()) parts_.push_back({Kind::text, std::move(literal)});
    literal.clear();
    parts_.push_back({kind, std::string(name)});
    i = close;
  }
  if (!literal.empty()) parts_.push_back({Kind::text, std::move(literal)});
  return true;
}

void EventTemplate::render(const EventView& e, std::string& out) const {
  for (const Part& p : parts_) {
    switch (p.kind) {
      case Kind::text:
        out += p.value;
        break;
      case Kind::header:
        if (auto v = e.header(p.value)) out += *v;
        break;
      case Kind::field:
        for (std::size_t i = 0; i < e.field_count(); ++i) {
          if (e.field(i).key == p.value) {
            out += e.field(i).text;
            break;
          }
        }
        break;
    }
  }
}

namespace {

std::string to_ms(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

// The value of a [librdkafka] entry as librdkafka's configuration wants it: a string.
std::optional<std::string> property_text(const toml::node& n) {
  if (const auto* s = n.as_string()) return s->get();
  if (const auto* i = n.as_integer()) return std::to_string(i->get());
  if (const auto* b = n.as_boolean()) return b->get() ? "true" : "false";
  if (const auto* f = n.as_floating_point()) return fmt::format("{}", f->get());
  return std::nullopt;
}

}  // namespace

std::optional<KafkaConfig> KafkaConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  KafkaConfig c;
  StringList brokers;
  if (node.required("brokers", brokers, errors)) {
    c.brokers = brokers.items;
    if (c.brokers.empty()) node.error_at("brokers", errors, "must name at least one broker");
  }
  std::string topic;
  if (node.required("topic", topic, errors)) {
    std::string err;
    if (topic.empty()) {
      node.error_at("topic", errors, "must not be empty");
    } else if (!c.topic.parse(topic, err)) {
      node.error_at("topic", errors, err);
    }
  }
  std::string key;
  if (node.optional("key", key, errors) && !key.empty()) {
    if (key.rfind("header.", 0) == 0 && key.size() > 7) {
      c.key_from = KeyFrom::header;
      c.key_name = key.substr(7);
    } else if (key.rfind("field.", 0) == 0 && key.size() > 6) {
      c.key_from = KeyFrom::field;
      c.key_name = key.substr(6);
    } else {
      node.error_at("key", errors,
                    fmt::format("\"{}\" is not \"header.NAME\" or \"field.NAME\"", key));
    }
  }
  node.optional("compression", c.compression, errors,
                OneOf{{"none", "gzip", "snappy", "lz4", "zstd"}});
  node.optional("acks", c.acks, errors, OneOf{{"all", "1", "0"}});
  node.optional("idempotence", c.idempotence, errors);
  if (c.idempotence && c.acks != "all" && node.has("acks")) {
    node.error_at("acks", errors, "idempotence = true needs acks = \"all\"");
  }
  using std::chrono::milliseconds;
  node.optional("linger", c.linger, errors,
                InRange<std::chrono::nanoseconds>{milliseconds(0), milliseconds(60'000)});
  node.optional("batch_messages", c.batch_messages, errors, InRange<std::uint32_t>{1, 1'000'000});
  node.optional("message_timeout", c.message_timeout, errors,
                InRange<std::chrono::nanoseconds>{milliseconds(1000), std::chrono::hours(1)});
  node.optional("flush_timeout", c.flush_timeout, errors,
                InRange<std::chrono::nanoseconds>{milliseconds(0), std::chrono::minutes(10)});
  node.optional("id_header", c.id_header, errors);

  std::string joined;
  for (const auto& b : c.brokers) joined += (joined.empty() ? "" : ",") + b;
  c.properties = {{"bootstrap.servers", joined},
                  {"compression.codec", c.compression},
                  {"acks", c.acks},
                  {"enable.idempotence", c.idempotence ? "true" : "false"},
                  {"linger.ms", to_ms(c.linger)},
                  {"batch.num.messages", std::to_string(c.batch_messages)},
                  {"message.timeout.ms", to_ms(c.message_timeout)},
                  // Notice a broker that comes back within about a second (failback), not ten.
                  {"reconnect.backoff.max.ms", "1000"}};
  rd_kafka_conf_t* probe = rd_kafka_conf_new();
  char errstr[512];
  for (const auto& [k, v] : c.properties) {
    if (rd_kafka_conf_set(probe, k.c_str(), v.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      node.error(errors, fmt::format("librdkafka refused {}={}: {}", k, v, errstr));
    }
  }
  if (auto extra = node.child("librdkafka", errors)) {
    for (const auto& [k, v] : extra->table()) {
      const std::string name(k.str());
      extra->mark_known(name);
      auto text = property_text(v);
      if (!text) {
        extra->error_at(name, errors, "expected a string, number or boolean");
        continue;
      }
      if (rd_kafka_conf_set(probe, name.c_str(), text->c_str(), errstr, sizeof errstr) !=
          RD_KAFKA_CONF_OK) {
        extra->error_at(name, errors, errstr);
        continue;
      }
      c.properties.emplace_back(name, *text);
    }
  }
  rd_kafka_conf_destroy(probe);
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{std::move(c)} : std::nullopt;
}

Result<rd_kafka_t*> KafkaSink::new_producer(const KafkaConfig& config, KafkaSink** opaque) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char errstr[512];
  for (const auto& [k, v] : config.properties) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Status(Errc::config, fmt::format("{}={}: {}", k, v, errstr));
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, &KafkaSink::on_dr);
  rd_kafka_conf_set_error_cb(conf, &KafkaSink::on_error);
  rd_kafka_conf_set_log_cb(conf, &KafkaSink::on_log);
  rd_kafka_conf_set_opaque(conf, opaque);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status(Errc::config, fmt::format("cannot create the Kafka producer: {}", errstr));
  }
  return rk;  // rd_kafka_new() owns `conf` now
}

Result<std::unique_ptr<KafkaSink>> KafkaSink::create(const KafkaConfig& config, SinkContext& ctx) {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return Status::from_errno(errno, "pipe2");
  // The sink is the opaque of every callback; it is created right below with this handle.
  auto holder = std::make_unique<KafkaSink*>(nullptr);
  Result<rd_kafka_t*> rk = new_producer(config, holder.get());
  if (!rk) {
    ::close(fds[0]);
    ::close(fds[1]);
    return rk.error();
  }
  auto sink = std::make_unique<KafkaSink>(config, ctx, *rk, fds[0], fds[1]);
  *holder = sink.get();
  sink->opaque_holder_ = std::move(holder);
  return sink;
}

// A metadata request on the threadpool. The work itself touches only `rk`, so that a sink
// destroyed while it runs (without stop()) only has to wait for `finished` and detach itself.
struct KafkaSink::ProbeWork {
  uv_work_t req{};
  rd_kafka_t* rk = nullptr;
  KafkaSink* sink = nullptr;  // nullptr once the sink is gone: the answer is dropped
  ProbeListener* listener = nullptr;
  bool healthy = false;
  std::atomic<bool> finished{false};
};

KafkaSink::KafkaSink(const KafkaConfig& config, SinkContext& ctx, rd_kafka_t* rk, int pipe_r,
                     int pipe_w)
    : config_(config),
      ctx_(ctx),
      rk_(rk),
      pipe_r_(pipe_r),
      pipe_w_(pipe_w),
      tick_(ctx.loop),
      stop_timer_(ctx.loop),
      produced_(ctx.metrics.counter("sluice_kafka_produced_messages_total",
                                    "Messages handed to librdkafka.", ctx.labels())),
      queue_full_(ctx.metrics.counter(
          "sluice_kafka_queue_full_total",
          "Times librdkafka's queue was full (the sink waited for reports).", ctx.labels())),
      errors_(ctx.metrics.counter("sluice_kafka_errors_total",
                                  "Failed messages (transient or permanent).", ctx.labels())),
      brokers_down_(ctx.metrics.counter("sluice_kafka_all_brokers_down_total",
                                        "Times librdkafka reported every broker down.",
                                        ctx.labels())),
      restarts_(ctx.metrics.counter(
          "sluice_kafka_producer_restarts_total",
          "Producers destroyed and built again after a fatal librdkafka error.", ctx.labels())) {
  attach();
  poll_ = new uv_poll_t{};
  uv_poll_init(ctx.loop.uv(), poll_, pipe_r_);
  poll_->data = this;
  uv_poll_start(poll_, UV_READABLE, [](uv_poll_t* p, int, int) {
    auto* self = static_cast<KafkaSink*>(p->data);
    char buf[256];
    while (::read(self->pipe_r_, buf, sizeof buf) > 0) {
    }
    self->serve();
  });
  // A safety net for wake-ups librdkafka coalesced, the clock for queue-full retries, and for
  // another try at a producer that restart() could not replace yet.
  tick_.start(
      std::chrono::milliseconds(100),
      [this] {
        if (fatal_) restart();
        serve();
      },
      std::chrono::milliseconds(100));
}

// Points the producer's main queue at our pipe, and opens the one topic handle of a fixed topic.
void KafkaSink::attach() {
  rd_kafka_queue_t* main_queue = rd_kafka_queue_get_main(rk_);
  rd_kafka_queue_io_event_enable(main_queue, pipe_w_, "r", 1);
  rd_kafka_queue_destroy(main_queue);
  if (config_.topic.fixed()) topic_for(config_.topic.text());
}

// Destroys `rk` and what belongs to it (topic handles, its queue's wake-ups). What it still holds
// is purged, and the reports of the purged messages are served before it goes.
void KafkaSink::retire(rd_kafka_t* rk) {
  rd_kafka_queue_t* main_queue = rd_kafka_queue_get_main(rk);
  rd_kafka_queue_io_event_enable(main_queue, -1, nullptr, 0);
  rd_kafka_queue_destroy(main_queue);
  rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  while (rd_kafka_poll(rk, 0) > 0) {
  }
  for (auto& [name, rkt] : topics_) rd_kafka_topic_destroy(rkt);
  topics_.clear();
  rd_kafka_destroy(rk);
}

KafkaSink::~KafkaSink() {
  ctx_.loop.cancel_deferred(this);
  if (probe_ != nullptr) {
    // Destroyed without stop() while a probe runs: it uses rk_, so wait for it (at most the
    // metadata timeout), and its completion on the loop must not reach this sink.
    while (!probe_->finished.load(std::memory_order_acquire)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    probe_->sink = nullptr;
    probe_ = nullptr;
  }
  tick_.stop();
  if (poll_ != nullptr) {
    poll_->data = nullptr;
    uv_poll_stop(poll_);
    close_and_delete(poll_);
  }
  // The reports served while retiring must not reach the listeners of a destroyed sink.
  if (opaque_holder_ != nullptr) *opaque_holder_ = nullptr;
  retire(rk_);
  ::close(pipe_r_);
  ::close(pipe_w_);
}

rd_kafka_topic_t* KafkaSink::topic_for(const std::string& name) {
  auto it = topics_.find(name);
  if (it != topics_.end()) return it->second;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_, name.c_str(), nullptr);
  topics_.emplace(name, rkt);
  return rkt;
}

bool KafkaSink::permanent(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
      return true;
    default:
      return false;
  }
}

void KafkaSink::deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) {
  std::unique_ptr<Record> rec;
  if (!free_.empty()) {
    rec = std::move(free_.back());
    free_.pop_back();
  } else {
    rec = std::make_unique<Record>();
  }
  Record& r = *rec;
  r.id = id;
  r.done = &done;
  r.batch = &batch;
  r.next = 0;
  r.outstanding = 0;
  r.answered = r.failed = r.blocked = false;
  r.reason.clear();
  r.rejected.clear();
  r.refs.resize(batch.size());
  for (std::uint32_t i = 0; i < batch.size(); ++i) r.refs[i] = {&r, i};
  records_.push_back(std::move(rec));
  if (fatal_) {
    // The producer refuses everything until restart() replaced it.
    r.failed = true;
    r.reason = "the Kafka producer is being recreated after a fatal error";
  } else if (down_) {
    // librdkafka would only queue the batch until a timeout: let the group fail over now.
    r.failed = true;
    r.reason = "all brokers are down";
  } else {
    produce(r);
  }
  // Never answer inside deliver(): a batch that failed or settled without a report (all rejected
  // locally, or nothing produced) is answered on the next loop turn.
  if (r.failed || (r.outstanding == 0 && !r.blocked)) {
    ctx_.loop.defer(&KafkaSink::finish_task, this, id.value);
  }
}

void KafkaSink::finish_task(void* self, std::uint64_t delivery) {
  // By id, not by pointer: the record may have been answered and reused meanwhile.
  auto* sink = static_cast<KafkaSink*>(self);
  for (auto& rec : sink->records_) {
    if (rec->id.value != delivery) continue;
    Record& r = *rec;
    if (r.failed && !r.answered) sink->answer(r, DeliveryResult::retry(r.reason));
    sink->maybe_finish(r);
    return;
  }
}

void KafkaSink::produce(Record& r) {
  const Batch& batch = *r.batch;
  const std::uint32_t n = static_cast<std::uint32_t>(batch.size());
  r.blocked = false;
  while (r.next < n && !r.failed) {
    const EventView e = batch[r.next];
    rd_kafka_topic_t* rkt;
    scratch_.clear();
    if (config_.topic.fixed()) {
      rkt = topics_.begin()->second;
    } else {
      config_.topic.render(e, scratch_);
      if (scratch_.empty()) {
        r.rejected.push_back(r.next);
        r.reason = fmt::format("topic template \"{}\" renders empty", config_.topic.text());
        errors_.inc();
        ++r.next;
        continue;
      }
      rkt = topic_for(scratch_);
      scratch_.clear();
    }
    // Header names must be NUL-terminated: lay them out in scratch_ first, then point at them.
    name_offsets_.clear();
    for (std::size_t h = 0; h < e.header_count(); ++h) {
      name_offsets_.push_back(scratch_.size());
      scratch_ += e.header(h).key;
      scratch_ += '\0';
    }
    char idbuf[17];
    std::size_t id_offset = 0;
    if (!config_.id_header.empty()) {
      std::snprintf(idbuf, sizeof idbuf, "%016llx", static_cast<unsigned long long>(e.id()));
      id_offset = scratch_.size();
      scratch_ += config_.id_header;
      scratch_ += '\0';
    }
    vus_.clear();
    auto vu = [&](rd_kafka_vtype_t t) -> rd_kafka_vu_t& {
      vus_.emplace_back();
      vus_.back().vtype = t;
      return vus_.back();
    };
    vu(RD_KAFKA_VTYPE_RKT).u.rkt = rkt;
    const std::string_view body = e.body();
    auto& value = vu(RD_KAFKA_VTYPE_VALUE);
    value.u.mem.ptr = const_cast<char*>(body.data());
    value.u.mem.size = body.size();
    vu(RD_KAFKA_VTYPE_MSGFLAGS).u.i = RD_KAFKA_MSG_F_COPY;
    vu(RD_KAFKA_VTYPE_OPAQUE).u.ptr = &r.refs[r.next];
    vu(RD_KAFKA_VTYPE_TIMESTAMP).u.i64 = e.timestamp_ns() / 1'000'000;
    if (config_.key_from != KafkaConfig::KeyFrom::none) {
      std::optional<std::string_view> key;
      if (config_.key_from == KafkaConfig::KeyFrom::header) {
        key = e.header(config_.key_name);
      } else {
        for (std::size_t f = 0; f < e.field_count(); ++f) {
          if (e.field(f).key == config_.key_name) key = e.field(f).text;
        }
      }
      if (key) {
        auto& k = vu(RD_KAFKA_VTYPE_KEY);
        k.u.mem.ptr = const_cast<char*>(key->data());
        k.u.mem.size = key->size();
      }
    }
    for (std::size_t h = 0; h < e.header_count(); ++h) {
      auto& hv = vu(RD_KAFKA_VTYPE_HEADER);
      hv.u.header.name = scratch_.data() + name_offsets_[h];
      hv.u.header.val = e.header(h).value.data();
      hv.u.header.size = static_cast<ssize_t>(e.header(h).value.size());
    }
    if (!config_.id_header.empty()) {
      auto& hv = vu(RD_KAFKA_VTYPE_HEADER);
      hv.u.header.name = scratch_.data() + id_offset;
      hv.u.header.val = idbuf;
      hv.u.header.size = 16;
    }
    rd_kafka_error_t* error = rd_kafka_produceva(rk_, vus_.data(), vus_.size());
    if (error == nullptr) {
      ++r.outstanding;
      ++r.next;
      produced_.inc();
      continue;
    }
    const rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    std::string text = rd_kafka_error_string(error);
    rd_kafka_error_destroy(error);
    if (code == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      // Wait for delivery reports to free space: serve() produces the rest. No spinning.
      queue_full_.inc();
      r.blocked = true;
      return;
    }
    errors_.inc();
    if (permanent(code)) {
      r.rejected.push_back(r.next);
      r.reason = std::move(text);
      ++r.next;
      continue;
    }
    r.failed = true;
    r.reason = std::move(text);
  }
}

void KafkaSink::answer(Record& r, DeliveryResult result) {
  r.answered = true;
  r.done->on_delivered(r.id, result);
}

void KafkaSink::maybe_finish(Record& r) {
  if (r.outstanding > 0 || r.blocked || (!r.failed && r.next < r.batch->size())) return;
  if (!r.answered) {
    if (r.failed) {
      answer(r, DeliveryResult::retry(r.reason));
    } else if (!r.rejected.empty()) {
      std::sort(r.rejected.begin(), r.rejected.end());
      answer(r, DeliveryResult::reject(r.reason, r.rejected));
    } else {
      answer(r, DeliveryResult::ok());
    }
  }
  release(r);
}

void KafkaSink::release(Record& r) {
  auto it =
      std::find_if(records_.begin(), records_.end(), [&](const auto& p) { return p.get() == &r; });
  if (it == records_.end()) return;
  free_.push_back(std::move(*it));
  records_.erase(it);
  if (stopping_) check_stopped();
}

void KafkaSink::on_dr(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto* ref = static_cast<MsgRef*>(m->_private);
  Record& r = *ref->record;
  --r.outstanding;
  KafkaSink* self = *static_cast<KafkaSink**>(opaque);
  if (self == nullptr) return;  // served by the destructor
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    self->down_ = false;  // a broker took it: the cluster is back
  } else {
    self->errors_.inc();
    SLUICE_WARN_LIMITED(self->error_log_, "kafka {}: message failed: {}", self->ctx_.name,
                        rd_kafka_err2str(m->err));
    if (permanent(m->err)) {
      r.rejected.push_back(ref->index);
      r.reason = rd_kafka_err2str(m->err);
    } else if (!r.failed) {
      r.failed = true;
      r.reason = rd_kafka_err2str(m->err);
    }
  }
}

void KafkaSink::on_error(rd_kafka_t*, int err, const char* reason, void* opaque) {
  KafkaSink* self = *static_cast<KafkaSink**>(opaque);
  if (self == nullptr) return;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    self->on_fatal();
    return;
  }
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    self->brokers_down_.inc();
    SLUICE_WARN_LIMITED(self->error_log_, "kafka {}: all brokers are down: {}", self->ctx_.name,
                        reason);
    self->down_ = true;
    self->fail_all("all brokers are down");
    return;
  }
  SLUICE_WARN_LIMITED(self->error_log_, "kafka {}: {}: {}", self->ctx_.name,
                      rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)), reason);
}

// librdkafka's own log lines (e.g. "FAIL|...: Connect to ... failed"), at their syslog level.
// Called on librdkafka's threads; spdlog's loggers are thread-safe.
void KafkaSink::on_log(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  const char* name = rk != nullptr ? rd_kafka_name(rk) : "kafka";
  spdlog::level::level_enum l = spdlog::level::debug;
  if (level <= 3) {
    l = spdlog::level::err;
  } else if (level == 4) {
    l = spdlog::level::warn;
  } else if (level <= 6) {
    l = spdlog::level::info;
  }
  spdlog::log(l, "librdkafka {}: {}: {}", name, fac, buf);
}

// Answers Retry for every unanswered batch now, and drops what librdkafka still queues for them,
// so that the group can fail over at once instead of waiting for message timeouts.
void KafkaSink::fail_all(std::string_view reason) {
  // Answers may make the group deliver again (to this or another sink): collect first.
  std::vector<Record*> open;
  for (auto& rec : records_) {
    if (!rec->answered) open.push_back(rec.get());
  }
  for (Record* r : open) {
    r->failed = true;
    r->reason = std::string(reason);
    r->blocked = false;
  }
  if (!open.empty()) rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
  for (Record* r : open) answer(*r, DeliveryResult::retry(r->reason));
}

// Called from rd_kafka_poll() on the loop thread, so the producer cannot be destroyed here: that
// waits for the next loop turn. Reported once per producer (librdkafka raises it once).
void KafkaSink::on_fatal() {
  if (fatal_) return;
  char errstr[512];
  const rd_kafka_resp_err_t cause = rd_kafka_fatal_error(rk_, errstr, sizeof errstr);
  spdlog::error("kafka {}: fatal producer error {}: {}; recreating the producer", ctx_.name,
                rd_kafka_err2name(cause), errstr);
  fatal_ = true;  // first: an answer below may deliver again at once
  fail_all(fmt::format("fatal Kafka producer error {}", rd_kafka_err2name(cause)));
  ctx_.loop.defer(&KafkaSink::restart_task, this, 0);
}

void KafkaSink::restart_task(void* self, std::uint64_t) {
  static_cast<KafkaSink*>(self)->restart();
}

// Replaces the fatal producer with a new one built from the same configuration. Every batch that
// used the old one was answered Retry by on_fatal(); only their reports are still counted.
void KafkaSink::restart() {
  if (!fatal_) return;
  if (probe_ != nullptr) return;  // the probe uses the old producer: the tick tries again
  Result<rd_kafka_t*> fresh = new_producer(config_, opaque_holder_.get());
  if (!fresh) {
    SLUICE_WARN_LIMITED(restart_log_, "kafka {}: {} (trying again)", ctx_.name,
                        fresh.error().message());
    return;
  }
  retire(rk_);
  // The old producer's reports went with it: what it still held answers nothing now.
  for (auto& rec : records_) {
    SLUICE_ASSERT(rec->answered || rec->outstanding == 0);
    rec->outstanding = 0;
  }
  rk_ = *fresh;
  attach();
  fatal_ = false;
  restarts_.inc();
  spdlog::info("kafka {}: producer recreated after a fatal error", ctx_.name);
  serve();
}

void KafkaSink::serve() {
  while (rd_kafka_poll(rk_, 0) > 0) {
  }
  // Settle records whose reports all arrived; oldest first so that answers keep delivery order.
  for (std::size_t i = 0; i < records_.size();) {
    Record& r = *records_[i];
    const std::size_t before = records_.size();
    maybe_finish(r);
    if (records_.size() == before) ++i;
  }
  retry_blocked();
}

void KafkaSink::retry_blocked() {
  for (std::size_t i = 0; i < records_.size(); ++i) {
    Record& r = *records_[i];
    if (!r.blocked) continue;
    produce(r);
    // Not inside deliver() here: a failure is answered at once.
    if (r.failed && !r.answered) answer(r, DeliveryResult::retry(r.reason));
    if (r.blocked) return;  // still full: keep the order of batches
  }
}

void KafkaSink::cancel(DeliveryId id) {
  for (auto& rec : records_) {
    if (rec->id == id && !rec->answered) {
      rec->blocked = false;
      rec->failed = true;
      rec->reason = "cancelled by the sink group";
      // In flight too: a broker that does not answer would hold the batch for message_timeout
      // (30 s), past shutdown_timeout. The group redelivers it, so at worst it is duplicated.
      rd_kafka_purge(
          rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
      return;
    }
  }
}

bool KafkaSink::probe(ProbeListener& listener) {
  // A fatal producer is replaced on the next turn: probe the new one, with a later batch.
  if (probe_ != nullptr || stopping_ || fatal_) return false;
  auto* w = new ProbeWork{};
  w->req.data = w;
  w->rk = rk_;
  w->sink = this;
  w->listener = &listener;
  probe_ = w;
  uv_queue_work(
      ctx_.loop.uv(), &w->req,
      [](uv_work_t* req) {
        auto* work = static_cast<ProbeWork*>(req->data);
        const rd_kafka_metadata_t* md = nullptr;
        // Blocking, hence on the threadpool: asks the cluster for its brokers and topics.
        const rd_kafka_resp_err_t err = rd_kafka_metadata(work->rk, 0, nullptr, &md, 2000);
        work->healthy = err == RD_KAFKA_RESP_ERR_NO_ERROR && md != nullptr && md->broker_cnt > 0;
        if (md != nullptr) rd_kafka_metadata_destroy(md);
        work->finished.store(true, std::memory_order_release);
      },
      [](uv_work_t* req, int) {
        std::unique_ptr<ProbeWork> work(static_cast<ProbeWork*>(req->data));
        KafkaSink* sink = work->sink;
        if (sink == nullptr) return;
        sink->probe_ = nullptr;
        if (work->healthy) sink->down_ = false;
        work->listener->on_probed(*sink, work->healthy);
        if (sink->stopping_) sink->check_stopped();
      });
  return true;
}

void KafkaSink::raise_test_fatal_error(rd_kafka_resp_err_t err) {
  rd_kafka_test_fatal_error(rk_, err, "raised by a test");
}

void KafkaSink::stop(StopCallback on_stopped) {
  stopping_ = true;
  on_stopped_ = std::move(on_stopped);
  stop_deadline_ = std::chrono::steady_clock::now() + config_.flush_timeout;
  stop_timer_.start(
      std::chrono::milliseconds(10), [this] { check_stopped(); }, std::chrono::milliseconds(10));
}

// Stopped once every record has its reports (what is unanswered stays in the channel) and no
// probe runs; past flush_timeout, whatever librdkafka still holds is purged.
void KafkaSink::check_stopped() {
  if (!on_stopped_) return;
  serve();
  // serve() settles records, and the last release() runs check_stopped() itself.
  if (!on_stopped_) return;
  if (!purged_ && std::chrono::steady_clock::now() >= stop_deadline_) {
    purged_ = true;
    fail_all("flush_timeout passed at stop");
    rd_kafka_purge(
        rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
  }
  if (!records_.empty() || probe_ != nullptr) return;
  stop_timer_.stop();
  auto cb = std::move(on_stopped_);
  on_stopped_ = nullptr;
  cb();
}

}  // namespace sluice::sinks

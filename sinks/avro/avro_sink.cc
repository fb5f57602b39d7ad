#include "sinks/avro/avro_sink.h"

#include <spdlog/spdlog.h>

#include "lib/net/tcp_server.h"

namespace sluice::sinks {

namespace {

// Flume 1.10's layering: the zlib stream wraps the TLS records (one stream per direction and
// connection, as Netty's ZlibEncoder/ZlibDecoder sit below its SslHandler).
class ZlibOutside final : public net::WireCodec {
 public:
  explicit ZlibOutside(int level) : deflate_(level), inflate_(std::size_t{64} << 20) {}
  void encode(std::string_view in, std::string& out) override { deflate_.write(in, out); }
  Status decode(std::string_view in, std::string& out) override { return inflate_.write(in, out); }

 private:
  codec::Deflater deflate_;
  codec::Inflater inflate_;
};

net::TcpClientOptions client_options(const AvroSinkConfig& c,
                                     std::shared_ptr<tls::TlsContext> tls) {
  net::TcpClientOptions o;
  o.address = c.address;
  o.connect_timeout =
      std::max(std::chrono::milliseconds(1),
               std::chrono::duration_cast<std::chrono::milliseconds>(c.connect_timeout));
  o.write_timeout = std::chrono::milliseconds(0);  // request_timeout bounds write and answer
  o.read_buffer_bytes = 64 * 1024;
  o.server_name = c.tls.server_name;
  if (tls && c.deflate && c.zlib_outside_tls) {
    const int level = c.compression_level;
    o.wire_codec = [level] { return std::make_unique<ZlibOutside>(level); };
  }
  o.tls = std::move(tls);
  return o;
}

}  // namespace

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
      connects_(ctx.metrics.counter("sluice_avro_sink_connects_total",
                                    "Connections opened to the Avro server.", ctx.labels())),
      failures_(ctx.metrics.counter(
          "sluice_avro_sink_failures_total",
          "Requests that failed: FAILED answers, errors, timeouts, lost connections.",
          ctx.labels())),
      tls_errors_(tls::handshake_errors(ctx.metrics, ctx.labels())),
      client_(ctx.loop, client_options(config, std::move(tls)), *this, &tls_errors_),
      request_timer_(ctx.loop),
      stop_timer_(ctx.loop) {}

AvroSink::~AvroSink() {
  // Whoever listened is gone: nothing is answered from here on, and the client calls nothing.
  ctx_.loop.cancel_deferred(this);
  on_stopped_ = nullptr;
  client_.close();
}

void AvroSink::deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) {
  queue_.push_back({&batch, id, &done});
  pump();
}

void AvroSink::pump() {
  if (in_flight_ || queue_.empty()) return;
  // Every batch tries the server at once (no reconnect backoff: the group paces retries).
  if (!client_.connected()) return client_.connect_now();
  send_front();
}

void AvroSink::on_connected() {
  connects_.inc();
  handshaken_ = false;
  decoder_ = avro::FrameDecoder();
  inflate_.reset();
  deflate_.reset();
  if (config_.deflate && !(config_.tls.enabled && config_.zlib_outside_tls)) {
    inflate_ = std::make_unique<codec::Inflater>(std::size_t{64} << 20);
    deflate_ = std::make_unique<codec::Deflater>(config_.compression_level);
  }
  if (probe_ != nullptr) {
    ProbeListener* l = probe_;
    probe_ = nullptr;
    l->on_probed(*this, true);
  }
  pump();
  maybe_stopped();
}

void AvroSink::on_disconnected(const Status& why) { drop_connection(why.message()); }

void AvroSink::send_front() {
  const Job& job = queue_.front();
  scratch_.clear();
  avro::Writer w(scratch_);
  handshake_in_request_ = !handshaken_;
  if (handshake_in_request_) {
    avro::HandshakeRequest h;
    h.client_hash = avro::kFlumeHash;
    h.client_protocol = avro::kFlumeProtocol;
    h.server_hash = avro::kFlumeHash;
    avro::write_handshake_request(w, h);
  }
  avro::write_append_batch(w, *job.batch, 0, job.batch->size());
  frame_.clear();
  avro::encode_frame(++serial_, scratch_, frame_);
  in_flight_ = true;
  if (deflate_) {
    compressed_.clear();
    deflate_->write(frame_, compressed_);
    client_.write(compressed_);
  } else {
    client_.write(frame_);
  }
  if (scratch_.capacity() > (std::size_t{8} << 20)) std::string().swap(scratch_);
  if (frame_.capacity() > (std::size_t{8} << 20)) std::string().swap(frame_);
  if (compressed_.capacity() > (std::size_t{8} << 20)) std::string().swap(compressed_);
  request_timer_.start(config_.request_timeout, [this] {
    drop_connection("no answer from " + config_.address + " within the request_timeout");
  });
}

void AvroSink::on_data(std::string_view data) {
  if (inflate_) {
    inflated_.clear();
    if (Status st = inflate_->write(data, inflated_); !st.ok()) {
      drop_connection(st.message());
      return;
    }
    data = inflated_;
  }
  std::int32_t serial = 0;
  std::string payload;
  bool got = false;
  const Status st = decoder_.feed(data, [&](std::int32_t s, std::string_view p) {
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
    handshaken_ = true;
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

void AvroSink::finish_front(DeliveryResult result) {
  Job job = queue_.front();
  queue_.pop_front();
  job.done->on_delivered(job.id, result);
}

void AvroSink::drop_connection(const std::string& why) {
  request_timer_.stop();
  client_.close();
  const bool had_work = in_flight_ || !queue_.empty();
  in_flight_ = false;
  if (had_work && !stopping_) {
    SLUICE_WARN_LIMITED(log_limit_, "avro sink {}: {}", ctx_.name, why);
  }
  // Everything queued answers Retry: the group rolls back in order and may fail over.
  while (!queue_.empty()) {
    failures_.inc();
    Job job = queue_.front();
    queue_.pop_front();
    answer_later({job, DeliveryResult::retry(why), nullptr});
  }
  // A probe waiting for this connect is answered unhealthy.
  if (probe_ != nullptr) {
    answer_later({Job{nullptr, DeliveryId{0}, nullptr}, DeliveryResult::retry(why), probe_});
    probe_ = nullptr;
  }
  maybe_stopped();
}

void AvroSink::answer_later(Later later) {
  // Never answer from inside deliver(), cancel() or probe(): hand it to the loop. stop() waits.
  if (later_.empty()) ctx_.loop.defer(&AvroSink::later_task, this, 0);
  later_.push_back(std::move(later));
}

void AvroSink::later_task(void* self, std::uint64_t) {
  auto* s = static_cast<AvroSink*>(self);
  std::deque<Later> now;
  now.swap(s->later_);
  for (Later& l : now) {
    if (l.probe != nullptr) {
      l.probe->on_probed(*s, l.result.is_ok());
    } else {
      l.job.done->on_delivered(l.job.id, l.result);
    }
  }
  s->maybe_stopped();
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
      answer_later({job, DeliveryResult::retry("cancelled"), nullptr});
      return;
    }
  }
}

bool AvroSink::probe(ProbeListener& listener) {
  // The client's connect (TCP, and the TLS handshake with TLS): the server is back once a
  // connection is usable, and that connection carries the next batch.
  if (probe_ != nullptr || on_stopped_ || stopping_) return false;
  if (client_.connected()) {
    answer_later({Job{nullptr, DeliveryId{0}, nullptr}, DeliveryResult::ok(), &listener});
    return true;
  }
  probe_ = &listener;
  client_.connect_now();
  return true;
}

void AvroSink::stop(StopCallback on_stopped) {
  on_stopped_ = std::move(on_stopped);
  // A probe in flight is cancelled: it answers unhealthy on the next loop turn, before
  // on_stopped, while the group still listens.
  if (probe_ != nullptr) {
    answer_later({Job{nullptr, DeliveryId{0}, nullptr}, DeliveryResult::retry("stopping"), probe_});
    probe_ = nullptr;
    if (queue_.empty()) client_.close();
  }
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
  client_.close();
  cb();
}

}  // namespace sluice::sinks

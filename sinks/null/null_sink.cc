#include "sinks/null/null_sink.h"

namespace sluice::sinks {

std::optional<NullConfig> NullConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{NullConfig{}} : std::nullopt;
}

NullSink::NullSink(const NullConfig&, SinkContext& ctx) : loop_(ctx.loop) {
  pending_.reserve(64);
  answering_.reserve(64);
}

Result<std::unique_ptr<NullSink>> NullSink::create(const NullConfig& config, SinkContext& ctx) {
  return std::make_unique<NullSink>(config, ctx);
}

void NullSink::deliver(const Batch&, DeliveryId id, DeliveryListener& done) {
  if (pending_.empty()) loop_.defer(&NullSink::flush, this, 0);
  pending_.push_back({id, &done});
}

void NullSink::flush(void* self, std::uint64_t) {
  auto* s = static_cast<NullSink*>(self);
  s->answering_.swap(s->pending_);
  for (const Pending& p : s->answering_) p.done->on_delivered(p.id, DeliveryResult::ok());
  s->answering_.clear();
  if (s->pending_.empty() && s->on_stopped_) {
    auto cb = std::move(s->on_stopped_);
    s->on_stopped_ = nullptr;
    cb();
  }
}

void NullSink::stop(StopCallback on_stopped) {
  on_stopped_ = std::move(on_stopped);
  loop_.defer(&NullSink::flush, this, 0);
}

}  // namespace sluice::sinks

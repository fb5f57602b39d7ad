#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/context.h"
#include "lib/core/result.h"
#include "lib/core/sink.h"

namespace sluice::sinks {

struct NullConfig {
  static std::optional<NullConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// Acknowledges every batch on the next loop turn and discards it (benchmarks, tests).
class NullSink final : public Sink {
 public:
  NullSink(const NullConfig& config, SinkContext& ctx);
  ~NullSink() override { loop_.cancel_deferred(this); }
  static Result<std::unique_ptr<NullSink>> create(const NullConfig& config, SinkContext& ctx);
  void deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) override;
  void stop(StopCallback on_stopped) override;

 private:
  struct Pending {
    DeliveryId id;
    DeliveryListener* done;
  };
  static void flush(void* self, std::uint64_t);

  Loop& loop_;
  std::vector<Pending> pending_, answering_;
  StopCallback on_stopped_;
};

}  // namespace sluice::sinks

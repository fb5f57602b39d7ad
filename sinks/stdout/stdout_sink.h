#pragma once

#include <memory>
#include <optional>

#include "lib/config/config_node.h"
#include "lib/core/result.h"
#include "lib/deliver/writer_sink.h"

namespace sluice::sinks {

struct StdoutConfig {
  OutputFormat format = OutputFormat::body;
  static std::optional<StdoutConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// Writes events to the agent's standard output, one per line.
class StdoutSink final : public WriterSink {
 public:
  StdoutSink(const StdoutConfig& config, SinkContext& ctx) : WriterSink(ctx, config.format) {}
  static Result<std::unique_ptr<StdoutSink>> create(const StdoutConfig& config, SinkContext& ctx) {
    return std::make_unique<StdoutSink>(config, ctx);
  }

 private:
  Status write_blocking(std::string_view data) override {
    return write_all(1, data, "write stdout");
  }
};

}  // namespace sluice::sinks

#include "agent/processor_config.h"
#include "agent/registry.h"
#include "channels/lmdb/inspect.h"
#include "channels/lmdb/lmdb_channel.h"
#include "channels/memory/memory_channel.h"
#include "sinks/avro/avro_sink.h"
#include "sinks/datahub/datahub_sink.h"
#include "sinks/file/file_sink.h"
#include "sinks/group/processors.h"
#include "sinks/http/http_sink.h"
#include "sinks/ilp/ilp_sink.h"
#include "sinks/kafka/kafka_sink.h"
#include "sinks/null/null_sink.h"
#include "sinks/stdout/stdout_sink.h"
#include "sinks/tcp/tcp_sink.h"
#include "sources/avro/avro_source.h"
#include "sources/exec/exec_source.h"
#include "sources/http/http_source.h"
#include "sources/stdin/stdin_source.h"
#include "sources/taildir/taildir_source.h"

namespace sluice {

std::optional<DefaultProcessorConfig> DefaultProcessorConfig::parse(const ConfigNode&,
                                                                    ConfigErrors&) {
  return DefaultProcessorConfig{};
}

std::optional<FailoverProcessorConfig> FailoverProcessorConfig::parse(const ConfigNode&,
                                                                      ConfigErrors&) {
  return FailoverProcessorConfig{};
}

std::optional<LoadBalanceProcessorConfig> LoadBalanceProcessorConfig::parse(const ConfigNode& node,
                                                                            ConfigErrors& errors) {
  LoadBalanceProcessorConfig c;
  if (!node.optional_enum(
          "selector", c.selector, errors,
          {{"round_robin", sinks::Selector::round_robin}, {"random", sinks::Selector::random}})) {
    return std::nullopt;
  }
  return c;
}

namespace {

// The processors take constructor arguments; these build them from the registered config.
struct DefaultProcessorFactory {
  static Result<std::unique_ptr<Processor>> create(const DefaultProcessorConfig&,
                                                   ProcessorContext& ctx) {
    return std::unique_ptr<Processor>(std::make_unique<sinks::SingleProcessor>(
        *ctx.sinks.front(), ctx.penalty_base, ctx.max_penalty));
  }
};
struct FailoverProcessorFactory {
  static Result<std::unique_ptr<Processor>> create(const FailoverProcessorConfig&,
                                                   ProcessorContext& ctx) {
    return std::unique_ptr<Processor>(
        std::make_unique<sinks::FailoverProcessor>(ctx.sinks, ctx.penalty_base, ctx.max_penalty));
  }
};
struct LoadBalanceProcessorFactory {
  static Result<std::unique_ptr<Processor>> create(const LoadBalanceProcessorConfig& config,
                                                   ProcessorContext& ctx) {
    return std::unique_ptr<Processor>(std::make_unique<sinks::LoadBalanceProcessor>(
        ctx.sinks, config.selector, ctx.penalty_base, ctx.max_penalty));
  }
};

}  // namespace

void register_builtin_components(Registry& r) {
  r.add_source<sources::ExecConfig, sources::ExecSource>("exec");
  r.add_source<sources::StdinConfig, sources::StdinSource>("stdin");
  r.add_source<sources::TaildirConfig, sources::TaildirSource>("taildir");
  r.add_source<sources::AvroSourceConfig, sources::AvroSource>("avro");
  r.add_source<sources::HttpSourceConfig, sources::HttpSource>("http");
  r.add_channel<channels::LmdbConfig, channels::LmdbChannel>(
      "lmdb", {.print_stats = channels::print_channel_stats, .dump = channels::dump_channel});
  // One queue, one reader: a second sink group would need its own copy of every event (lmdb).
  r.add_channel<channels::MemoryConfig, channels::MemoryChannel>("memory", {.max_cursors = 1});
  r.add_sink<sinks::FileConfig, sinks::FileSink>("file");
  r.add_sink<sinks::KafkaConfig, sinks::KafkaSink>("kafka");
  r.add_sink<sinks::AvroSinkConfig, sinks::AvroSink>("avro");
  r.add_sink<sinks::DataHubConfig, sinks::DataHubSink>("datahub");
  r.add_sink<sinks::HttpSinkConfig, sinks::HttpSink>("http");
  r.add_sink<sinks::StdoutConfig, sinks::StdoutSink>("stdout");
  r.add_sink<sinks::NullConfig, sinks::NullSink>("null");
  r.add_sink<sinks::TcpSinkConfig, sinks::TcpSink>("tcp");
  r.add_sink<sinks::IlpConfig, sinks::IlpSink>("ilp");
  r.add_processor<DefaultProcessorConfig, DefaultProcessorFactory>(
      "default", {.min_sinks = 1, .max_sinks = 1});
  r.add_processor<FailoverProcessorConfig, FailoverProcessorFactory>("failover");
  r.add_processor<LoadBalanceProcessorConfig, LoadBalanceProcessorFactory>("load_balance");
}

}  // namespace sluice

#include "agent/registry.h"
#include "channels/lmdb/lmdb_channel.h"
#include "channels/memory/memory_channel.h"
#include "sinks/avro/avro_sink.h"
#include "sinks/file/file_sink.h"
#include "sinks/kafka/kafka_sink.h"
#include "sinks/null/null_sink.h"
#include "sinks/stdout/stdout_sink.h"
#include "sources/avro/avro_source.h"
#include "sources/exec/exec_source.h"
#include "sources/http/http_source.h"
#include "sources/stdin/stdin_source.h"
#include "sources/taildir/taildir_source.h"

namespace sluice {

void register_builtin_components(Registry& r) {
  r.add_source<sources::ExecConfig, sources::ExecSource>("exec");
  r.add_source<sources::StdinConfig, sources::StdinSource>("stdin");
  r.add_source<sources::TaildirConfig, sources::TaildirSource>("taildir");
  r.add_source<sources::AvroSourceConfig, sources::AvroSource>("avro");
  r.add_source<sources::HttpSourceConfig, sources::HttpSource>("http");
  r.add_channel<channels::LmdbConfig, channels::LmdbChannel>("lmdb");
  r.add_channel<channels::MemoryConfig, channels::MemoryChannel>("memory");
  r.add_sink<sinks::FileConfig, sinks::FileSink>("file");
  r.add_sink<sinks::KafkaConfig, sinks::KafkaSink>("kafka");
  r.add_sink<sinks::AvroSinkConfig, sinks::AvroSink>("avro");
  r.add_sink<sinks::StdoutConfig, sinks::StdoutSink>("stdout");
  r.add_sink<sinks::NullConfig, sinks::NullSink>("null");
}

}  // namespace sluice

#include "lib/ingest/line_splitter.h"

namespace sluice::sources {

bool LineConfig::parse(const ConfigNode& node, ConfigErrors& errors, LineConfig& out) {
  const std::size_t before = errors.size();
  node.optional("max_line_bytes", out.max_line_bytes, errors,
                InRange<ByteSize>{{16}, {1ULL << 30}});
  node.optional_enum("line_overflow", out.overflow, errors,
                     {{"split", LineOverflow::split}, {"truncate", LineOverflow::truncate}});
  parse::PipelineConfig::parse(node, errors, out.pipeline);
  return errors.size() == before;
}

}  // namespace sluice::sources

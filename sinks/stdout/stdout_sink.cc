#include "sinks/stdout/stdout_sink.h"

namespace sluice::sinks {

std::optional<StdoutConfig> StdoutConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  StdoutConfig c;
  node.optional_enum("format", c.format, errors,
                     {{"body", OutputFormat::body}, {"json", OutputFormat::json}});
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{c} : std::nullopt;
}

}  // namespace sluice::sinks

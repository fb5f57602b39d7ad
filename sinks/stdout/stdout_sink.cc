#include "sinks/stdout/stdout_sink.h"

namespace sluice::sinks {

std::optional<StdoutConfig> StdoutConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  StdoutConfig c;
  std::string format = "body";
  if (node.optional("format", format, errors, OneOf{{"body", "json"}})) {
    c.format = format == "json" ? OutputFormat::json : OutputFormat::body;
  }
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{c} : std::nullopt;
}

}  // namespace sluice::sinks

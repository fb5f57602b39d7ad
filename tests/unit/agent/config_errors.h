#pragma once

#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "agent/agent_config.h"
#include "agent/registry.h"

namespace sluice::test {

/// Every error `parse_config` reports for `text` (as "inline.toml"), formatted as the user sees
/// them; a text with errors must not also yield a configuration.
inline std::vector<std::string> config_errors_of(std::string_view text) {
  Registry registry;
  register_builtin_components(registry);
  ConfigErrors errors;
  auto cfg = parse_config(text, "inline.toml", registry, errors);
  std::vector<std::string> out;
  for (const auto& e : errors) out.push_back(e.str());
  if (!errors.empty()) REQUIRE_FALSE(cfg.has_value());
  return out;
}

}  // namespace sluice::test

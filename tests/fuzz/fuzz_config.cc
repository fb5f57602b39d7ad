// libFuzzer target: the configuration loader on arbitrary text (TOML syntax, every component's
// keys, references between components). Errors are expected; a crash, hang or leak is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/agent_config.h"
#include "agent/registry.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const sluice::Registry* registry = [] {
    auto* r = new sluice::Registry;
    sluice::register_builtin_components(*r);
    return r;
  }();
  sluice::ConfigErrors errors;
  (void)sluice::parse_config(std::string_view(reinterpret_cast<const char*>(data), size),
                             "fuzz.toml", *registry, errors);
  return 0;
}

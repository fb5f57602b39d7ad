#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/result.h"
#include "lib/parse/draft.h"

namespace sluice::parse {

/// One `[[sources.NAME.interceptors]]` entry, checked; built into an Interceptor at start.
struct InterceptorSpec {
  std::string type;  // timestamp, host, static, regex_filter, regex_extract, drop_fields, rename,
                     // set, sample
  std::string header;
  std::string regex;
  std::string field;  // regex_filter / regex_extract / sample: match this field, not the body
  bool preserve_existing = false;
  bool exclude = false;
  bool use_ip = false;
  std::vector<std::pair<std::string, std::string>> pairs;  // static, rename, set
  std::vector<std::string> names;                          // drop_fields; regex_extract headers
  std::uint64_t rate = 1;                                  // sample: keep 1 in rate

  /// Reads `interceptors = [ {...}, ... ]` from a source's table.
  static bool parse_all(const ConfigNode& source, ConfigErrors& errors,
                        std::vector<InterceptorSpec>& out);
  static std::vector<std::string_view> types();
};

/// Flume's interceptors plus field edits, applied in order to each event of a source.
class Interceptor {
 public:
  virtual ~Interceptor() = default;
  /// False drops the event.
  virtual bool apply(Draft& d) = 0;
  static Result<std::unique_ptr<Interceptor>> make(const InterceptorSpec& spec);
};

}  // namespace sluice::parse

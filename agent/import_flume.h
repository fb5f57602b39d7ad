#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/result.h"

namespace sluice::flume {

/// One `key = value` of a Java properties file, unescaped, with the line it starts on.
struct Property {
  std::string key;
  std::string value;
  int line = 0;
};

/// Parses Java properties syntax as java.util.Properties.load does: `#` and `!` comments,
/// `key = value`, `key: value` and `key value`, a backslash at the end of a line continues it,
/// and the escapes \t \n \r \f \uXXXX (any other escaped character stands for itself). A later
/// key replaces an earlier one, as in Java; the first position is kept.
Result<std::vector<Property>> parse_properties(std::string_view text);

/// What import_flume produced.
struct Translation {
  std::string agent;             // the Flume agent that was translated
  std::string toml;              // the sluice configuration
  std::size_t carried = 0;       // Flume settings that became sluice keys
  std::size_t dropped = 0;       // Flume settings left as `# flume:` comments
  std::size_t other_agents = 0;  // settings of other agents in the file, ignored
};

/// Translates the Flume agent `agent` of a properties file into sluice TOML. An empty `agent`
/// picks the only agent in the file (and fails, naming them, if there are several). Every setting
/// that has no sluice equivalent is kept as a `# flume: KEY = VALUE (why)` comment in the table it
/// belongs to. `file` is only named in the header comment.
Result<Translation> import_flume(std::string_view text, std::string_view agent,
                                 std::string_view file);

/// `sluice import-flume FILE [--agent NAME] [-o OUT]`: writes the TOML to `out` (stdout when
/// empty) and the summary to stderr; returns the exit code.
int run_import_flume(const std::string& file, const std::string& agent, const std::string& out);

}  // namespace sluice::flume

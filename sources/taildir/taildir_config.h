#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/ingest/line_splitter.h"

namespace sluice::sources {

struct TaildirGroup {
  std::string name;
  std::vector<std::string> paths;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct TaildirConfig {
  std::vector<TaildirGroup> groups;  // the source's own `paths` form the group "default"
  std::vector<std::string> exclude;
  std::optional<std::chrono::nanoseconds> ignore_older;
  bool read_from_tail = false;
  std::string file_header = "file";
  std::chrono::nanoseconds rescan_interval = std::chrono::seconds(1);
  std::chrono::nanoseconds poll_interval = std::chrono::milliseconds(250);
  std::chrono::nanoseconds close_removed_after = std::chrono::seconds(5);
  std::chrono::nanoseconds checkpoint_interval = std::chrono::seconds(1);
  /// Positions are also saved once the acknowledged offsets advanced by this much (memory channel),
  /// so that a crash re-reads at most about this many bytes, whatever the read rate.
  ByteSize checkpoint_bytes{4ULL << 20};
  std::uint32_t max_open_files = 1024;
  bool follow_symlinks = true;
  std::uint32_t fingerprint_bytes = 256;
  ByteSize read_buffer{256 * 1024};
  std::string positions_file;  // default: DATA_DIR/NAME.positions.json
  LineConfig lines;
  static std::optional<TaildirConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

}  // namespace sluice::sources

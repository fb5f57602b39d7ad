#pragma once

#include <cstdio>
#include <string>

#include "lib/core/status.h"

namespace sluice::channels {

/// `sluice channel stats`: events, bytes, records, oldest event age and each cursor's position for
/// the lmdb channel NAME in DATA_DIR/lmdb, read in a read-only transaction (safe while the agent
/// runs). Prints to `out`.
Status print_channel_stats(const std::string& data_dir, const std::string& name, std::FILE* out);
/// `sluice channel dump`: every stored event, one per line (the body, or JSON with `json`).
Status dump_channel(const std::string& data_dir, const std::string& name, bool json,
                    std::FILE* out);

}  // namespace sluice::channels

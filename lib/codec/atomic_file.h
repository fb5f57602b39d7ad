#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "lib/core/status.h"

namespace sluice::codec {

/// Replaces `path` with `content` so that a crash leaves either the old file or the new one, never
/// a mix: writes `path.tmp` in full (retrying short writes), fsyncs it, renames it over `path`
/// and fsyncs the directory so that the rename itself is durable. Blocking: call it off the loop
/// (the threadpool) unless the file is tiny and written once.
Status write_file_atomic(const std::string& path, std::string_view content, mode_t mode = 0640);

}  // namespace sluice::codec

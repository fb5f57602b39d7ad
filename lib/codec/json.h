#pragma once

#include <string>
#include <string_view>

#include "lib/core/batch.h"

namespace sluice::codec {

enum class OutputFormat : std::uint8_t { body, json };

/// Appends `s` to `out` as the inside of a JSON string. Bytes that are not valid UTF-8 become
/// U+FFFD, so the output is always valid JSON.
void append_json_string(std::string& out, std::string_view s);
/// Appends nanoseconds since the epoch as RFC 3339 UTC with nine fractional digits.
void append_rfc3339(std::string& out, std::int64_t ns);
/// Appends every event of `batch`, one per line: the body (`body`), or an object with timestamp,
/// id, headers, fields and body (`json`).
void encode_batch(const Batch& batch, OutputFormat format, std::string& out);

}  // namespace sluice::codec

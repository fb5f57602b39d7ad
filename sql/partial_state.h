#pragma once

// The wire form of one PARTIAL(...) value (issue 14): what an edge agent's row carries in a field
// and a collector's MERGE(field) reads back. Documented in the README ("Mergeable state
// encoding"); the layout of version 1 never changes, a new layout gets a new version.
//
//   bytes  what
//   2      magic "SP"
//   1      version (1)
//   1      aggregate: 1 COUNT(*), 2 COUNT, 3 COUNT(DISTINCT), 4 SUM, 5 AVG, 6 MIN, 7 MAX,
//          8 FIRST_VALUE, 9 LAST_VALUE, 10 APPROX_PERCENTILE
//   v+n    producing agent's name: LEB128 length (at most 255), then the bytes
//   v      window start, ns since the epoch, zigzag LEB128
//   v      window end, likewise
//   8      the edge row's group key: xxh64 of its key bytes, little endian (parts of one agent
//          and window with different edge keys are different parts)
//   8      APPROX_PERCENTILE only: the quantile, IEEE 754 double, little endian
//   ...    the state (the checkpoint encoding of the aggregate's cell; the distinct counter's and
//          the quantile sketch's own versioned encodings for COUNT(DISTINCT) and
//          APPROX_PERCENTILE)
//
// In a row the bytes travel as standard base64 text (RFC 4648, with padding), so that they
// survive JSON bodies, Avro headers and Kafka unchanged.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sql/aggregates.h"

namespace sluice::sql {

inline constexpr std::uint8_t kPartialVersion = 1;
inline constexpr std::size_t kMaxAgentName = 255;

/// The wire code of an aggregate kind (0 for MERGE, which has no state of its own).
std::uint8_t partial_code(AggKind kind) noexcept;
std::optional<AggKind> partial_kind(std::uint8_t code) noexcept;

/// Appends the binary encoding of one cell's state (without base64).
void encode_partial(AggKind kind, double q, std::string_view agent, std::int64_t start,
                    std::int64_t end, std::uint64_t key, const Cell& cell, const SideStore& side,
                    std::string& out);

/// Reads base64 `text` into `out` (its side store is reset and reused; `bytes` is scratch).
/// On failure returns why ("not base64", "unknown encoding version 9 (this build reads 1)",
/// ...) and leaves `out.valid` false; never crashes on any input.
std::optional<std::string> decode_partial(std::string_view text, DecodedPartial& out,
                                          std::string& bytes, std::size_t distinct_limit);

void base64_encode(std::string_view in, std::string& out);
bool base64_decode(std::string_view in, std::string& out);

}  // namespace sluice::sql

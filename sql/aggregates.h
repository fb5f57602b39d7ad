#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sql/plan.h"
#include "sql/sketch/distinct_counter.h"
#include "sql/sketch/quantile_sketch.h"
#include "sql/value.h"

namespace sluice::sql {

/// The fixed part of one aggregate's state in one group: three words (24 bytes; a high-cardinality
/// GROUP BY holds one per aggregate per group and window). What they hold depends on the aggregate:
///   COUNT, COUNT(*):      i = count
///   SUM, AVG:             i = sum of integers, d = sum of doubles, n = values in the low 56 bits
///                         and flags in the top 8 (flags&1 = saw a double)
///   MIN, MAX:             i = the value's bits (an integer, a boolean, a double's bits, or for a
///                         string nothing: it is SideStore::strings[ext]), d = the meta word
///   FIRST/LAST_VALUE:     as MIN and MAX, n = the value's event time
///   COUNT(DISTINCT):      d = the meta word: SideStore::distincts[ext], or while `in_cell` the
///                         first `small` distinct hashes (at most 2) in i and n and the exact limit
///                         in ext
///   APPROX_PERCENTILE:    n = the meta word: SideStore::quantiles[ext], or while `in_cell` the
///   first
///                         `small` finite values (at most 2) in d and the bits of i
///   MERGE:                d = the meta word: SideStore::merges[ext]
/// The meta word packs ext (32 bits), the value's type, `small` and `in_cell`; sql/aggregates.cc
/// reads and writes it. Most groups of a high-cardinality GROUP BY see a few events per window, so
/// their distinct set and sketch live in the cell and cost no side entry (a counter is 32 bytes, a
/// sketch 128); the side entry is taken when a third value comes and holds what adding the values
/// one by one gives, so results and encodings are the same as with a side entry from the start.
/// Every state merges (merge()) and encodes (encode()/decode()), so that partial aggregates can be
/// combined later (issue 14) and checkpointed.
struct Cell {
  std::int64_t i = 0;
  double d = 0;
  std::int64_t n = 0;
};
static_assert(sizeof(Cell) == 24);

/// One group's row of cells, in 8-byte words: each aggregate's cell at Aggregates::offset(), a
/// COUNT or COUNT(*) in one word (its count: the other two words of its Cell were never used, and
/// at 100k groups per window they were 1.6 MB of every window), the others a Cell (three words).
/// Aggregates::row_words() words long, zero-initialised before Aggregates::init().
using Row = std::int64_t*;
using ConstRow = const std::int64_t*;

struct MergeState;

/// The variable-size parts of a set of cells. Entries are reused after reset(), so recycled
/// windows keep their capacity.
struct SideStore {
  std::vector<std::string> strings;
  std::vector<sketch::DistinctCounter> distincts;
  std::vector<sketch::QuantileSketch> quantiles;
  std::vector<MergeState> merges;  // MERGE(field)
  std::size_t strings_used = 0, distincts_used = 0, quantiles_used = 0, merges_used = 0;

  void reset() noexcept { strings_used = distincts_used = quantiles_used = merges_used = 0; }
  std::size_t bytes() const noexcept;
};

/// One PARTIAL state as MERGE keeps it: the latest state of one producing agent for one of its
/// windows. A later state with the same (agent, start, end) replaces it (a re-sent partial).
struct MergePart {
  std::string agent;
  std::int64_t start = 0, end = 0;
  std::uint64_t key = 0;  // the edge row's group key (hash)
  Cell cell;
  SideStore side;  // the state's own string, counter or sketch
};

/// MERGE(field) in one group of one window: the parts it has seen, of one aggregate kind.
struct MergeState {
  bool has_kind = false;
  AggKind kind = AggKind::count_star;
  double q = 0.5;  // APPROX_PERCENTILE's quantile, from the states
  std::vector<MergePart> parts;
  std::size_t bytes() const noexcept;
};

/// A PARTIAL state read from a row (see sql/partial_state.h).
struct DecodedPartial {
  bool valid = false;
  AggKind kind = AggKind::count_star;
  double q = 0.5;
  std::string agent;
  std::int64_t start = 0, end = 0;
  std::uint64_t key = 0;
  Cell cell;
  SideStore side;
};

/// What finalize() needs for PARTIAL and MERGE columns: the row's window and producing agent,
/// where the encoded text goes, and scratch for merging parts. Reused across rows.
struct RowScratch {
  std::string_view agent;
  std::int64_t start = 0, end = 0;
  std::uint64_t key = 0;  // hash of the row's group key bytes
  Arena* arena = nullptr;
  std::string bytes;
  std::vector<Cell> cells;
  SideStore side;
};

/// The plan's aggregates over one row of cells (one group in one window).
class Aggregates {
 public:
  Aggregates(const QueryPlan& plan, std::size_t distinct_exact_limit);

  std::size_t size() const noexcept { return specs_.size(); }
  const AggSpec& spec(std::size_t i) const { return *specs_[i]; }

  /// Words in a row (at most 3 * size()).
  std::size_t row_words() const noexcept { return row_words_; }
  /// Where aggregate `a`'s cell starts in a row, in words.
  std::size_t offset(std::size_t a) const noexcept { return offsets_[a]; }
  /// A COUNT or COUNT(*): its cell is one word (the count), else a Cell.
  static bool one_word(AggKind kind) noexcept {
    return kind == AggKind::count_star || kind == AggKind::count;
  }

  void init(Row cells, SideStore& side) const;
  /// Folds one event's argument values (`args[i]` for aggregate i; ignored for COUNT(*)).
  /// MERGE aggregates fold `decoded[i]` instead (skipped when not valid); a part that replaced an
  /// earlier one of the same agent and window is counted in `*replaced`.
  /// Returns the growth of heap bytes held by `side` (exact sets, sketches, strings).
  std::int64_t update(Row cells, SideStore& side, const Value* args, std::int64_t time,
                      const DecodedPartial* decoded = nullptr,
                      std::uint64_t* replaced = nullptr) const;
  /// Adds the state `from` into `into` (sessions that an event bridges; partial aggregates).
  /// Returns the growth of heap bytes held by `into_side`.
  std::int64_t merge(Row into, SideStore& into_side, ConstRow from,
                     const SideStore& from_side) const;
  /// Results; strings view `side` (or `scratch`). PARTIAL columns are encoded with the window
  /// and agent of `scratch`; MERGE columns merge their parts there. `scratch` may be null only
  /// when the plan has neither.
  void finalize(ConstRow cells, const SideStore& side, Value* out,
                RowScratch* scratch = nullptr) const;

  /// Versioned per-cell encoding: the bytes of one row of cells.
  void encode(ConstRow cells, const SideStore& side, std::string& out) const;
  /// Reads a row written by encode() into freshly init()ed cells; false if malformed.
  bool decode(std::string_view& in, Row cells, SideStore& side) const;

  std::size_t distinct_exact_limit() const noexcept { return distinct_limit_; }
  /// The MERGE state of aggregate `a` in `cells` (a MERGE aggregate).
  const MergeState& merge_state(std::size_t a, ConstRow cells, const SideStore& side) const;

  // One cell of a given kind (the per-aggregate steps above; MERGE and PARTIAL use them on
  // states whose kind comes from the row, not from the plan).
  static void init_cell(AggKind kind, Cell& c, SideStore& side, std::size_t distinct_limit);
  /// Returns the growth of heap bytes held by `into_side`.
  static std::int64_t merge_cell(AggKind kind, Cell& into, SideStore& into_side, const Cell& from,
                                 const SideStore& from_side);
  static Value finalize_cell(AggKind kind, SqlType result_type, double q, const Cell& c,
                             const SideStore& side);
  static void encode_cell(AggKind kind, const Cell& c, const SideStore& side, std::string& out);
  static bool decode_cell(AggKind kind, std::string_view& in, Cell& c, SideStore& side);

 private:
  /// Aggregate a's Cell in a row (not a one-word aggregate). The row's storage comes from malloc,
  /// mmap or a vector of words, where a Cell's lifetime starts implicitly (it is an
  /// implicit-lifetime type).
  Cell& cell(Row row, std::size_t a) const noexcept {
    return *reinterpret_cast<Cell*>(row + offsets_[a]);
  }
  const Cell& cell(ConstRow row, std::size_t a) const noexcept {
    return *reinterpret_cast<const Cell*>(row + offsets_[a]);
  }
  /// A one-word aggregate's count as a Cell (for the per-cell steps).
  static Cell as_cell(std::int64_t count) noexcept {
    Cell c;
    c.i = count;
    return c;
  }

  std::vector<const AggSpec*> specs_;
  std::vector<std::size_t> offsets_;
  struct Slot {
    AggKind kind;
    std::uint32_t offset;
  };
  std::vector<Slot> layout_;  // per aggregate, for update()
  std::size_t row_words_ = 0;
  std::size_t distinct_limit_;
};

/// Hash of a value for COUNT(DISTINCT) (sql/sketch/hash.h: equal SQL values hash alike).
std::uint64_t distinct_hash(const Value& v) noexcept;

}  // namespace sluice::sql

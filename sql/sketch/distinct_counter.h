#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/result.h"

namespace sluice::sql::sketch {

/// COUNT(DISTINCT x): exact while a group has seen at most `exact_limit` distinct values, then a
/// HyperLogLog sketch of 2^precision one-byte registers (standard error 1.04 / sqrt(2^precision):
/// 0.81% at the default precision 14, 16 KiB).
///
/// The caller hashes each value with the helpers of sql/sketch/hash.h; the counter stores 64-bit
/// hashes, so the exact mode counts distinct hashes (two values collide with probability about
/// n^2 / 2^65: below 3e-8 for a million values).
///
/// Exact mode is an open-addressing hash set of the hashes (linear probing, at most 3/4 full, a
/// power of two of at least 8 slots: 64 bytes, then 10.7 to 21.3 bytes per value); past
/// `exact_limit` values the set is replaced by the registers (the default 1024 holds 2048 slots,
/// the 16 KiB of the registers). A counter is a pure value: no I/O, no locking, copyable, one
/// thread at a time.
class DistinctCounter {
 public:
  static constexpr int kDefaultPrecision = 14;
  static constexpr int kMinPrecision = 4;
  static constexpr int kMaxPrecision = 18;
  /// The largest exact_limit accepted (constructor and decode); configuration checks use it.
  static constexpr std::size_t kMaxExactLimit = std::size_t{1} << 24;

  /// `exact_limit` must be <= kMaxExactLimit and `precision` in [kMinPrecision, kMaxPrecision]
  /// (asserted: validate configuration before). exact_limit 0 makes the counter HLL from the first
  /// value.
  explicit DistinctCounter(std::size_t exact_limit, int precision = kDefaultPrecision);
  DistinctCounter(const DistinctCounter& other);
  DistinctCounter(DistinctCounter&& other) noexcept;
  DistinctCounter& operator=(DistinctCounter other) noexcept;
  ~DistinctCounter();

  /// Counts one value by its hash. Does not allocate unless the exact set grows (doubling) or
  /// the counter turns into HLL (once).
  void add(std::uint64_t hash);

  /// The number of distinct values: exact while exact(), else the HLL estimate (Ertl's improved
  /// estimator: nearly unbiased over the whole range, small cardinalities included, with no
  /// empirical bias tables).
  std::uint64_t estimate() const;
  bool exact() const noexcept { return !hll_; }
  /// The relative standard error of estimate() once HLL: 1.04 / sqrt(2^precision) (0 while exact).
  double standard_error() const noexcept;

  /// Adds `other`'s values. Exact + exact stays exact while the union fits in exact_limit (this
  /// counter's), else turns into HLL; HLL + anything is HLL. Registers of a higher precision are
  /// folded down to the lower one, so the result has min(precision) of both. Merge is commutative
  /// and associative, and merging partial counters equals counting the whole stream.
  void merge(const DistinctCounter& other);

  /// Forgets every value; keeps the exact set's capacity, frees the registers.
  void clear();

  /// Heap plus object bytes held now.
  std::size_t memory_bytes() const noexcept;

  std::size_t exact_limit() const noexcept { return exact_limit_; }
  int precision() const noexcept { return precision_; }

  /// Appends the versioned binary encoding (see the README, "Mergeable state encoding"); equal
  /// states encode to equal bytes.
  void encode(std::string& out) const;
  /// Reads one encoded counter from the front of `in` and advances `in` past it. Garbage,
  /// truncated input and unknown versions give Errc::invalid_data with the reason; never crashes.
  static Result<DistinctCounter> decode(std::string_view& in);

  /// The HLL registers (empty while exact()); for tests and for callers comparing states.
  std::span<const std::uint8_t> registers() const noexcept;
  /// The exact set's hashes, sorted (empty once HLL).
  std::vector<std::uint64_t> exact_hashes() const;

  friend bool operator==(const DistinctCounter& a, const DistinctCounter& b);

 private:
  // The first values live in the object itself, so that the many groups that see one or two
  // distinct values cost no allocation (the object is 32 bytes).
  static constexpr std::uint32_t kInlineSlots = 2;

  bool on_heap() const noexcept { return hll_ || capacity_ > 0; }
  std::uint8_t* regs() const noexcept { return reinterpret_cast<std::uint8_t*>(heap_); }
  std::size_t register_count() const noexcept { return std::size_t{1} << precision_; }
  template <class F>
  void for_each_exact(F&& f) const;
  void release() noexcept;
  void insert_exact(std::uint64_t hash);
  void insert_into_table(std::uint64_t hash) noexcept;
  void grow_exact(std::uint32_t capacity);
  void promote();
  void add_hll(std::uint64_t hash) noexcept;
  void reduce_precision(int precision);

  std::uint32_t exact_limit_;
  std::uint32_t exact_size_ = 0;  // values in the set, has_zero_ included
  std::uint32_t capacity_ = 0;    // slots of the heap table while exact; 0: the inline slots
  std::uint8_t precision_;
  bool hll_ = false;
  bool has_zero_ = false;  // the set uses 0 as the empty slot, so hash 0 is kept apart
  union {
    std::uint64_t inline_[kInlineSlots] = {};  // exact, capacity_ == 0
    std::uint64_t* heap_;  // exact: the open-addressing table (a power of two); HLL: registers
  };
};

}  // namespace sluice::sql::sketch

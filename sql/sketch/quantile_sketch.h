#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/result.h"

namespace sluice::sql::sketch {

/// APPROX_PERCENTILE(x, q): a DDSketch (Masson, Rim, Lee, VLDB 2019) with relative accuracy α.
/// A positive value x lands in bucket i = ceil(log_γ x), γ = (1 + α) / (1 − α), and a quantile is
/// answered with 2γ^i / (γ + 1), so for every q the answer v satisfies |v − x_q| ≤ α·|x_q|, where
/// x_q is the value of rank floor(q·(count − 1)) in the sorted input. Negative values use a
/// mirrored store, values with |x| < 2.2e-308 (DBL_MIN) count as 0. quantile(0) and quantile(1) are
/// the exact minimum and maximum, and every answer is clamped into [min, max].
///
/// Memory is bounded: each of the positive and negative stores keeps at most `max_buckets` counters
/// (8 bytes each; 2048 by default, 16 KiB per store at most). Past that the lowest-magnitude
/// buckets are collapsed into one, so the bound holds for every quantile whose value is within a
/// factor γ^(max_buckets − 1) of the store's largest magnitude (α = 1%, 2048 buckets: about 6e17),
/// which covers any latency or size distribution. Counts are integers, so merging is exact: merging
/// the sketches of any split of a stream gives the same buckets as sketching the whole stream. A
/// pure value: no I/O, no locking, copyable, one thread at a time.
class QuantileSketch {
 public:
  static constexpr double kDefaultRelativeAccuracy = 0.01;
  static constexpr std::size_t kDefaultMaxBuckets = 2048;
  static constexpr double kMinRelativeAccuracy = 1e-4;
  static constexpr double kMaxRelativeAccuracy = 0.5;
  static constexpr std::size_t kMinMaxBuckets = 16;
  static constexpr std::size_t kMaxMaxBuckets = std::size_t{1} << 16;

  /// `relative_accuracy` in [kMinRelativeAccuracy, kMaxRelativeAccuracy], `max_buckets` in
  /// [kMinMaxBuckets, kMaxMaxBuckets] (asserted: validate configuration before).
  explicit QuantileSketch(double relative_accuracy = kDefaultRelativeAccuracy,
                          std::size_t max_buckets = kDefaultMaxBuckets);

  /// Counts one value. NaN and ±infinity are not counted but tallied in non_finite(). Allocates
  /// only when a store's bucket range widens (at most up to max_buckets), never in the steady
  /// state.
  void add(double value);

  /// The value at quantile q in [0, 1] (clamped), within the relative accuracy; NaN when empty.
  double quantile(double q) const;
  /// Values counted (non-finite ones excluded).
  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t non_finite() const noexcept { return non_finite_; }
  double min() const noexcept { return min_; }
  double max() const noexcept { return max_; }

  /// Adds `other`'s values. With equal α (the normal case) it adds the bucket counts, which is
  /// exact, commutative and associative. With a different α each of other's buckets is re-added at
  /// its representative value, so the merged answers are within α_this + α_other (counted, not
  /// lost).
  void merge(const QuantileSketch& other);

  void clear();

  /// Heap plus object bytes held now.
  std::size_t memory_bytes() const noexcept;

  double relative_accuracy() const noexcept { return alpha_; }
  std::size_t max_buckets() const noexcept { return max_buckets_; }

  /// Appends the versioned binary encoding (see the README, "Mergeable state encoding"); equal
  /// states encode to equal bytes.
  void encode(std::string& out) const;
  /// Reads one encoded sketch from the front of `in` and advances `in` past it. Garbage, truncated
  /// input and unknown versions give Errc::invalid_data with the reason; never crashes.
  static Result<QuantileSketch> decode(std::string_view& in);

  /// One store of bucket counts. Dense: counts[k] is bucket offset + k. Sparse, while few buckets
  /// are used over a wide range (so that a group with a handful of values costs a handful of
  /// words): counts holds (index, count) pairs sorted by index. A store never holds more than
  /// max_buckets words (plus 2). After collapsing, the lowest bucket holds everything at or below
  /// it.
  struct Store {
    bool sparse = true;
    std::int32_t offset = 0;
    std::vector<std::uint64_t> counts;

    bool empty() const noexcept { return counts.empty(); }
    /// The lowest and highest bucket index in use; only when !empty().
    std::int32_t lowest() const noexcept { return sparse ? index_at(0) : offset; }
    std::int32_t highest() const noexcept {
      return sparse ? index_at(counts.size() - 2)
                    : offset + static_cast<std::int32_t>(counts.size()) - 1;
    }
    /// highest() - lowest() + 1, or 0 when empty.
    std::size_t span() const noexcept {
      return empty() ? 0 : static_cast<std::size_t>(std::int64_t{highest()} - lowest() + 1);
    }
    /// The count of bucket `index` (0 when unused).
    std::uint64_t at(std::int32_t index) const noexcept;
    /// Calls f(index, count) for each bucket with a non-zero count, ascending (or descending),
    /// until f returns true.
    template <class F>
    void each(bool descending, F&& f) const {
      const std::size_t n = sparse ? counts.size() / 2 : counts.size();
      for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = descending ? n - 1 - k : k;
        const std::int32_t index = sparse ? index_at(2 * i) : offset + static_cast<std::int32_t>(i);
        const std::uint64_t c = sparse ? counts[2 * i + 1] : counts[i];
        if (c != 0 && f(index, c)) return;
      }
    }
    /// The same buckets and counts, whatever the form.
    friend bool operator==(const Store& a, const Store& b);

   private:
    std::int32_t index_at(std::size_t word) const noexcept {
      return static_cast<std::int32_t>(static_cast<std::int64_t>(counts[word]));
    }
  };
  const Store& positive() const noexcept { return pos_; }
  const Store& negative() const noexcept { return neg_; }
  std::uint64_t zero_count() const noexcept { return zero_; }

  friend bool operator==(const QuantileSketch& a, const QuantileSketch& b);

 private:
  std::int32_t index_of(double magnitude) const noexcept;
  double value_of(std::int32_t index) const noexcept;
  void add_to(Store& store, std::int32_t index, std::uint64_t n);
  void collapse_below(Store& store, std::int64_t lo);
  void sparse_add(Store& store, std::int32_t index, std::uint64_t n);
  void densify_if_smaller(Store& store);

  double alpha_;
  double gamma_;
  double inv_log_gamma_;
  std::size_t max_buckets_;
  Store pos_;
  Store neg_;
  std::uint64_t zero_ = 0;
  std::uint64_t count_ = 0;
  std::uint64_t non_finite_ = 0;
  double min_;
  double max_;
};

}  // namespace sluice::sql::sketch

#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
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
/// (8 bytes each; 2048 by default, 16 KiB per store at most); a store holds (index, count) pairs
/// until the dense form would take no more words (past 16 words, at most twice as many), so a
/// sketch of 10 values takes about 400 bytes; the object itself is 128 bytes and holds the first
/// two positive buckets, so a group that saw a few values needs no heap block. Past the bucket
/// limit the lowest-magnitude buckets are collapsed into one, so the bound holds for every quantile
/// whose value is within a factor γ^(max_buckets − 1) of the store's largest magnitude (α = 1%,
/// 2048 buckets: about 6e17), which covers any latency or size distribution. Counts are integers,
/// so merging is exact: merging the sketches of any split of a stream gives the same buckets as
/// sketching the whole stream. A pure value: no I/O, no locking, copyable, one thread at a time.
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

  /// The words of one store: a vector of uint64 that keeps its first `N` words in the object
  /// itself, so that a sketch of a group that saw a few values holds no heap block. Grows like
  /// std::vector (to the size asked by reserve(), else doubling); a pure value.
  template <std::size_t N>
  class Words {
   public:
    Words() noexcept = default;
    Words(const Words& o) { copy_from(o); }
    Words(Words&& o) noexcept { steal(o); }
    Words& operator=(const Words& o) {
      if (this != &o) {
        free_heap();
        copy_from(o);
      }
      return *this;
    }
    Words& operator=(Words&& o) noexcept {
      if (this != &o) {
        free_heap();
        steal(o);
      }
      return *this;
    }
    ~Words() { free_heap(); }

    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    /// Words held now (N while inline).
    std::size_t capacity() const noexcept { return heap_cap_ > 0 ? heap_cap_ : N; }
    /// Words on the heap (0 while inline).
    std::size_t heap_capacity() const noexcept { return heap_cap_; }
    std::uint64_t* data() noexcept { return heap_cap_ > 0 ? heap_ : inline_; }
    const std::uint64_t* data() const noexcept { return heap_cap_ > 0 ? heap_ : inline_; }
    std::uint64_t* begin() noexcept { return data(); }
    std::uint64_t* end() noexcept { return data() + size_; }
    std::uint64_t& operator[](std::size_t i) noexcept { return data()[i]; }
    const std::uint64_t& operator[](std::size_t i) const noexcept { return data()[i]; }
    std::uint64_t front() const noexcept { return data()[0]; }
    std::uint64_t back() const noexcept { return data()[size_ - 1]; }
    void clear() noexcept { size_ = 0; }
    void reserve(std::size_t n) {
      if (n > capacity()) reallocate(n);
    }
    void push_back(std::uint64_t v) {
      grow_for(size_ + 1);
      data()[size_++] = v;
    }
    /// Inserts `n` copies of `v` before `at`.
    void insert(std::uint64_t* at, std::size_t n, std::uint64_t v) {
      const std::size_t i = static_cast<std::size_t>(at - data());
      grow_for(size_ + n);
      std::uint64_t* d = data();
      for (std::size_t k = size_; k > i; --k) d[k - 1 + n] = d[k - 1];
      for (std::size_t k = 0; k < n; ++k) d[i + k] = v;
      size_ += static_cast<std::uint32_t>(n);
    }
    void insert(std::uint64_t* at, std::uint64_t v) { insert(at, std::size_t{1}, v); }
    /// Inserts `a, b` before `at`.
    void insert(std::uint64_t* at, std::initializer_list<std::uint64_t> two) {
      const std::size_t i = static_cast<std::size_t>(at - data());
      grow_for(size_ + two.size());
      std::uint64_t* d = data();
      for (std::size_t k = size_; k > i; --k) d[k - 1 + two.size()] = d[k - 1];
      std::size_t k = i;
      for (std::uint64_t v : two) d[k++] = v;
      size_ += static_cast<std::uint32_t>(two.size());
    }
    void erase(std::uint64_t* first, std::uint64_t* last) noexcept {
      std::uint64_t* d = data();
      const std::size_t from = static_cast<std::size_t>(first - d);
      const std::size_t n = static_cast<std::size_t>(last - first);
      for (std::size_t k = from; k + n < size_; ++k) d[k] = d[k + n];
      size_ -= static_cast<std::uint32_t>(n);
    }
    /// Grows to `n` words, the new ones `v` (never shrinks capacity).
    void resize(std::size_t n, std::uint64_t v) {
      if (n > size_) {
        grow_for(n);
        std::uint64_t* d = data();
        for (std::size_t k = size_; k < n; ++k) d[k] = v;
      }
      size_ = static_cast<std::uint32_t>(n);
    }
    /// Exactly `n` words of `v`, in a block of `n` words unless they fit inline.
    void assign_exact(std::size_t n, std::uint64_t v) {
      if (n > capacity()) {
        free_heap();
        size_ = 0;
        reallocate(n);
      }
      std::uint64_t* d = data();
      for (std::size_t k = 0; k < n; ++k) d[k] = v;
      size_ = static_cast<std::uint32_t>(n);
    }
    void swap(Words& o) noexcept {
      Words t(std::move(o));
      o = std::move(*this);
      *this = std::move(t);
    }

   private:
    void free_heap() noexcept {
      if (heap_cap_ > 0) delete[] heap_;
      heap_cap_ = 0;
    }
    void copy_from(const Words& o) {
      size_ = 0;
      if (o.size_ > N) reallocate(o.size_);  // a copy holds what it needs, as a vector's does
      std::uint64_t* d = data();
      const std::uint64_t* s = o.data();
      for (std::size_t k = 0; k < o.size_; ++k) d[k] = s[k];
      size_ = o.size_;
    }
    void steal(Words& o) noexcept {
      size_ = o.size_;
      heap_cap_ = o.heap_cap_;
      if (o.heap_cap_ > 0) {
        heap_ = o.heap_;
      } else {
        for (std::size_t k = 0; k < N; ++k) inline_[k] = o.inline_[k];
      }
      o.size_ = 0;
      o.heap_cap_ = 0;
    }
    void grow_for(std::size_t n) {
      if (n > capacity()) reallocate(std::max(n, 2 * capacity()));
    }
    void reallocate(std::size_t cap) {
      auto* block = new std::uint64_t[cap];
      const std::uint64_t* s = data();
      for (std::size_t k = 0; k < size_; ++k) block[k] = s[k];
      free_heap();
      heap_ = block;
      heap_cap_ = static_cast<std::uint32_t>(cap);
    }

    std::uint32_t size_ = 0;
    std::uint32_t heap_cap_ = 0;  // 0: the words are inline_
    union {
      std::uint64_t inline_[N] = {};
      std::uint64_t* heap_;
    };
  };

  /// One store of bucket counts. Dense: counts[k] is bucket offset + k. Sparse, while few buckets
  /// are used over a wide range (so that a group with a handful of values costs a handful of
  /// words): counts holds (index, count) pairs sorted by index, until the dense form would take
  /// no more words (past 16 words, at most twice as many). A store never holds more than
  /// max_buckets words (plus 2). After collapsing, the lowest bucket holds everything at or below
  /// it. `N` words live in the store itself.
  template <std::size_t N>
  struct BasicStore {
    bool sparse = true;
    std::int32_t offset = 0;
    Words<N> counts;

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
    std::uint64_t at(std::int32_t index) const noexcept {
      if (empty() || index < lowest() || index > highest()) return 0;
      if (!sparse) return counts[static_cast<std::size_t>(index - offset)];
      for (std::size_t w = 0; w < counts.size(); w += 2) {
        if (index_at(w) == index) return counts[w + 1];
      }
      return 0;
    }
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
    template <std::size_t M>
    bool same_buckets(const BasicStore<M>& b) const {
      if (span() != b.span() || (!empty() && lowest() != b.lowest())) return false;
      std::vector<std::pair<std::int32_t, std::uint64_t>> x, y;
      each(false, [&](std::int32_t i, std::uint64_t c) { return x.emplace_back(i, c), false; });
      b.each(false, [&](std::int32_t i, std::uint64_t c) { return y.emplace_back(i, c), false; });
      return x == y;
    }
    friend bool operator==(const BasicStore& a, const BasicStore& b) { return a.same_buckets(b); }

   private:
    std::int32_t index_at(std::size_t word) const noexcept {
      return static_cast<std::int32_t>(static_cast<std::int64_t>(counts[word]));
    }
  };
  /// Positive values are the common case: two buckets (a group's first values) fit inline.
  using Store = BasicStore<4>;
  using NegativeStore = BasicStore<1>;
  const Store& positive() const noexcept { return pos_; }
  const NegativeStore& negative() const noexcept { return neg_; }
  std::uint64_t zero_count() const noexcept { return zero_; }

  friend bool operator==(const QuantileSketch& a, const QuantileSketch& b);

 private:
  double inv_log_gamma() const noexcept;
  double gamma() const noexcept;
  std::int32_t index_of(double magnitude) const noexcept;
  double value_of(std::int32_t index) const noexcept;
  template <class S>
  void add_to(S& store, std::int32_t index, std::uint64_t n);
  template <class S>
  void collapse_below(S& store, std::int64_t lo);
  template <class S>
  void sparse_add(S& store, std::int32_t index, std::uint64_t n);
  template <class S>
  void densify_if_smaller(S& store);

  // γ and 1 / ln γ are derived from α (precomputed for the default α), so that a sketch stays
  // small: 128 bytes, two positive buckets included.
  double alpha_;
  std::uint32_t max_buckets_;
  Store pos_;
  NegativeStore neg_;
  std::uint64_t zero_ = 0;
  std::uint64_t count_ = 0;
  std::uint64_t non_finite_ = 0;
  double min_;
  double max_;
};

}  // namespace sluice::sql::sketch

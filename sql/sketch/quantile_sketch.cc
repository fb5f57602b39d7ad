#include "sql/sketch/quantile_sketch.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "lib/core/assert.h"
#include "sql/sketch/encoding.h"

namespace sluice::sql::sketch {
namespace {

constexpr std::uint8_t kVersion = 1;
constexpr double kInf = std::numeric_limits<double>::infinity();
// Magnitudes below this count as zero: log() of a subnormal loses the relative accuracy.
constexpr double kMinIndexable = std::numeric_limits<double>::min();

// γ and 1 / ln γ of the default α, computed as the constructor used to compute them for every
// sketch (the same doubles, so the same bucket indexes).
const double kDefaultGamma =
    (1 + QuantileSketch::kDefaultRelativeAccuracy) / (1 - QuantileSketch::kDefaultRelativeAccuracy);
const double kDefaultInvLogGamma = 1.0 / std::log(kDefaultGamma);

Status invalid(std::string_view why) {
  return Status(Errc::invalid_data, "quantile sketch state: " + std::string(why));
}

}  // namespace

QuantileSketch::QuantileSketch(double relative_accuracy, std::size_t max_buckets)
    : alpha_(relative_accuracy),
      max_buckets_(static_cast<std::uint32_t>(max_buckets)),
      min_(kInf),
      max_(-kInf) {
  SLUICE_ASSERT(relative_accuracy >= kMinRelativeAccuracy &&
                relative_accuracy <= kMaxRelativeAccuracy);
  SLUICE_ASSERT(max_buckets >= kMinMaxBuckets && max_buckets <= kMaxMaxBuckets);
}

double QuantileSketch::gamma() const noexcept {
  return alpha_ == kDefaultRelativeAccuracy ? kDefaultGamma : (1 + alpha_) / (1 - alpha_);
}

double QuantileSketch::inv_log_gamma() const noexcept {
  return alpha_ == kDefaultRelativeAccuracy ? kDefaultInvLogGamma : 1.0 / std::log(gamma());
}

std::int32_t QuantileSketch::index_of(double magnitude) const noexcept {
  return static_cast<std::int32_t>(std::ceil(std::log(magnitude) * inv_log_gamma()));
}

double QuantileSketch::value_of(std::int32_t index) const noexcept {
  // Bucket i holds (γ^(i-1), γ^i]; this point is within α of both ends.
  return 2.0 * std::exp(index / inv_log_gamma()) / (gamma() + 1.0);
}

void QuantileSketch::add(double value) {
  if (!std::isfinite(value)) {
    ++non_finite_;
    return;
  }
  ++count_;
  if (value < min_) min_ = value;
  if (value > max_) max_ = value;
  if (value >= kMinIndexable) {
    add_to(pos_, index_of(value), 1);
  } else if (value <= -kMinIndexable) {
    add_to(neg_, index_of(-value), 1);
  } else {
    ++zero_;
  }
}

namespace {

std::uint64_t index_word(std::int64_t index) { return static_cast<std::uint64_t>(index); }

// Grows geometrically but never past `limit` words, so that memory stays within the bound.
template <class C>
void reserve_for(C& c, std::size_t words, std::size_t limit) {
  if (words > c.capacity()) c.reserve(std::max(words, std::min(2 * c.capacity(), limit)));
}

}  // namespace

template <class S>
void QuantileSketch::add_to(S& s, std::int32_t index, std::uint64_t n) {
  auto& c = s.counts;
  if (c.empty()) {
    s.sparse = true;
    reserve_for(c, 4, max_buckets_);
    c.push_back(index_word(index));
    c.push_back(n);
    return;
  }
  const std::int64_t low = s.lowest(), top = s.highest();
  if (!s.sparse && index >= low && index <= top) {
    c[static_cast<std::size_t>(index - s.offset)] += n;
    return;
  }
  const std::int64_t hi = std::max<std::int64_t>(top, index);
  const std::int64_t lo = std::max<std::int64_t>(std::min<std::int64_t>(low, index),
                                                 hi - static_cast<std::int64_t>(max_buckets_) + 1);
  // Collapsing everything below `lo` into bucket `lo` makes the result depend only on the
  // smallest and largest index ever seen, never on the order of the values: merges stay exact.
  if (s.sparse) {
    if (lo > low) collapse_below(s, lo);
    sparse_add(s, static_cast<std::int32_t>(std::max<std::int64_t>(index, lo)), n);
    densify_if_smaller(s);
    return;
  }
  const std::int64_t new_size = hi - lo + 1;
  reserve_for(c, static_cast<std::size_t>(new_size), max_buckets_);
  if (lo > s.offset) {
    collapse_below(s, lo);
  } else if (lo < s.offset) {
    c.insert(c.begin(), static_cast<std::size_t>(s.offset - lo), 0);
    s.offset = static_cast<std::int32_t>(lo);
  }
  if (static_cast<std::int64_t>(c.size()) < new_size) {
    c.resize(static_cast<std::size_t>(new_size), 0);
  }
  c[static_cast<std::size_t>(std::max<std::int64_t>(index, lo) - lo)] += n;
}

template <class S>
void QuantileSketch::sparse_add(S& s, std::int32_t index, std::uint64_t n) {
  auto& c = s.counts;
  std::size_t lo = 0, hi = c.size() / 2;  // binary search over the pairs
  while (lo < hi) {
    const std::size_t mid = (lo + hi) / 2;
    if (static_cast<std::int64_t>(c[2 * mid]) < index) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (2 * lo < c.size() && static_cast<std::int64_t>(c[2 * lo]) == index) {
    c[2 * lo + 1] += n;
    return;
  }
  reserve_for(c, c.size() + 2, max_buckets_ + 2);
  c.insert(c.begin() + static_cast<std::ptrdiff_t>(2 * lo), {index_word(index), n});
}

template <class S>
void QuantileSketch::densify_if_smaller(S& s) {
  // Dense takes span() words, sparse two per bucket in use: dense once that is no more words, or,
  // past 16 words, at most twice as many. A sparse add is a binary search (its branches
  // mispredicted) and an insertion; a dense one is an index. At 143 values in [0.5, 100] per
  // group and window, the store stayed sparse (about 90 buckets used of 265) and its adds were
  // 6 % of a pipeline's CPU. Small stores keep the tighter rule: with 100k groups of a few values
  // each, a few words more each would be megabytes.
  if (!s.sparse) return;
  const std::size_t words = s.counts.size();
  if (s.span() > (words >= 16 ? 2 * words : words)) return;
  decltype(s.counts) dense;
  dense.assign_exact(s.span(), 0);
  const std::int32_t low = s.lowest();
  s.each(false, [&](std::int32_t i, std::uint64_t c) {
    dense[static_cast<std::size_t>(i - low)] = c;
    return false;
  });
  s.counts.swap(dense);
  s.offset = low;
  s.sparse = false;
}

template <class S>
void QuantileSketch::collapse_below(S& s, std::int64_t lo) {
  auto& c = s.counts;
  if (s.sparse) {
    std::uint64_t folded = 0;
    std::size_t w = 0;
    while (w < c.size() && static_cast<std::int64_t>(c[w]) < lo) {
      folded += c[w + 1];
      w += 2;
    }
    c.erase(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(w));
    if (folded > 0) sparse_add(s, static_cast<std::int32_t>(lo), folded);
    return;
  }
  const std::size_t drop = static_cast<std::size_t>(
      std::min<std::int64_t>(lo - s.offset, static_cast<std::int64_t>(c.size())));
  std::uint64_t folded = 0;
  for (std::size_t k = 0; k < drop; ++k) folded += c[k];
  c.erase(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(drop));
  if (c.empty() || s.offset + static_cast<std::int64_t>(drop) != lo) c.insert(c.begin(), 0);
  c[0] += folded;
  s.offset = static_cast<std::int32_t>(lo);
}

double QuantileSketch::quantile(double q) const {
  if (count_ == 0) return std::numeric_limits<double>::quiet_NaN();
  if (!(q > 0)) return min_;  // also NaN
  if (q >= 1) return max_;
  const double rank = q * static_cast<double>(count_ - 1);
  double seen = 0;
  auto clamp = [&](double v) { return std::clamp(v, min_, max_); };
  double answer = 0;
  bool found = false;
  auto walk = [&](const auto& store, bool descending, double sign) {
    store.each(descending, [&](std::int32_t index, std::uint64_t c) {
      seen += static_cast<double>(c);
      if (seen <= rank) return false;
      answer = sign * value_of(index);
      return found = true;
    });
  };
  walk(neg_, true, -1.0);  // the most negative values first
  if (found) return clamp(answer);
  seen += static_cast<double>(zero_);
  if (seen > rank) return clamp(0.0);
  walk(pos_, false, 1.0);
  if (found) return clamp(answer);
  return max_;
}

void QuantileSketch::merge(const QuantileSketch& other) {
  if (&other == this) {
    merge(QuantileSketch(other));  // a copy: the loops below must not read what they write
    return;
  }
  if (other.max_buckets_ < max_buckets_) {
    max_buckets_ = other.max_buckets_;
    auto reduce = [&](auto& s) {
      if (s.span() <= max_buckets_) return;
      collapse_below(s, std::int64_t{s.highest()} - static_cast<std::int64_t>(max_buckets_) + 1);
      densify_if_smaller(s);
    };
    reduce(pos_);
    reduce(neg_);
  }
  count_ += other.count_;
  non_finite_ += other.non_finite_;
  zero_ += other.zero_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  const bool same_mapping = other.alpha_ == alpha_;
  auto merge_store = [&](auto& mine, const auto& theirs) {
    // From the top down, so that a collapse happens at most once.
    theirs.each(true, [&](std::int32_t index, std::uint64_t n) {
      if (same_mapping) {
        add_to(mine, index, n);
        return false;
      }
      // A decoded bucket may sit at the very ends of the double range; keep its value finite.
      const double v =
          std::clamp(other.value_of(index), kMinIndexable, std::numeric_limits<double>::max());
      add_to(mine, index_of(v), n);
      return false;
    });
  };
  merge_store(pos_, other.pos_);
  merge_store(neg_, other.neg_);
}

void QuantileSketch::clear() {
  pos_.counts.clear();
  neg_.counts.clear();
  pos_.offset = neg_.offset = 0;
  pos_.sparse = neg_.sparse = true;
  zero_ = count_ = non_finite_ = 0;
  min_ = kInf;
  max_ = -kInf;
}

std::size_t QuantileSketch::memory_bytes() const noexcept {
  return sizeof(*this) +
         (pos_.counts.heap_capacity() + neg_.counts.heap_capacity()) * sizeof(std::uint64_t);
}

bool operator==(const QuantileSketch& a, const QuantileSketch& b) {
  return a.alpha_ == b.alpha_ && a.max_buckets_ == b.max_buckets_ && a.pos_ == b.pos_ &&
         a.neg_ == b.neg_ && a.zero_ == b.zero_ && a.count_ == b.count_ &&
         a.non_finite_ == b.non_finite_ && a.min_ == b.min_ && a.max_ == b.max_;
}

void QuantileSketch::encode(std::string& out) const {
  enc::put_u8(out, kVersion);
  enc::put_f64(out, alpha_);
  enc::put_varint(out, max_buckets_);
  enc::put_varint(out, non_finite_);
  enc::put_varint(out, zero_);
  auto put_store = [&](const auto& s) {
    // Always the dense form, so that equal states encode alike whatever their form in memory.
    enc::put_varint(out, s.span());
    if (s.empty()) return;
    std::int64_t next = s.lowest();
    enc::put_varint(out, enc::zigzag(next));
    s.each(false, [&](std::int32_t index, std::uint64_t n) {
      for (; next < index; ++next) enc::put_varint(out, 0);
      enc::put_varint(out, n);
      ++next;
      return false;
    });
  };
  put_store(pos_);
  put_store(neg_);
  if (count_ > 0) {
    enc::put_f64(out, min_);
    enc::put_f64(out, max_);
  }
}

Result<QuantileSketch> QuantileSketch::decode(std::string_view& in) {
  std::uint8_t version;
  if (!enc::get_u8(in, version)) return invalid("empty input");
  if (version != kVersion) {
    return invalid("unknown encoding version " + std::to_string(version) + " (this build reads 1)");
  }
  double alpha;
  std::uint64_t max_buckets, non_finite, zero;
  if (!enc::get_f64(in, alpha)) return invalid("truncated relative accuracy");
  if (!(alpha >= kMinRelativeAccuracy && alpha <= kMaxRelativeAccuracy)) {
    return invalid("relative accuracy is not in [0.0001, 0.5]");
  }
  if (!enc::get_varint(in, max_buckets)) return invalid("truncated or malformed bucket limit");
  if (max_buckets < kMinMaxBuckets || max_buckets > kMaxMaxBuckets) {
    return invalid("bucket limit " + std::to_string(max_buckets) + " is not in [16, 65536]");
  }
  if (!enc::get_varint(in, non_finite) || !enc::get_varint(in, zero)) {
    return invalid("truncated or malformed counts");
  }
  QuantileSketch s(alpha, max_buckets);
  s.non_finite_ = non_finite;
  s.zero_ = zero;
  std::uint64_t total = zero;
  // The indexes a finite magnitude in [DBL_MIN, DBL_MAX] can have, with one bucket of slack.
  const std::int64_t lowest = s.index_of(kMinIndexable) - 1;
  const std::int64_t highest = s.index_of(std::numeric_limits<double>::max()) + 1;
  auto read_store = [&](auto& st) -> Status {
    std::uint64_t n;
    if (!enc::get_varint(in, n)) return invalid("truncated or malformed bucket count");
    if (n == 0) return Status();
    if (n > max_buckets) return invalid("more buckets than the bucket limit");
    if (n > in.size()) return invalid("truncated buckets");  // each takes a byte at least
    std::uint64_t zoffset;
    if (!enc::get_varint(in, zoffset)) return invalid("truncated or malformed bucket offset");
    const std::int64_t offset = enc::unzigzag(zoffset);
    // Written so that no damaged offset can overflow: n >= 1 and lowest <= highest here.
    if (offset < lowest || offset > highest - static_cast<std::int64_t>(n - 1)) {
      return invalid("bucket index out of range");
    }
    std::vector<std::uint64_t> dense(n);
    std::size_t used = 0;
    for (std::uint64_t k = 0; k < n; ++k) {
      if (!enc::get_varint(in, dense[k])) return invalid("truncated or malformed bucket");
      if (dense[k] > std::numeric_limits<std::uint64_t>::max() - total) {
        return invalid("counts overflow");
      }
      total += dense[k];
      used += dense[k] != 0;
    }
    if (dense.front() == 0 || dense.back() == 0) {
      return invalid("a store's first or last bucket is empty");
    }
    if (n <= 2 * used) {
      st.sparse = false;
      st.offset = static_cast<std::int32_t>(offset);
      st.counts.assign_exact(n, 0);
      for (std::uint64_t k = 0; k < n; ++k) st.counts[k] = dense[k];
      return Status();
    }
    st.counts.reserve(2 * used);
    for (std::uint64_t k = 0; k < n; ++k) {
      if (dense[k] == 0) continue;
      st.counts.push_back(index_word(offset + static_cast<std::int64_t>(k)));
      st.counts.push_back(dense[k]);
    }
    return Status();
  };
  if (Status st = read_store(s.pos_); !st.ok()) return st;
  if (Status st = read_store(s.neg_); !st.ok()) return st;
  s.count_ = total;
  if (total > 0) {
    if (!enc::get_f64(in, s.min_) || !enc::get_f64(in, s.max_)) {
      return invalid("truncated minimum and maximum");
    }
    if (!std::isfinite(s.min_) || !std::isfinite(s.max_) || s.min_ > s.max_) {
      return invalid("minimum and maximum are not finite and ordered");
    }
  }
  return s;
}

}  // namespace sluice::sql::sketch

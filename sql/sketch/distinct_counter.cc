#include "sql/sketch/distinct_counter.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "lib/core/assert.h"
#include "sql/sketch/encoding.h"

namespace sluice::sql::sketch {
namespace {

constexpr std::uint8_t kVersion = 1;
constexpr std::uint8_t kKindExact = 0;
constexpr std::uint8_t kKindDense = 1;   // 2^p registers, 6 bits each, packed little-endian
constexpr std::uint8_t kKindSparse = 2;  // (index delta, value) pairs of the non-zero registers
constexpr std::size_t kInitialCapacity = 8;

// The largest register value at `precision`: the 64 - p bits after the index all zero.
int max_rank(int precision) { return 64 - precision + 1; }

std::uint8_t rank_of(std::uint64_t hash, int precision) {
  const std::uint64_t w = hash << precision;
  return static_cast<std::uint8_t>(w == 0 ? max_rank(precision) : std::countl_zero(w) + 1);
}

// Register `index` at precision `from`, seen at precision `to` < from: the index's low bits
// become the leading bits of the rest of the hash.
std::uint8_t folded_rank(std::size_t index, std::uint8_t value, int from, int to) {
  const int d = from - to;
  const std::size_t low = index & ((std::size_t{1} << d) - 1);
  if (low != 0) return static_cast<std::uint8_t>(d - std::bit_width(low) + 1);
  return static_cast<std::uint8_t>(d + value);
}

// Ertl, "New cardinality estimation algorithms for HyperLogLog sketches" (2017), eq. (6) and (7).
double sigma(double x) {
  if (x == 1.0) return std::numeric_limits<double>::infinity();
  double y = 1.0, z = x;
  for (;;) {
    x *= x;
    const double before = z;
    z += x * y;
    y += y;
    if (z == before) return z;
  }
}

double tau(double x) {
  if (x == 0.0 || x == 1.0) return 0.0;
  double y = 1.0, z = 1.0 - x;
  for (;;) {
    x = std::sqrt(x);
    const double before = z;
    y *= 0.5;
    z -= (1.0 - x) * (1.0 - x) * y;
    if (z == before) return z / 3.0;
  }
}

Status invalid(std::string_view why) {
  return Status(Errc::invalid_data, "distinct counter state: " + std::string(why));
}

std::size_t capacity_for(std::size_t values) {
  std::size_t cap = kInitialCapacity;
  while (values * 4 > cap * 3) cap *= 2;
  return cap;
}

}  // namespace

DistinctCounter::DistinctCounter(std::size_t exact_limit, int precision)
    : exact_limit_(exact_limit), precision_(precision) {
  SLUICE_ASSERT(exact_limit <= kMaxExactLimit);
  SLUICE_ASSERT(precision >= kMinPrecision && precision <= kMaxPrecision);
}

void DistinctCounter::add(std::uint64_t hash) {
  if (hll_) {
    add_hll(hash);
  } else {
    insert_exact(hash);
  }
}

void DistinctCounter::add_hll(std::uint64_t hash) noexcept {
  std::uint8_t& reg = registers_[hash >> (64 - precision_)];
  const std::uint8_t rank = rank_of(hash, precision_);
  if (rank > reg) reg = rank;
}

void DistinctCounter::insert_exact(std::uint64_t hash) {
  if (hash == 0) {
    if (has_zero_) return;
    if (exact_size_ >= exact_limit_) {
      promote();
      add_hll(hash);
      return;
    }
    has_zero_ = true;
    ++exact_size_;
    return;
  }
  std::size_t mask = table_.size() - 1;
  std::size_t i = hash & mask;
  if (!table_.empty()) {
    while (table_[i] != 0) {
      if (table_[i] == hash) return;
      i = (i + 1) & mask;
    }
  }
  if (exact_size_ >= exact_limit_) {
    promote();
    add_hll(hash);
    return;
  }
  const std::size_t in_table = exact_size_ - (has_zero_ ? 1 : 0);
  if ((in_table + 1) * 4 > table_.size() * 3) {
    grow_exact();
    mask = table_.size() - 1;
    i = hash & mask;
    while (table_[i] != 0) i = (i + 1) & mask;
  }
  table_[i] = hash;
  ++exact_size_;
}

void DistinctCounter::grow_exact() {
  std::vector<std::uint64_t> old;
  old.swap(table_);
  table_.assign(old.empty() ? kInitialCapacity : old.size() * 2, 0);
  const std::size_t mask = table_.size() - 1;
  for (std::uint64_t h : old) {
    if (h == 0) continue;
    std::size_t i = h & mask;
    while (table_[i] != 0) i = (i + 1) & mask;
    table_[i] = h;
  }
}

void DistinctCounter::promote() {
  hll_ = true;
  registers_.assign(std::size_t{1} << precision_, 0);
  for (std::uint64_t h : table_) {
    if (h != 0) add_hll(h);
  }
  if (has_zero_) add_hll(0);
  std::vector<std::uint64_t>().swap(table_);  // the set's memory goes back now
  has_zero_ = false;
  exact_size_ = 0;
}

void DistinctCounter::reduce_precision(int precision) {
  if (precision >= precision_) return;
  if (hll_) {
    std::vector<std::uint8_t> folded(std::size_t{1} << precision, 0);
    for (std::size_t i = 0; i < registers_.size(); ++i) {
      if (registers_[i] == 0) continue;
      std::uint8_t& reg = folded[i >> (precision_ - precision)];
      reg = std::max(reg, folded_rank(i, registers_[i], precision_, precision));
    }
    registers_.swap(folded);
  }
  precision_ = precision;
}

std::uint64_t DistinctCounter::estimate() const {
  if (!hll_) return exact_size_;
  const int q = 64 - precision_;
  std::uint32_t counts[66] = {};
  for (std::uint8_t r : registers_) ++counts[r];
  const double m = static_cast<double>(registers_.size());
  double z = m * tau(1.0 - counts[q + 1] / m);
  for (int k = q; k >= 1; --k) z = 0.5 * (z + counts[k]);
  z += m * sigma(counts[0] / m);
  constexpr double kAlphaInf = 0.72134752044448170368;  // 1 / (2 ln 2)
  const double e = kAlphaInf * m * m / z;
  if (!(e < 1.8e19)) return std::numeric_limits<std::uint64_t>::max();
  return static_cast<std::uint64_t>(std::llround(e));
}

void DistinctCounter::merge(const DistinctCounter& other) {
  if (&other == this) return;  // a union with itself changes nothing
  exact_limit_ = std::min(exact_limit_, other.exact_limit_);
  reduce_precision(other.precision_);
  if (!hll_ && exact_size_ > exact_limit_) promote();
  if (!other.hll_) {
    for (std::uint64_t h : other.table_) {
      if (h != 0) add(h);
    }
    if (other.has_zero_) add(0);
    return;
  }
  if (!hll_) promote();
  if (other.precision_ == precision_) {
    for (std::size_t i = 0; i < registers_.size(); ++i) {
      registers_[i] = std::max(registers_[i], other.registers_[i]);
    }
    return;
  }
  const int shift = other.precision_ - precision_;
  for (std::size_t i = 0; i < other.registers_.size(); ++i) {
    if (other.registers_[i] == 0) continue;
    std::uint8_t& reg = registers_[i >> shift];
    reg = std::max(reg, folded_rank(i, other.registers_[i], other.precision_, precision_));
  }
}

void DistinctCounter::clear() {
  hll_ = false;
  std::vector<std::uint8_t>().swap(registers_);
  std::fill(table_.begin(), table_.end(), 0);
  has_zero_ = false;
  exact_size_ = 0;
}

std::size_t DistinctCounter::memory_bytes() const noexcept {
  return sizeof(*this) + table_.capacity() * sizeof(std::uint64_t) + registers_.capacity();
}

std::vector<std::uint64_t> DistinctCounter::exact_hashes() const {
  std::vector<std::uint64_t> out;
  if (hll_) return out;
  out.reserve(exact_size_);
  if (has_zero_) out.push_back(0);
  for (std::uint64_t h : table_) {
    if (h != 0) out.push_back(h);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool operator==(const DistinctCounter& a, const DistinctCounter& b) {
  if (a.exact_limit_ != b.exact_limit_ || a.precision_ != b.precision_ || a.hll_ != b.hll_) {
    return false;
  }
  if (a.hll_) return a.registers_ == b.registers_;
  return a.exact_size_ == b.exact_size_ && a.exact_hashes() == b.exact_hashes();
}

void DistinctCounter::encode(std::string& out) const {
  enc::put_u8(out, kVersion);
  if (!hll_) {
    enc::put_u8(out, kKindExact);
    enc::put_u8(out, static_cast<std::uint8_t>(precision_));
    enc::put_varint(out, exact_limit_);
    const std::vector<std::uint64_t> hashes = exact_hashes();
    enc::put_varint(out, hashes.size());
    for (std::uint64_t h : hashes) enc::put_u64(out, h);
    return;
  }
  std::size_t nonzero = 0, sparse_bytes = 0, last = 0;
  for (std::size_t i = 0; i < registers_.size(); ++i) {
    if (registers_[i] == 0) continue;
    const std::size_t delta = i - last;
    sparse_bytes += (delta < 0x80 ? 1 : delta < 0x4000 ? 2 : 3) + 1;
    last = i;
    ++nonzero;
  }
  const std::size_t dense_bytes = registers_.size() / 4 * 3;
  const bool sparse = sparse_bytes < dense_bytes;
  enc::put_u8(out, sparse ? kKindSparse : kKindDense);
  enc::put_u8(out, static_cast<std::uint8_t>(precision_));
  enc::put_varint(out, exact_limit_);
  if (sparse) {
    enc::put_varint(out, nonzero);
    last = 0;
    for (std::size_t i = 0; i < registers_.size(); ++i) {
      if (registers_[i] == 0) continue;
      enc::put_varint(out, i - last);
      enc::put_u8(out, registers_[i]);
      last = i;
    }
    return;
  }
  for (std::size_t i = 0; i < registers_.size(); i += 4) {
    const std::uint32_t bits =
        std::uint32_t{registers_[i]} | std::uint32_t{registers_[i + 1]} << 6 |
        std::uint32_t{registers_[i + 2]} << 12 | std::uint32_t{registers_[i + 3]} << 18;
    enc::put_u8(out, static_cast<std::uint8_t>(bits));
    enc::put_u8(out, static_cast<std::uint8_t>(bits >> 8));
    enc::put_u8(out, static_cast<std::uint8_t>(bits >> 16));
  }
}

Result<DistinctCounter> DistinctCounter::decode(std::string_view& in) {
  std::uint8_t version, kind, precision;
  if (!enc::get_u8(in, version)) return invalid("empty input");
  if (version != kVersion) {
    return invalid("unknown encoding version " + std::to_string(version) + " (this build reads 1)");
  }
  if (!enc::get_u8(in, kind) || !enc::get_u8(in, precision)) return invalid("truncated header");
  if (kind > kKindSparse) return invalid("unknown kind " + std::to_string(kind));
  if (precision < kMinPrecision || precision > kMaxPrecision) {
    return invalid("precision " + std::to_string(precision) + " is not in [4, 18]");
  }
  std::uint64_t limit;
  if (!enc::get_varint(in, limit)) return invalid("truncated or malformed exact limit");
  if (limit > kMaxExactLimit) {
    return invalid("exact limit " + std::to_string(limit) + " is above " +
                   std::to_string(kMaxExactLimit));
  }
  DistinctCounter c(limit, precision);
  if (kind == kKindExact) {
    std::uint64_t n;
    if (!enc::get_varint(in, n)) return invalid("truncated or malformed value count");
    if (n > limit) return invalid("more exact values than the exact limit");
    if (n > in.size() / 8) return invalid("truncated exact values");
    if (n > 0) c.table_.assign(capacity_for(n), 0);
    std::uint64_t previous = 0;
    for (std::uint64_t k = 0; k < n; ++k) {
      std::uint64_t h = 0;
      (void)enc::get_u64(in, h);  // cannot fail: the length was checked
      if (k > 0 && h <= previous) return invalid("exact values are not strictly ascending");
      previous = h;
      c.insert_exact(h);
    }
    return c;
  }
  const int top = max_rank(precision);
  const std::size_t m = std::size_t{1} << precision;
  c.hll_ = true;
  c.registers_.assign(m, 0);
  if (kind == kKindSparse) {
    std::uint64_t n;
    if (!enc::get_varint(in, n)) return invalid("truncated or malformed register count");
    if (n > m) return invalid("more sparse registers than registers");
    std::uint64_t index = 0;
    for (std::uint64_t k = 0; k < n; ++k) {
      std::uint64_t delta;
      std::uint8_t value;
      if (!enc::get_varint(in, delta) || !enc::get_u8(in, value)) {
        return invalid("truncated sparse registers");
      }
      if (k > 0 && delta == 0) return invalid("sparse register indexes are not ascending");
      if (delta >= m || index + delta >= m) return invalid("sparse register index out of range");
      index += delta;
      if (value == 0 || value > top) {
        return invalid("register value " + std::to_string(value) + " out of range");
      }
      c.registers_[index] = value;
    }
    return c;
  }
  if (in.size() < m / 4 * 3) return invalid("truncated dense registers");
  for (std::size_t i = 0; i < m; i += 4) {
    const auto* b = reinterpret_cast<const unsigned char*>(in.data());
    const std::uint32_t bits =
        std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16;
    in.remove_prefix(3);
    for (int k = 0; k < 4; ++k) {
      const auto value = static_cast<std::uint8_t>((bits >> (6 * k)) & 0x3F);
      if (value > top) return invalid("register value " + std::to_string(value) + " out of range");
      c.registers_[i + k] = value;
    }
  }
  return c;
}

}  // namespace sluice::sql::sketch

#include "sql/sketch/distinct_counter.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "lib/core/assert.h"
#include "sql/sketch/encoding.h"

namespace sluice::sql::sketch {
namespace {

constexpr std::uint8_t kVersion = 1;
constexpr std::uint8_t kKindExact = 0;
constexpr std::uint8_t kKindDense = 1;   // 2^p registers, 6 bits each, packed little-endian
constexpr std::uint8_t kKindSparse = 2;  // (index delta, value) pairs of the non-zero registers
// A base value, then 4 bits per register above the base; 15 marks a register written after them
// as an (index delta, value) pair. Registers of a sketch past a few thousand values span less
// than 15 ranks, so this is about 2/3 of the dense form.
constexpr std::uint8_t kKindNibble = 3;
constexpr int kNibbleEscape = 15;
constexpr std::uint8_t kUnfilled = 0xFF;  // while decoding: above every register value
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

std::size_t varint_size(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

std::size_t capacity_for(std::size_t values) {
  std::size_t cap = kInitialCapacity;
  while (values * 4 > cap * 3) cap *= 2;
  return cap;
}

}  // namespace

DistinctCounter::DistinctCounter(std::size_t exact_limit, int precision)
    : exact_limit_(static_cast<std::uint32_t>(exact_limit)),
      precision_(static_cast<std::uint8_t>(precision)) {
  SLUICE_ASSERT(exact_limit <= kMaxExactLimit);
  SLUICE_ASSERT(precision >= kMinPrecision && precision <= kMaxPrecision);
}

DistinctCounter::DistinctCounter(const DistinctCounter& other)
    : exact_limit_(other.exact_limit_),
      exact_size_(other.exact_size_),
      capacity_(other.capacity_),
      precision_(other.precision_),
      hll_(other.hll_),
      has_zero_(other.has_zero_) {
  if (!other.on_heap()) {
    inline_[0] = other.inline_[0];
    inline_[1] = other.inline_[1];
    return;
  }
  const std::size_t words = hll_ ? register_count() / 8 : capacity_;
  heap_ = new std::uint64_t[words];
  std::copy(other.heap_, other.heap_ + words, heap_);
}

DistinctCounter::DistinctCounter(DistinctCounter&& other) noexcept
    : exact_limit_(other.exact_limit_),
      exact_size_(other.exact_size_),
      capacity_(other.capacity_),
      precision_(other.precision_),
      hll_(other.hll_),
      has_zero_(other.has_zero_) {
  if (other.on_heap()) {
    heap_ = other.heap_;
  } else {
    inline_[0] = other.inline_[0];
    inline_[1] = other.inline_[1];
  }
  // `other` is left empty and exact, with its limit and precision.
  other.hll_ = other.has_zero_ = false;
  other.capacity_ = other.exact_size_ = 0;
  other.inline_[0] = other.inline_[1] = 0;
}

DistinctCounter& DistinctCounter::operator=(DistinctCounter other) noexcept {
  std::swap(exact_limit_, other.exact_limit_);
  std::swap(exact_size_, other.exact_size_);
  std::swap(capacity_, other.capacity_);
  std::swap(precision_, other.precision_);
  std::swap(hll_, other.hll_);
  std::swap(has_zero_, other.has_zero_);
  // The union's bytes, whichever member is active; `other` frees what was ours.
  unsigned char bytes[sizeof(inline_)];
  std::memcpy(bytes, inline_, sizeof(bytes));
  std::memcpy(inline_, other.inline_, sizeof(bytes));
  std::memcpy(other.inline_, bytes, sizeof(bytes));
  return *this;
}

DistinctCounter::~DistinctCounter() { release(); }

void DistinctCounter::release() noexcept {
  if (on_heap()) delete[] heap_;
  hll_ = has_zero_ = false;
  capacity_ = exact_size_ = 0;
  inline_[0] = inline_[1] = 0;
}

template <class F>
void DistinctCounter::for_each_exact(F&& f) const {
  if (hll_) return;
  if (has_zero_) f(std::uint64_t{0});
  const std::uint64_t* slots = capacity_ == 0 ? inline_ : heap_;
  const std::uint32_t n = capacity_ == 0 ? kInlineSlots : capacity_;
  for (std::uint32_t k = 0; k < n; ++k) {
    if (slots[k] != 0) f(slots[k]);
  }
}

std::span<const std::uint8_t> DistinctCounter::registers() const noexcept {
  if (!hll_) return {};
  return {regs(), register_count()};
}

void DistinctCounter::add(std::uint64_t hash) {
  if (hll_) {
    add_hll(hash);
  } else {
    insert_exact(hash);
  }
}

void DistinctCounter::add_hll(std::uint64_t hash) noexcept {
  std::uint8_t& reg = regs()[hash >> (64 - precision_)];
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
  std::uint64_t* free_inline = nullptr;
  if (capacity_ == 0) {
    for (std::uint64_t& slot : inline_) {
      if (slot == hash) return;
      if (slot == 0 && free_inline == nullptr) free_inline = &slot;
    }
  } else {
    const std::size_t mask = capacity_ - 1;
    for (std::size_t i = hash & mask; heap_[i] != 0; i = (i + 1) & mask) {
      if (heap_[i] == hash) return;
    }
  }
  // A new value.
  if (exact_size_ >= exact_limit_) {
    promote();
    add_hll(hash);
    return;
  }
  ++exact_size_;
  if (free_inline != nullptr) {
    *free_inline = hash;
    return;
  }
  const std::uint32_t in_table = exact_size_ - (has_zero_ ? 1 : 0);  // with the new value
  if (capacity_ == 0 || std::uint64_t{in_table} * 4 > std::uint64_t{capacity_} * 3) {
    grow_exact(capacity_ == 0 ? kInitialCapacity : capacity_ * 2);
  }
  insert_into_table(hash);
}

void DistinctCounter::insert_into_table(std::uint64_t hash) noexcept {
  const std::size_t mask = capacity_ - 1;
  std::size_t i = hash & mask;
  while (heap_[i] != 0) i = (i + 1) & mask;
  heap_[i] = hash;
}

void DistinctCounter::grow_exact(std::uint32_t capacity) {
  auto* table = new std::uint64_t[capacity]();
  const std::uint64_t* old = capacity_ == 0 ? inline_ : heap_;
  const std::uint32_t old_slots = capacity_ == 0 ? kInlineSlots : capacity_;
  const std::size_t mask = capacity - 1;
  for (std::uint32_t k = 0; k < old_slots; ++k) {
    const std::uint64_t h = old[k];
    if (h == 0) continue;
    std::size_t i = h & mask;
    while (table[i] != 0) i = (i + 1) & mask;
    table[i] = h;
  }
  if (capacity_ != 0) delete[] heap_;
  heap_ = table;
  capacity_ = capacity;
}

void DistinctCounter::promote() {
  // Registers are allocated as 64-bit words (2^p >= 16 bytes), so one buffer type serves both.
  auto* words = new std::uint64_t[register_count() / 8]();
  auto* r = reinterpret_cast<std::uint8_t*>(words);
  for_each_exact([&](std::uint64_t h) {
    std::uint8_t& reg = r[h >> (64 - precision_)];
    reg = std::max(reg, rank_of(h, precision_));
  });
  release();  // the set's memory goes back now
  hll_ = true;
  heap_ = words;
}

void DistinctCounter::reduce_precision(int precision) {
  if (precision >= precision_) return;
  if (hll_) {
    auto* words = new std::uint64_t[(std::size_t{1} << precision) / 8]();
    auto* folded = reinterpret_cast<std::uint8_t*>(words);
    const std::uint8_t* r = regs();
    for (std::size_t i = 0; i < register_count(); ++i) {
      if (r[i] == 0) continue;
      std::uint8_t& reg = folded[i >> (precision_ - precision)];
      reg = std::max(reg, folded_rank(i, r[i], precision_, precision));
    }
    delete[] heap_;
    heap_ = words;
  }
  precision_ = static_cast<std::uint8_t>(precision);
}

std::uint64_t DistinctCounter::estimate() const {
  if (!hll_) return exact_size_;
  const int q = 64 - precision_;
  std::uint32_t counts[66] = {};
  for (std::uint8_t r : registers()) ++counts[r];
  const double m = static_cast<double>(register_count());
  double z = m * tau(1.0 - counts[q + 1] / m);
  for (int k = q; k >= 1; --k) z = 0.5 * (z + counts[k]);
  z += m * sigma(counts[0] / m);
  constexpr double kAlphaInf = 0.72134752044448170368;  // 1 / (2 ln 2)
  const double e = kAlphaInf * m * m / z;
  if (!(e < 1.8e19)) return std::numeric_limits<std::uint64_t>::max();
  return static_cast<std::uint64_t>(std::llround(e));
}

double DistinctCounter::standard_error() const noexcept {
  return hll_ ? 1.04 / std::sqrt(static_cast<double>(register_count())) : 0.0;
}

void DistinctCounter::merge(const DistinctCounter& other) {
  if (&other == this) return;  // a union with itself changes nothing
  exact_limit_ = std::min(exact_limit_, other.exact_limit_);
  reduce_precision(other.precision_);
  if (!hll_ && exact_size_ > exact_limit_) promote();
  if (!other.hll_) {
    other.for_each_exact([&](std::uint64_t h) { add(h); });
    return;
  }
  if (!hll_) promote();
  std::uint8_t* mine = regs();
  const std::uint8_t* theirs = other.regs();
  if (other.precision_ == precision_) {
    for (std::size_t i = 0; i < register_count(); ++i) mine[i] = std::max(mine[i], theirs[i]);
    return;
  }
  const int shift = other.precision_ - precision_;
  for (std::size_t i = 0; i < other.register_count(); ++i) {
    if (theirs[i] == 0) continue;
    std::uint8_t& reg = mine[i >> shift];
    reg = std::max(reg, folded_rank(i, theirs[i], other.precision_, precision_));
  }
}

void DistinctCounter::clear() {
  if (!hll_ && capacity_ > 0) {
    std::fill(heap_, heap_ + capacity_, 0);  // keeps the table for the next values
    has_zero_ = false;
    exact_size_ = 0;
    return;
  }
  release();
}

std::size_t DistinctCounter::memory_bytes() const noexcept {
  if (hll_) return sizeof(*this) + register_count();
  return sizeof(*this) + std::size_t{capacity_} * sizeof(std::uint64_t);
}

std::vector<std::uint64_t> DistinctCounter::exact_hashes() const {
  std::vector<std::uint64_t> out;
  out.reserve(hll_ ? 0 : exact_size_);
  for_each_exact([&](std::uint64_t h) { out.push_back(h); });
  std::sort(out.begin(), out.end());
  return out;
}

bool operator==(const DistinctCounter& a, const DistinctCounter& b) {
  if (a.exact_limit_ != b.exact_limit_ || a.precision_ != b.precision_ || a.hll_ != b.hll_) {
    return false;
  }
  if (a.hll_) {
    const auto ra = a.registers(), rb = b.registers();
    return std::equal(ra.begin(), ra.end(), rb.begin(), rb.end());
  }
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
  // Three forms of the registers; the smallest is written (ties: sparse, nibble, dense).
  const std::span<const std::uint8_t> r = registers();
  const std::size_t m = r.size();
  std::uint8_t base = r[0];
  for (std::uint8_t v : r) base = std::min(base, v);
  std::size_t nonzero = 0, sparse_bytes = 0, escapes = 0, escape_bytes = 0;
  std::size_t last_nonzero = 0, last_escape = 0;
  for (std::size_t i = 0; i < m; ++i) {
    if (r[i] != 0) {
      sparse_bytes += varint_size(i - last_nonzero) + 1;
      last_nonzero = i;
      ++nonzero;
    }
    if (r[i] - base >= kNibbleEscape) {
      escape_bytes += varint_size(i - last_escape) + 1;
      last_escape = i;
      ++escapes;
    }
  }
  sparse_bytes += varint_size(nonzero);
  const std::size_t nibble_bytes = 1 + m / 2 + varint_size(escapes) + escape_bytes;
  const std::size_t dense_bytes = m / 4 * 3;
  const std::uint8_t kind = sparse_bytes <= std::min(nibble_bytes, dense_bytes) ? kKindSparse
                            : nibble_bytes <= dense_bytes                       ? kKindNibble
                                                                                : kKindDense;
  enc::put_u8(out, kind);
  enc::put_u8(out, static_cast<std::uint8_t>(precision_));
  enc::put_varint(out, exact_limit_);
  if (kind == kKindSparse) {
    enc::put_varint(out, nonzero);
    std::size_t last = 0;
    for (std::size_t i = 0; i < m; ++i) {
      if (r[i] == 0) continue;
      enc::put_varint(out, i - last);
      enc::put_u8(out, r[i]);
      last = i;
    }
    return;
  }
  if (kind == kKindNibble) {
    enc::put_u8(out, base);
    auto nibble = [&](std::size_t i) {
      return static_cast<unsigned>(std::min<int>(r[i] - base, kNibbleEscape));
    };
    for (std::size_t i = 0; i < m; i += 2) {
      enc::put_u8(out, static_cast<std::uint8_t>(nibble(i) | nibble(i + 1) << 4));
    }
    enc::put_varint(out, escapes);
    std::size_t last = 0;
    for (std::size_t i = 0; i < m; ++i) {
      if (r[i] - base < kNibbleEscape) continue;
      enc::put_varint(out, i - last);
      enc::put_u8(out, r[i]);
      last = i;
    }
    return;
  }
  for (std::size_t i = 0; i < m; i += 4) {
    const std::uint32_t bits = std::uint32_t{r[i]} | std::uint32_t{r[i + 1]} << 6 |
                               std::uint32_t{r[i + 2]} << 12 | std::uint32_t{r[i + 3]} << 18;
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
  if (kind > kKindNibble) return invalid("unknown kind " + std::to_string(kind));
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
    if (n > kInlineSlots) c.grow_exact(static_cast<std::uint32_t>(capacity_for(n)));
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
  c.promote();  // from empty: zeroed registers
  std::uint8_t* const r = c.regs();
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
      r[index] = value;
    }
    return c;
  }
  if (kind == kKindNibble) {
    std::uint8_t base;
    if (!enc::get_u8(in, base)) return invalid("truncated nibble base");
    if (base > top) return invalid("nibble base " + std::to_string(base) + " out of range");
    if (in.size() < m / 2) return invalid("truncated nibble registers");
    std::size_t marked = 0;
    for (std::size_t i = 0; i < m; ++i) {
      const int nibble = (static_cast<unsigned char>(in[i / 2]) >> (4 * (i % 2))) & 0xF;
      if (nibble == kNibbleEscape) {
        ++marked;
        r[i] = kUnfilled;  // its value follows
        continue;
      }
      if (base + nibble > top) {
        return invalid("register value " + std::to_string(base + nibble) + " out of range");
      }
      r[i] = static_cast<std::uint8_t>(base + nibble);
    }
    in.remove_prefix(m / 2);
    // Exactly the marked registers are filled: as many escapes as marks, at distinct marked
    // indexes.
    std::uint64_t n;
    if (!enc::get_varint(in, n)) return invalid("truncated or malformed escape count");
    if (n != marked) return invalid("escape count does not match the escaped registers");
    std::uint64_t index = 0;
    for (std::uint64_t k = 0; k < n; ++k) {
      std::uint64_t delta;
      std::uint8_t value;
      if (!enc::get_varint(in, delta) || !enc::get_u8(in, value)) {
        return invalid("truncated escaped registers");
      }
      if (k > 0 && delta == 0) return invalid("escaped register indexes are not ascending");
      if (delta >= m || index + delta >= m) return invalid("escaped register index out of range");
      index += delta;
      if (r[index] != kUnfilled) {
        return invalid("escaped register " + std::to_string(index) + " is not marked");
      }
      if (value < base + kNibbleEscape || value > top) {
        return invalid("escaped register value " + std::to_string(value) + " out of range");
      }
      r[index] = value;
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
      r[i + k] = value;
    }
  }
  return c;
}

}  // namespace sluice::sql::sketch

#include "sql/aggregates.h"

#include <cmath>
#include <cstring>

#include "sql/eval.h"
#include "sql/partial_state.h"
#include "sql/sketch/encoding.h"
#include "sql/sketch/hash.h"

namespace sluice::sql {

namespace enc = sketch::enc;

std::size_t SideStore::bytes() const noexcept {
  std::size_t b = strings.capacity() * sizeof(std::string) +
                  distincts.capacity() * sizeof(sketch::DistinctCounter) +
                  quantiles.capacity() * sizeof(sketch::QuantileSketch);
  // Every entry, used or kept for reuse after reset(): a kept entry still holds its heap.
  for (const std::string& s : strings) {
    if (s.capacity() > 15) b += s.capacity();
  }
  for (const sketch::DistinctCounter& d : distincts) {
    b += d.memory_bytes() - sizeof(sketch::DistinctCounter);
  }
  for (const sketch::QuantileSketch& q : quantiles) {
    b += q.memory_bytes() - sizeof(sketch::QuantileSketch);
  }
  b += merges.capacity() * sizeof(MergeState);
  for (std::size_t i = 0; i < merges_used; ++i) b += merges[i].bytes();
  return b;
}

std::size_t MergeState::bytes() const noexcept {
  std::size_t b = parts.capacity() * sizeof(MergePart);
  for (const MergePart& p : parts) b += p.agent.capacity() + p.side.bytes();
  return b;
}

std::uint64_t distinct_hash(const Value& v) noexcept {
  switch (v.type) {
    case SqlType::string:
      return sketch::hash_string(v.s);
    case SqlType::floating:
      return sketch::hash_double(v.d);
    case SqlType::boolean:
      return sketch::hash_bool(v.b);
    default:
      return sketch::hash_int(v.i);
  }
}

namespace {

enum class Ext : std::uint8_t { none, string, distinct, quantile, merge };

Ext ext_of(AggKind k) {
  switch (k) {
    case AggKind::min:
    case AggKind::max:
    case AggKind::first_value:
    case AggKind::last_value:
      return Ext::string;
    case AggKind::count_distinct:
      return Ext::distinct;
    case AggKind::approx_percentile:
      return Ext::quantile;
    case AggKind::merge:
      return Ext::merge;
    default:
      return Ext::none;
  }
}

std::size_t string_cap(const std::string& s) { return s.capacity() > 15 ? s.capacity() : 0; }

using sketch::DistinctCounter;
using sketch::QuantileSketch;

std::uint64_t bits_of(double v) {
  std::uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
double double_of(std::uint64_t u) {
  double v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

/// The meta word of a cell (see Cell): where its side entry is, the stored value's type, and the
/// in-cell values of COUNT(DISTINCT) and APPROX_PERCENTILE.
struct Meta {
  std::uint32_t ext = 0;
  SqlType vt = SqlType::null;
  std::uint8_t small = 0;
  bool in_cell = false;
};

std::uint64_t pack(const Meta& m) {
  return std::uint64_t{m.ext} | (std::uint64_t{static_cast<std::uint8_t>(m.vt)} << 32) |
         (std::uint64_t{m.small} << 40) | (std::uint64_t{m.in_cell ? 1u : 0u} << 48);
}
Meta unpack(std::uint64_t w) {
  Meta m;
  m.ext = static_cast<std::uint32_t>(w);
  m.vt = static_cast<SqlType>(static_cast<std::uint8_t>(w >> 32));
  m.small = static_cast<std::uint8_t>(w >> 40);
  m.in_cell = ((w >> 48) & 1) != 0;
  return m;
}
// APPROX_PERCENTILE keeps its meta word in n (its in-cell values are d and i); the others in d.
Meta meta(AggKind k, const Cell& c) {
  return unpack(k == AggKind::approx_percentile ? static_cast<std::uint64_t>(c.n) : bits_of(c.d));
}
void set_meta(AggKind k, Cell& c, const Meta& m) {
  if (k == AggKind::approx_percentile) {
    c.n = static_cast<std::int64_t>(pack(m));
  } else {
    c.d = double_of(pack(m));
  }
}

// SUM and AVG: the count of values in the low 56 bits of n, the flags in the top 8.
constexpr int kFlagShift = 56;
constexpr std::uint64_t kCountMask = (std::uint64_t{1} << kFlagShift) - 1;
std::int64_t sum_count(const Cell& c) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(c.n) & kCountMask);
}
std::uint8_t sum_flags(const Cell& c) {
  return static_cast<std::uint8_t>(static_cast<std::uint64_t>(c.n) >> kFlagShift);
}
void set_sum(Cell& c, std::int64_t count, std::uint8_t flags) {
  c.n = static_cast<std::int64_t>((static_cast<std::uint64_t>(count) & kCountMask) |
                                  (std::uint64_t{flags} << kFlagShift));
}

Value stored(AggKind k, const Cell& c, const SideStore& side) {
  const Meta m = meta(k, c);
  Value v;
  v.type = m.vt;
  if (m.vt == SqlType::floating) {
    v.d = double_of(static_cast<std::uint64_t>(c.i));
  } else if (m.vt == SqlType::string) {
    v.s = side.strings[m.ext];
  } else {
    v.i = c.i;
    v.b = c.i != 0;
  }
  return v;
}

/// Stores `v` in the cell; returns the growth of the side string.
std::int64_t store(AggKind k, Cell& c, SideStore& side, const Value& v) {
  Meta m = meta(k, c);
  m.vt = v.type;
  set_meta(k, c, m);
  switch (v.type) {
    case SqlType::floating:
      c.i = static_cast<std::int64_t>(bits_of(v.d));
      return 0;
    case SqlType::boolean:
      c.i = v.b ? 1 : 0;
      return 0;
    case SqlType::string:
      break;
    default:
      c.i = v.i;
      return 0;
  }
  c.i = 0;
  std::string& s = side.strings[m.ext];
  const std::size_t before = string_cap(s);
  s.assign(v.s.data(), v.s.size());
  return static_cast<std::int64_t>(string_cap(s)) - static_cast<std::int64_t>(before);
}

SqlType stored_type(AggKind k, const Cell& c) { return meta(k, c).vt; }

void add_number(Cell& c, const Value& v) {
  std::uint8_t flags = sum_flags(c);
  if (v.type == SqlType::integer) {
    std::int64_t sum = 0;
    if (__builtin_add_overflow(c.i, v.i, &sum)) {
      // Past int64: keep the sum as a double from here on (from the operands, not the wrapped
      // result).
      c.d += static_cast<double>(c.i) + static_cast<double>(v.i);
      c.i = 0;
      flags |= 1;
    } else {
      c.i = sum;
    }
  } else {
    c.d += v.d;
    flags |= 1;
  }
  set_sum(c, sum_count(c) + 1, flags);
}

// In-cell states (see Cell): at most this many values before a side entry is taken.
constexpr std::uint8_t kInCellValues = 2;

std::int64_t delta(std::size_t after, std::size_t before) {
  return static_cast<std::int64_t>(after) - static_cast<std::int64_t>(before);
}

std::uint64_t cell_hash(const Cell& c, unsigned k) {
  return static_cast<std::uint64_t>(k == 0 ? c.i : c.n);
}

double cell_value(const Cell& c, unsigned k) {
  return k == 0 ? c.d : double_of(static_cast<std::uint64_t>(c.i));
}

/// The counter an in-cell distinct state stands for (no heap: at most two exact values).
DistinctCounter counter_of(const Cell& c, const Meta& m) {
  DistinctCounter dc(m.ext);  // the exact limit
  for (unsigned k = 0; k < m.small; ++k) dc.add(cell_hash(c, k));
  return dc;
}
/// The sketch an in-cell percentile state stands for.
QuantileSketch sketch_of(const Cell& c, const Meta& m) {
  QuantileSketch q;
  for (unsigned k = 0; k < m.small; ++k) q.add(cell_value(c, k));
  return q;
}

/// Takes a side counter of `limit` (reusing a kept entry and its capacity); returns the growth of
/// the side's bytes.
std::int64_t take_distinct(SideStore& side, std::size_t limit, std::uint32_t& ext) {
  const std::size_t cap = side.distincts.capacity();
  std::int64_t grown = 0;
  if (side.distincts_used == side.distincts.size()) {
    side.distincts.emplace_back(limit);
  } else {
    DistinctCounter& d = side.distincts[side.distincts_used];
    const std::size_t before = d.memory_bytes();
    if (d.exact_limit() == limit) {
      d.clear();  // keeps its capacity
    } else {
      d = DistinctCounter(limit);
    }
    grown += delta(d.memory_bytes(), before);
  }
  grown +=
      delta(side.distincts.capacity(), cap) * static_cast<std::int64_t>(sizeof(DistinctCounter));
  ext = static_cast<std::uint32_t>(side.distincts_used++);
  return grown;
}

std::int64_t take_quantile(SideStore& side, std::uint32_t& ext) {
  const std::size_t cap = side.quantiles.capacity();
  std::int64_t grown = 0;
  if (side.quantiles_used == side.quantiles.size()) {
    side.quantiles.emplace_back();
  } else {
    QuantileSketch& q = side.quantiles[side.quantiles_used];
    const std::size_t before = q.memory_bytes();
    q.clear();
    grown += delta(q.memory_bytes(), before);
  }
  grown +=
      delta(side.quantiles.capacity(), cap) * static_cast<std::int64_t>(sizeof(QuantileSketch));
  ext = static_cast<std::uint32_t>(side.quantiles_used++);
  return grown;
}

/// Moves an in-cell distinct state to a side counter; returns its index.
std::uint32_t spill_distinct(Cell& c, SideStore& side, std::int64_t& grown) {
  const Meta m = meta(AggKind::count_distinct, c);
  if (!m.in_cell) return m.ext;
  std::uint32_t ext = 0;
  grown += take_distinct(side, m.ext, ext);
  DistinctCounter& dc = side.distincts[ext];
  const std::size_t before = dc.memory_bytes();
  for (unsigned k = 0; k < m.small; ++k) dc.add(cell_hash(c, k));
  grown += delta(dc.memory_bytes(), before);
  c = Cell{};
  Meta out;
  out.ext = ext;
  set_meta(AggKind::count_distinct, c, out);
  return ext;
}

std::uint32_t spill_quantile(Cell& c, SideStore& side, std::int64_t& grown) {
  const Meta m = meta(AggKind::approx_percentile, c);
  if (!m.in_cell) return m.ext;
  std::uint32_t ext = 0;
  grown += take_quantile(side, ext);
  QuantileSketch& q = side.quantiles[ext];
  const std::size_t before = q.memory_bytes();
  for (unsigned k = 0; k < m.small; ++k) q.add(cell_value(c, k));
  grown += delta(q.memory_bytes(), before);
  c = Cell{};
  Meta out;
  out.ext = ext;
  set_meta(AggKind::approx_percentile, c, out);
  return ext;
}

std::int64_t add_distinct(Cell& c, SideStore& side, std::uint64_t hash) {
  std::int64_t grown = 0;
  Meta m = meta(AggKind::count_distinct, c);
  if (m.in_cell) {
    for (unsigned k = 0; k < m.small; ++k) {
      if (cell_hash(c, k) == hash) return 0;
    }
    if (m.small < kInCellValues && m.small < m.ext) {
      (m.small == 0 ? c.i : c.n) = static_cast<std::int64_t>(hash);
      ++m.small;
      set_meta(AggKind::count_distinct, c, m);
      return 0;
    }
  }
  DistinctCounter& dc = side.distincts[spill_distinct(c, side, grown)];
  const std::size_t before = dc.memory_bytes();
  dc.add(hash);
  return grown + delta(dc.memory_bytes(), before);
}

std::int64_t add_quantile(Cell& c, SideStore& side, double v) {
  std::int64_t grown = 0;
  Meta m = meta(AggKind::approx_percentile, c);
  // Non-finite values are tallied by the sketch itself.
  if (m.in_cell && m.small < kInCellValues && std::isfinite(v)) {
    if (m.small == 0) {
      c.d = v;
    } else {
      c.i = static_cast<std::int64_t>(bits_of(v));
    }
    ++m.small;
    set_meta(AggKind::approx_percentile, c, m);
    return 0;
  }
  QuantileSketch& q = side.quantiles[spill_quantile(c, side, grown)];
  const std::size_t before = q.memory_bytes();
  q.add(v);
  return grown + delta(q.memory_bytes(), before);
}

}  // namespace

Aggregates::Aggregates(const QueryPlan& plan, std::size_t distinct_exact_limit)
    : distinct_limit_(distinct_exact_limit) {
  for (const AggSpec& s : plan.aggs) {
    specs_.push_back(&s);
    offsets_.push_back(row_words_);
    layout_.push_back({s.kind, static_cast<std::uint32_t>(row_words_)});
    row_words_ += one_word(s.kind) ? 1 : sizeof(Cell) / sizeof(std::int64_t);
  }
}

void Aggregates::init_cell(AggKind kind, Cell& c, SideStore& side, std::size_t distinct_limit) {
  c = Cell{};
  switch (ext_of(kind)) {
    case Ext::none:
      break;
    case Ext::string: {
      if (side.strings_used == side.strings.size()) side.strings.emplace_back();
      Meta m;
      m.ext = static_cast<std::uint32_t>(side.strings_used++);
      side.strings[m.ext].clear();
      set_meta(kind, c, m);
      break;
    }
    case Ext::distinct: {
      // In the cell until a third value (see Cell); ext holds the exact limit for the spill.
      Meta m;
      m.in_cell = true;
      m.ext = static_cast<std::uint32_t>(distinct_limit);
      set_meta(kind, c, m);
      break;
    }
    case Ext::quantile: {
      Meta m;
      m.in_cell = true;
      set_meta(kind, c, m);
      break;
    }
    case Ext::merge: {
      if (side.merges_used == side.merges.size()) side.merges.emplace_back();
      Meta m;
      m.ext = static_cast<std::uint32_t>(side.merges_used++);
      side.merges[m.ext].has_kind = false;
      side.merges[m.ext].parts.clear();
      set_meta(kind, c, m);
      break;
    }
  }
}

void Aggregates::init(Row cells, SideStore& side) const {
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    if (one_word(specs_[a]->kind)) {
      cells[offsets_[a]] = 0;
    } else {
      init_cell(specs_[a]->kind, cell(cells, a), side, distinct_limit_);
    }
  }
}

std::int64_t Aggregates::update(Row cells, SideStore& side, const Value* args, std::int64_t time,
                                const DecodedPartial* decoded, std::uint64_t* replaced) const {
  std::int64_t grown = 0;
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    // Kind and offset from one compact array (not through the AggSpec): this runs per event.
    const AggKind kind = layout_[a].kind;
    std::int64_t* const word = cells + layout_[a].offset;
    if (kind == AggKind::count_star) {
      ++*word;
      continue;
    }
    if (kind == AggKind::count) {
      if (!args[a].is_null()) ++*word;
      continue;
    }
    Cell& c = *reinterpret_cast<Cell*>(word);
    if (kind == AggKind::merge) {
      if (decoded == nullptr || !decoded[a].valid) continue;
      const DecodedPartial& d = decoded[a];
      MergeState& m = side.merges[meta(kind, c).ext];
      const auto before = static_cast<std::int64_t>(m.bytes());
      if (!m.has_kind) {
        m.has_kind = true;
        m.kind = d.kind;
        m.q = d.q;
      }
      // One kind per column (the runner refuses other rows; a damaged checkpoint could mix them).
      if (m.kind != d.kind) continue;
      // A part is one agent's state of one edge window and edge group key: the collector may
      // group more coarsely than the edge (a total over every page).
      MergePart* part = nullptr;
      for (MergePart& p : m.parts) {
        if (p.key == d.key && p.start == d.start && p.end == d.end && p.agent == d.agent) {
          part = &p;
        }
      }
      if (part != nullptr) {
        // The same agent's state for the same window again (re-sent after a crash or a
        // failover): the latest replaces it, so nothing is counted twice.
        if (replaced != nullptr) ++*replaced;
      } else {
        part = &m.parts.emplace_back();
        part->agent = d.agent;
        part->start = d.start;
        part->end = d.end;
        part->key = d.key;
      }
      part->side = d.side;
      part->cell = d.cell;
      grown += static_cast<std::int64_t>(m.bytes()) - before;
      continue;
    }
    Value v = args[a];
    if (v.is_null()) continue;
    switch (kind) {
      case AggKind::sum:
      case AggKind::avg:
        if (v.type == SqlType::string && !parse_number(v.s, v)) break;
        if (v.is_number()) add_number(c, v);
        break;
      case AggKind::min:
      case AggKind::max: {
        // NaN is not ordered: kept, it would hold MIN or MAX (or not) by where it came.
        if (v.type == SqlType::floating && std::isnan(v.d)) break;
        if (stored_type(kind, c) == SqlType::null) {
          grown += store(kind, c, side, v);
          break;
        }
        const auto cmp = compare(v, stored(kind, c, side));
        if (cmp && (kind == AggKind::min ? *cmp < 0 : *cmp > 0)) grown += store(kind, c, side, v);
        break;
      }
      case AggKind::first_value:
        if (stored_type(kind, c) == SqlType::null || time < c.n) {
          grown += store(kind, c, side, v);
          c.n = time;
        }
        break;
      case AggKind::last_value:
        if (stored_type(kind, c) == SqlType::null || time >= c.n) {
          grown += store(kind, c, side, v);
          c.n = time;
        }
        break;
      case AggKind::count_distinct:
        grown += add_distinct(c, side, distinct_hash(v));
        break;
      case AggKind::approx_percentile:
        if (v.type == SqlType::string && !parse_number(v.s, v)) break;
        if (!v.is_number()) break;
        grown += add_quantile(c, side, v.as_double());
        break;
      case AggKind::count_star:
      case AggKind::count:
      case AggKind::merge:
        break;
    }
  }
  return grown;
}

std::int64_t Aggregates::merge_cell(AggKind kind, Cell& c, SideStore& into_side, const Cell& f,
                                    const SideStore& from_side) {
  std::int64_t grown = 0;
  switch (kind) {
    case AggKind::count_star:
    case AggKind::count:
      c.i += f.i;
      break;
    case AggKind::sum:
    case AggKind::avg: {
      std::uint8_t flags = sum_flags(c) | sum_flags(f);
      std::int64_t s = 0;
      if (__builtin_add_overflow(c.i, f.i, &s)) {
        c.d += static_cast<double>(c.i) + static_cast<double>(f.i);
        c.i = 0;
        flags |= 1;
      } else {
        c.i = s;
      }
      c.d += f.d;
      set_sum(c, sum_count(c) + sum_count(f), flags);
      break;
    }
    case AggKind::min:
    case AggKind::max: {
      if (stored_type(kind, f) == SqlType::null) break;
      const Value fv = stored(kind, f, from_side);
      if (stored_type(kind, c) == SqlType::null) {
        grown += store(kind, c, into_side, fv);
        break;
      }
      const auto cmp = compare(fv, stored(kind, c, into_side));
      if (cmp && (kind == AggKind::min ? *cmp < 0 : *cmp > 0)) {
        grown += store(kind, c, into_side, fv);
      }
      break;
    }
    case AggKind::first_value:
      // Ties go to `into`, the earlier part of the stream.
      if (stored_type(kind, f) != SqlType::null &&
          (stored_type(kind, c) == SqlType::null || f.n < c.n)) {
        grown += store(kind, c, into_side, stored(kind, f, from_side));
        c.n = f.n;
      }
      break;
    case AggKind::last_value:
      if (stored_type(kind, f) != SqlType::null &&
          (stored_type(kind, c) == SqlType::null || f.n >= c.n)) {
        grown += store(kind, c, into_side, stored(kind, f, from_side));
        c.n = f.n;
      }
      break;
    case AggKind::count_distinct: {
      const Meta fm = meta(kind, f);
      if (fm.in_cell) {
        // Adding the values one by one gives the set (or registers) a merge gives.
        for (unsigned k = 0; k < fm.small; ++k)
          grown += add_distinct(c, into_side, cell_hash(f, k));
        break;
      }
      DistinctCounter& dc = into_side.distincts[spill_distinct(c, into_side, grown)];
      const std::size_t before = dc.memory_bytes();
      dc.merge(from_side.distincts[fm.ext]);
      grown += delta(dc.memory_bytes(), before);
      break;
    }
    case AggKind::approx_percentile: {
      const Meta fm = meta(kind, f);
      if (fm.in_cell) {
        // Same α: a merge adds bucket counts, as adding the values does.
        for (unsigned k = 0; k < fm.small; ++k) {
          grown += add_quantile(c, into_side, cell_value(f, k));
        }
        break;
      }
      QuantileSketch& q = into_side.quantiles[spill_quantile(c, into_side, grown)];
      const std::size_t before = q.memory_bytes();
      q.merge(from_side.quantiles[fm.ext]);
      grown += delta(q.memory_bytes(), before);
      break;
    }
    case AggKind::merge: {
      // Sessions never hold MERGE (the planner refuses it); kept total for completeness.
      MergeState& m = into_side.merges[meta(kind, c).ext];
      const MergeState& o = from_side.merges[meta(kind, f).ext];
      if (!o.has_kind) break;
      if (!m.has_kind) {
        m.has_kind = true;
        m.kind = o.kind;
        m.q = o.q;
      }
      const std::size_t before = m.bytes();
      for (const MergePart& p : o.parts) m.parts.push_back(p);
      grown += delta(m.bytes(), before);
      break;
    }
  }
  return grown;
}

std::int64_t Aggregates::merge(Row into, SideStore& into_side, ConstRow from,
                               const SideStore& from_side) const {
  std::int64_t grown = 0;
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    if (one_word(specs_[a]->kind)) {
      into[offsets_[a]] += from[offsets_[a]];
      continue;
    }
    grown += merge_cell(specs_[a]->kind, cell(into, a), into_side, cell(from, a), from_side);
  }
  return grown;
}

Value Aggregates::finalize_cell(AggKind kind, SqlType result_type, double q, const Cell& c,
                                const SideStore& side) {
  switch (kind) {
    case AggKind::count_star:
    case AggKind::count:
      return Value::integer(c.i);
    case AggKind::count_distinct: {
      const Meta m = meta(kind, c);
      if (m.in_cell) return Value::integer(m.small);  // exact
      return Value::integer(static_cast<std::int64_t>(side.distincts[m.ext].estimate()));
    }
    case AggKind::sum:
      if (sum_count(c) == 0) return Value::null();
      if ((sum_flags(c) & 1) != 0 || result_type == SqlType::floating) {
        return Value::floating(c.d + static_cast<double>(c.i));
      }
      return Value::integer(c.i);
    case AggKind::avg:
      return sum_count(c) == 0 ? Value::null()
                               : Value::floating((c.d + static_cast<double>(c.i)) /
                                                 static_cast<double>(sum_count(c)));
    case AggKind::min:
    case AggKind::max:
    case AggKind::first_value:
    case AggKind::last_value:
      return stored(kind, c, side);
    case AggKind::approx_percentile: {
      const Meta m = meta(kind, c);
      if (m.in_cell) {
        if (m.small == 0) return Value::null();
        return Value::floating(sketch_of(c, m).quantile(q));
      }
      const sketch::QuantileSketch& s = side.quantiles[m.ext];
      return s.count() == 0 ? Value::null() : Value::floating(s.quantile(q));
    }
    case AggKind::merge:
      break;
  }
  return Value::null();
}

void Aggregates::finalize(ConstRow cells, const SideStore& side, Value* out,
                          RowScratch* scratch) const {
  if (scratch != nullptr) {
    scratch->side.reset();
    scratch->cells.resize(specs_.size());
  }
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    const AggSpec& spec = *specs_[a];
    const Cell word = one_word(spec.kind) ? as_cell(cells[offsets_[a]]) : Cell{};
    const Cell& c = one_word(spec.kind) ? word : cell(cells, a);
    if (spec.partial && scratch != nullptr) {
      scratch->bytes.clear();
      encode_partial(spec.kind, spec.q, scratch->agent, scratch->start, scratch->end, scratch->key,
                     c, side, scratch->bytes);
      std::string text;
      base64_encode(scratch->bytes, text);
      out[a] = Value::string(scratch->arena->copy(text));
      continue;
    }
    if (spec.kind == AggKind::merge) {
      out[a] = Value::null();
      if (scratch == nullptr) continue;
      const MergeState& m = merge_state(a, cells, side);
      if (!m.has_kind || m.parts.empty()) continue;
      Cell& acc = scratch->cells[a];
      init_cell(m.kind, acc, scratch->side, distinct_limit_);
      for (const MergePart& p : m.parts) merge_cell(m.kind, acc, scratch->side, p.cell, p.side);
      out[a] = finalize_cell(m.kind, SqlType::any, m.q, acc, scratch->side);
      // The scratch strings move as later columns add theirs: the row keeps a copy.
      if (out[a].type == SqlType::string) out[a].s = scratch->arena->copy(out[a].s);
      continue;
    }
    out[a] = finalize_cell(spec.kind, spec.result_type, spec.q, c, side);
  }
}

void Aggregates::encode_cell(AggKind kind, const Cell& c, const SideStore& side, std::string& out) {
  switch (kind) {
    case AggKind::count_star:
    case AggKind::count:
      enc::put_varint(out, static_cast<std::uint64_t>(c.i));
      break;
    case AggKind::sum:
    case AggKind::avg:
      enc::put_varint(out, enc::zigzag(c.i));
      enc::put_f64(out, c.d);
      enc::put_varint(out, static_cast<std::uint64_t>(sum_count(c)));
      enc::put_u8(out, sum_flags(c));
      break;
    case AggKind::min:
    case AggKind::max:
    case AggKind::first_value:
    case AggKind::last_value: {
      const Meta m = meta(kind, c);
      enc::put_u8(out, static_cast<std::uint8_t>(m.vt));
      if (kind == AggKind::first_value || kind == AggKind::last_value) {
        enc::put_varint(out, enc::zigzag(c.n));
      }
      if (m.vt == SqlType::string) {
        const std::string& s = side.strings[m.ext];
        enc::put_varint(out, s.size());
        out.append(s);
      } else if (m.vt == SqlType::floating) {
        enc::put_f64(out, double_of(static_cast<std::uint64_t>(c.i)));
      } else if (m.vt != SqlType::null) {
        enc::put_varint(out, enc::zigzag(c.i));
      }
      break;
    }
    case AggKind::count_distinct: {
      const Meta m = meta(kind, c);
      if (m.in_cell) {
        counter_of(c, m).encode(out);  // the bytes of a side counter with the same values
      } else {
        side.distincts[m.ext].encode(out);
      }
      break;
    }
    case AggKind::approx_percentile: {
      const Meta m = meta(kind, c);
      if (m.in_cell) {
        sketch_of(c, m).encode(out);
      } else {
        side.quantiles[m.ext].encode(out);
      }
      break;
    }
    case AggKind::merge: {
      // Checkpoints of a collector: every part, so that re-sent states still replace after a
      // restart.
      const MergeState& m = side.merges[meta(kind, c).ext];
      enc::put_u8(out, m.has_kind ? partial_code(m.kind) : 0);
      if (!m.has_kind) break;
      enc::put_f64(out, m.q);
      enc::put_varint(out, m.parts.size());
      for (const MergePart& p : m.parts) {
        enc::put_varint(out, p.agent.size());
        out.append(p.agent);
        enc::put_varint(out, enc::zigzag(p.start));
        enc::put_varint(out, enc::zigzag(p.end));
        enc::put_u64(out, p.key);
        encode_cell(m.kind, p.cell, p.side, out);
      }
      break;
    }
  }
}

bool Aggregates::decode_cell(AggKind kind, std::string_view& in, Cell& c, SideStore& side) {
  std::uint64_t u = 0;
  switch (kind) {
    case AggKind::count_star:
    case AggKind::count:
      if (!enc::get_varint(in, u)) return false;
      c.i = static_cast<std::int64_t>(u);
      break;
    case AggKind::sum:
    case AggKind::avg: {
      if (!enc::get_varint(in, u)) return false;
      c.i = enc::unzigzag(u);
      if (!enc::get_f64(in, c.d) || !enc::get_varint(in, u)) return false;
      std::uint8_t flags = 0;
      // The count shares its word with the flags: more than 2^56 values is a damaged state.
      if (u > kCountMask || !enc::get_u8(in, flags)) return false;
      set_sum(c, static_cast<std::int64_t>(u), flags);
      break;
    }
    case AggKind::min:
    case AggKind::max:
    case AggKind::first_value:
    case AggKind::last_value: {
      std::uint8_t t = 0;
      if (!enc::get_u8(in, t) || t > static_cast<std::uint8_t>(SqlType::interval)) return false;
      Meta m = meta(kind, c);
      m.vt = static_cast<SqlType>(t);
      set_meta(kind, c, m);
      if (kind == AggKind::first_value || kind == AggKind::last_value) {
        if (!enc::get_varint(in, u)) return false;
        c.n = enc::unzigzag(u);
      }
      if (m.vt == SqlType::string) {
        if (!enc::get_varint(in, u) || u > in.size()) return false;
        side.strings[m.ext].assign(in.data(), u);
        in.remove_prefix(u);
      } else if (m.vt == SqlType::floating) {
        double v = 0;
        if (!enc::get_f64(in, v)) return false;
        c.i = static_cast<std::int64_t>(bits_of(v));
      } else if (m.vt != SqlType::null) {
        if (!enc::get_varint(in, u)) return false;
        c.i = enc::unzigzag(u);
      }
      break;
    }
    case AggKind::count_distinct: {
      auto d = sketch::DistinctCounter::decode(in);
      if (!d) return false;
      Meta m = meta(kind, c);
      if (m.in_cell) {
        take_distinct(side, d->exact_limit(), m.ext);
        m.in_cell = false;
        m.small = 0;
        c = Cell{};
        set_meta(kind, c, m);
      }
      side.distincts[m.ext] = std::move(*d);
      break;
    }
    case AggKind::approx_percentile: {
      auto q = sketch::QuantileSketch::decode(in);
      if (!q) return false;
      Meta m = meta(kind, c);
      if (m.in_cell) {
        take_quantile(side, m.ext);
        m.in_cell = false;
        m.small = 0;
        c = Cell{};
        set_meta(kind, c, m);
      }
      side.quantiles[m.ext] = std::move(*q);
      break;
    }
    case AggKind::merge: {
      MergeState& m = side.merges[meta(kind, c).ext];
      std::uint8_t code = 0;
      if (!enc::get_u8(in, code)) return false;
      m.has_kind = false;
      m.parts.clear();
      if (code == 0) break;
      const auto k = partial_kind(code);
      if (!k || !enc::get_f64(in, m.q) || !enc::get_varint(in, u)) return false;
      if (u > in.size()) return false;  // each part takes a byte at least
      m.has_kind = true;
      m.kind = *k;
      for (std::uint64_t i = 0; i < u; ++i) {
        MergePart& p = m.parts.emplace_back();
        std::uint64_t n = 0, s = 0, e = 0;
        if (!enc::get_varint(in, n) || n > in.size()) return false;
        p.agent.assign(in.data(), n);
        in.remove_prefix(n);
        if (!enc::get_varint(in, s) || !enc::get_varint(in, e)) return false;
        p.start = enc::unzigzag(s);
        p.end = enc::unzigzag(e);
        if (!enc::get_u64(in, p.key)) return false;
        init_cell(m.kind, p.cell, p.side, 0);
        if (!decode_cell(m.kind, in, p.cell, p.side)) return false;
      }
      break;
    }
  }
  return true;
}

void Aggregates::encode(ConstRow cells, const SideStore& side, std::string& out) const {
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    const AggKind kind = specs_[a]->kind;
    if (one_word(kind)) {
      encode_cell(kind, as_cell(cells[offsets_[a]]), side, out);
    } else {
      encode_cell(kind, cell(cells, a), side, out);
    }
  }
}

bool Aggregates::decode(std::string_view& in, Row cells, SideStore& side) const {
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    const AggKind kind = specs_[a]->kind;
    if (one_word(kind)) {
      Cell c = as_cell(cells[offsets_[a]]);
      if (!decode_cell(kind, in, c, side)) return false;
      cells[offsets_[a]] = c.i;
    } else if (!decode_cell(kind, in, cell(cells, a), side)) {
      return false;
    }
  }
  return true;
}

const MergeState& Aggregates::merge_state(std::size_t a, ConstRow cells,
                                          const SideStore& side) const {
  return side.merges[meta(AggKind::merge, cell(cells, a)).ext];
}

}  // namespace sluice::sql

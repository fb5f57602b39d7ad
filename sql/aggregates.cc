#include "sql/aggregates.h"

#include "sql/eval.h"
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

enum class Ext : std::uint8_t { none, string, distinct, quantile };

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
    default:
      return Ext::none;
  }
}

std::size_t string_cap(const std::string& s) { return s.capacity() > 15 ? s.capacity() : 0; }

Value stored(const Cell& c, const SideStore& side) {
  Value v;
  v.type = c.vt;
  v.i = c.i;
  v.b = c.i != 0;
  v.d = c.d;
  if (c.vt == SqlType::string) v.s = side.strings[c.ext];
  return v;
}

/// Stores `v` in the cell; returns the growth of the side string.
std::int64_t store(Cell& c, SideStore& side, const Value& v) {
  c.vt = v.type;
  c.i = v.type == SqlType::boolean ? (v.b ? 1 : 0) : v.i;
  c.d = v.d;
  if (v.type != SqlType::string) return 0;
  std::string& s = side.strings[c.ext];
  const std::size_t before = string_cap(s);
  s.assign(v.s.data(), v.s.size());
  return static_cast<std::int64_t>(string_cap(s)) - static_cast<std::int64_t>(before);
}

void add_number(Cell& c, const Value& v) {
  if (v.type == SqlType::integer) {
    if (__builtin_add_overflow(c.i, v.i, &c.i)) {
      // Past int64: keep the sum as a double from here on.
      c.d += static_cast<double>(c.i) + static_cast<double>(v.i);
      c.i = 0;
      c.flags |= 1;
    }
  } else {
    c.d += v.d;
    c.flags |= 1;
  }
  ++c.n;
}

}  // namespace

Aggregates::Aggregates(const QueryPlan& plan, std::size_t distinct_exact_limit)
    : distinct_limit_(distinct_exact_limit) {
  for (const AggSpec& s : plan.aggs) specs_.push_back(&s);
}

void Aggregates::init(Cell* cells, SideStore& side) const {
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    Cell& c = cells[a];
    c = Cell{};
    switch (ext_of(specs_[a]->kind)) {
      case Ext::none:
        break;
      case Ext::string:
        if (side.strings_used == side.strings.size()) side.strings.emplace_back();
        c.ext = static_cast<std::uint32_t>(side.strings_used++);
        side.strings[c.ext].clear();
        break;
      case Ext::distinct:
        if (side.distincts_used == side.distincts.size()) {
          side.distincts.emplace_back(distinct_limit_);
        } else {
          side.distincts[side.distincts_used].clear();
        }
        c.ext = static_cast<std::uint32_t>(side.distincts_used++);
        break;
      case Ext::quantile:
        if (side.quantiles_used == side.quantiles.size()) {
          side.quantiles.emplace_back();
        } else {
          side.quantiles[side.quantiles_used].clear();
        }
        c.ext = static_cast<std::uint32_t>(side.quantiles_used++);
        break;
    }
  }
}

std::int64_t Aggregates::update(Cell* cells, SideStore& side, const Value* args,
                                std::int64_t time) const {
  std::int64_t grown = 0;
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    Cell& c = cells[a];
    const AggKind kind = specs_[a]->kind;
    if (kind == AggKind::count_star) {
      ++c.i;
      continue;
    }
    Value v = args[a];
    if (v.is_null()) continue;
    switch (kind) {
      case AggKind::count:
        ++c.i;
        break;
      case AggKind::sum:
      case AggKind::avg:
        if (v.type == SqlType::string && !parse_number(v.s, v)) break;
        if (v.is_number()) add_number(c, v);
        break;
      case AggKind::min:
      case AggKind::max: {
        if (c.vt == SqlType::null) {
          grown += store(c, side, v);
          break;
        }
        const auto cmp = compare(v, stored(c, side));
        if (cmp && (kind == AggKind::min ? *cmp < 0 : *cmp > 0)) grown += store(c, side, v);
        break;
      }
      case AggKind::first_value:
        if (c.vt == SqlType::null || time < c.n) {
          grown += store(c, side, v);
          c.n = time;
        }
        break;
      case AggKind::last_value:
        if (c.vt == SqlType::null || time >= c.n) {
          grown += store(c, side, v);
          c.n = time;
        }
        break;
      case AggKind::count_distinct: {
        sketch::DistinctCounter& dc = side.distincts[c.ext];
        const std::size_t before = dc.memory_bytes();
        dc.add(distinct_hash(v));
        grown += static_cast<std::int64_t>(dc.memory_bytes()) - static_cast<std::int64_t>(before);
        break;
      }
      case AggKind::approx_percentile: {
        if (v.type == SqlType::string && !parse_number(v.s, v)) break;
        if (!v.is_number()) break;
        sketch::QuantileSketch& q = side.quantiles[c.ext];
        const std::size_t before = q.memory_bytes();
        q.add(v.as_double());
        grown += static_cast<std::int64_t>(q.memory_bytes()) - static_cast<std::int64_t>(before);
        break;
      }
      case AggKind::count_star:
        break;
    }
  }
  return grown;
}

void Aggregates::merge(Cell* into, SideStore& into_side, const Cell* from,
                       const SideStore& from_side) const {
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    Cell& c = into[a];
    const Cell& f = from[a];
    const AggKind kind = specs_[a]->kind;
    switch (kind) {
      case AggKind::count_star:
      case AggKind::count:
        c.i += f.i;
        break;
      case AggKind::sum:
      case AggKind::avg: {
        std::int64_t s = 0;
        if (__builtin_add_overflow(c.i, f.i, &s)) {
          c.d += static_cast<double>(c.i) + static_cast<double>(f.i);
          c.i = 0;
          c.flags |= 1;
        } else {
          c.i = s;
        }
        c.d += f.d;
        c.n += f.n;
        c.flags |= f.flags;
        break;
      }
      case AggKind::min:
      case AggKind::max: {
        if (f.vt == SqlType::null) break;
        const Value fv = stored(f, from_side);
        if (c.vt == SqlType::null) {
          store(c, into_side, fv);
          break;
        }
        const auto cmp = compare(fv, stored(c, into_side));
        if (cmp && (kind == AggKind::min ? *cmp < 0 : *cmp > 0)) store(c, into_side, fv);
        break;
      }
      case AggKind::first_value:
        // Ties go to `into`, the earlier part of the stream.
        if (f.vt != SqlType::null && (c.vt == SqlType::null || f.n < c.n)) {
          store(c, into_side, stored(f, from_side));
          c.n = f.n;
        }
        break;
      case AggKind::last_value:
        if (f.vt != SqlType::null && (c.vt == SqlType::null || f.n >= c.n)) {
          store(c, into_side, stored(f, from_side));
          c.n = f.n;
        }
        break;
      case AggKind::count_distinct:
        into_side.distincts[c.ext].merge(from_side.distincts[f.ext]);
        break;
      case AggKind::approx_percentile:
        into_side.quantiles[c.ext].merge(from_side.quantiles[f.ext]);
        break;
    }
  }
}

void Aggregates::finalize(const Cell* cells, const SideStore& side, Value* out) const {
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    const Cell& c = cells[a];
    switch (specs_[a]->kind) {
      case AggKind::count_star:
      case AggKind::count:
        out[a] = Value::integer(c.i);
        break;
      case AggKind::count_distinct:
        out[a] = Value::integer(static_cast<std::int64_t>(side.distincts[c.ext].estimate()));
        break;
      case AggKind::sum:
        if (c.n == 0) {
          out[a] = Value::null();
        } else if ((c.flags & 1) != 0 || specs_[a]->result_type == SqlType::floating) {
          out[a] = Value::floating(c.d + static_cast<double>(c.i));
        } else {
          out[a] = Value::integer(c.i);
        }
        break;
      case AggKind::avg:
        out[a] = c.n == 0
                     ? Value::null()
                     : Value::floating((c.d + static_cast<double>(c.i)) / static_cast<double>(c.n));
        break;
      case AggKind::min:
      case AggKind::max:
      case AggKind::first_value:
      case AggKind::last_value:
        out[a] = stored(c, side);
        break;
      case AggKind::approx_percentile: {
        const sketch::QuantileSketch& q = side.quantiles[c.ext];
        out[a] = q.count() == 0 ? Value::null() : Value::floating(q.quantile(specs_[a]->q));
        break;
      }
    }
  }
}

void Aggregates::encode(const Cell* cells, const SideStore& side, std::string& out) const {
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    const Cell& c = cells[a];
    const AggKind kind = specs_[a]->kind;
    switch (kind) {
      case AggKind::count_star:
      case AggKind::count:
        enc::put_varint(out, static_cast<std::uint64_t>(c.i));
        break;
      case AggKind::sum:
      case AggKind::avg:
        enc::put_varint(out, enc::zigzag(c.i));
        enc::put_f64(out, c.d);
        enc::put_varint(out, static_cast<std::uint64_t>(c.n));
        enc::put_u8(out, c.flags);
        break;
      case AggKind::min:
      case AggKind::max:
      case AggKind::first_value:
      case AggKind::last_value:
        enc::put_u8(out, static_cast<std::uint8_t>(c.vt));
        if (kind == AggKind::first_value || kind == AggKind::last_value) {
          enc::put_varint(out, enc::zigzag(c.n));
        }
        if (c.vt == SqlType::string) {
          const std::string& s = side.strings[c.ext];
          enc::put_varint(out, s.size());
          out.append(s);
        } else if (c.vt == SqlType::floating) {
          enc::put_f64(out, c.d);
        } else if (c.vt != SqlType::null) {
          enc::put_varint(out, enc::zigzag(c.i));
        }
        break;
      case AggKind::count_distinct:
        side.distincts[c.ext].encode(out);
        break;
      case AggKind::approx_percentile:
        side.quantiles[c.ext].encode(out);
        break;
    }
  }
}

bool Aggregates::decode(std::string_view& in, Cell* cells, SideStore& side) const {
  for (std::size_t a = 0; a < specs_.size(); ++a) {
    Cell& c = cells[a];
    const AggKind kind = specs_[a]->kind;
    std::uint64_t u = 0;
    switch (kind) {
      case AggKind::count_star:
      case AggKind::count:
        if (!enc::get_varint(in, u)) return false;
        c.i = static_cast<std::int64_t>(u);
        break;
      case AggKind::sum:
      case AggKind::avg:
        if (!enc::get_varint(in, u)) return false;
        c.i = enc::unzigzag(u);
        if (!enc::get_f64(in, c.d) || !enc::get_varint(in, u)) return false;
        c.n = static_cast<std::int64_t>(u);
        if (!enc::get_u8(in, c.flags)) return false;
        break;
      case AggKind::min:
      case AggKind::max:
      case AggKind::first_value:
      case AggKind::last_value: {
        std::uint8_t t = 0;
        if (!enc::get_u8(in, t) || t > static_cast<std::uint8_t>(SqlType::interval)) return false;
        c.vt = static_cast<SqlType>(t);
        if (kind == AggKind::first_value || kind == AggKind::last_value) {
          if (!enc::get_varint(in, u)) return false;
          c.n = enc::unzigzag(u);
        }
        if (c.vt == SqlType::string) {
          if (!enc::get_varint(in, u) || u > in.size()) return false;
          side.strings[c.ext].assign(in.data(), u);
          in.remove_prefix(u);
        } else if (c.vt == SqlType::floating) {
          if (!enc::get_f64(in, c.d)) return false;
        } else if (c.vt != SqlType::null) {
          if (!enc::get_varint(in, u)) return false;
          c.i = enc::unzigzag(u);
        }
        break;
      }
      case AggKind::count_distinct: {
        auto d = sketch::DistinctCounter::decode(in);
        if (!d) return false;
        side.distincts[c.ext] = std::move(*d);
        break;
      }
      case AggKind::approx_percentile: {
        auto q = sketch::QuantileSketch::decode(in);
        if (!q) return false;
        side.quantiles[c.ext] = std::move(*q);
        break;
      }
    }
  }
  return true;
}

}  // namespace sluice::sql

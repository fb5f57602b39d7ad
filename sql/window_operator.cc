#include "sql/window_operator.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "lib/codec/json.h"
#include "sql/json_path.h"
#include "sql/partial_state.h"
#include "sql/sketch/encoding.h"
#include "sql/sketch/hash.h"

namespace sluice::sql {

namespace enc = sketch::enc;

namespace {

std::int64_t floor_div(std::int64_t t, std::int64_t d) {
  std::int64_t q = t / d;
  if ((t % d != 0) && (t < 0)) --q;
  return q;
}

/// a + b, saturating at the int64 bounds (window ends near the end of time never overflow).
std::int64_t sat_add(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}
std::int64_t sat_sub(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) return b > 0 ? INT64_MIN : INT64_MAX;
  return r;
}

constexpr std::uint8_t kStateVersion = 1;
constexpr std::size_t kPoolMaxBytes = std::size_t{4} << 20;
constexpr std::string_view kStateMagic = "SQLW";

FieldType field_type_of(SqlType t) {
  switch (t) {
    case SqlType::boolean:
      return FieldType::boolean;
    case SqlType::integer:
    case SqlType::interval:
      return FieldType::integer;
    case SqlType::floating:
      return FieldType::floating;
    case SqlType::null:
      return FieldType::null;
    default:
      return FieldType::string;
  }
}

// What std::from_chars reads from `text` (0 if nothing), with a fast path for the plain decimals
// of most events ("-12.75"): at most 15 digits, so the digits are an exact double below 2^53 and
// so is the power of ten, and one IEEE division gives the correctly rounded value, as from_chars
// does (Clinger's fast path). Anything else (exponents, long numbers) goes to from_chars.
double to_double(std::string_view text) {
  static constexpr double kPow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                      1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  const char* p = text.data();
  const char* const end = p + text.size();
  const bool neg = p != end && *p == '-';
  if (neg) ++p;
  std::uint64_t m = 0;
  int digits = 0, frac = 0;
  const char* const int_begin = p;
  while (p != end && *p >= '0' && *p <= '9') {
    m = m * 10 + static_cast<std::uint64_t>(*p++ - '0');
    ++digits;
  }
  bool plain = p != int_begin;
  if (plain && p != end && *p == '.') {
    const char* const frac_begin = ++p;
    while (p != end && *p >= '0' && *p <= '9') {
      m = m * 10 + static_cast<std::uint64_t>(*p++ - '0');
      ++digits;
    }
    frac = static_cast<int>(p - frac_begin);
    plain = frac > 0;
  }
  if (plain && p == end && digits <= 15) {
    const double d = static_cast<double>(m) / kPow10[frac];
    return neg ? -d : d;
  }
  double d = 0;
  std::from_chars(text.data(), text.data() + text.size(), d);
  return d;
}

}  // namespace

WindowOperator::WindowOperator(CompiledQuery query, RunnerOptions options)
    : query_(std::move(query)),
      plan_(query_.plan()),
      options_(std::move(options)),
      aggs_(plan_, options_.distinct_exact_limit) {
  delay_ = options_.watermark_delay_ns.value_or(plan_.watermark_delay_ns.value_or(0));
  lateness_ = options_.allowed_lateness_ns;
  std::size_t nslots = plan_.fields.size();
  if (options_.time_source == TimeSource::event_timestamp && plan_.watermark_column &&
      options_.time_field.empty()) {
    // WATERMARK FOR col (or TUMBLE(col, ...)) names the event time.
    options_.time_source = TimeSource::field;
  }
  if (options_.time_source == TimeSource::field) {
    const std::string& name =
        options_.time_field.empty() ? *plan_.watermark_column : options_.time_field;
    for (std::size_t i = 0; i < plan_.fields.size(); ++i) {
      if (plan_.fields[i] == name) time_slot_ = static_cast<int>(i);
    }
    if (time_slot_ < 0) time_slot_ = static_cast<int>(nslots++);
    time_format_ = options_.time_format;
  }
  slots_.resize(nslots);
  for (std::size_t s = 0; s < nslots; ++s) {
    slot_names_.push_back(s < plan_.fields.size() ? plan_.fields[s] : options_.time_field);
  }
  slot_raw_.resize(nslots);
  slot_raw_type_.resize(nslots, FieldType::null);
  slot_hint_.resize(nslots, 0);
  key_values_.resize(plan_.keys.size());
  args_.resize(aggs_.size());
  agg_out_.resize(aggs_.size());
  if (plan_.has_merge) {
    decoded_.resize(aggs_.size());
    merge_kind_.assign(aggs_.size(), 0);
  }
  key_buf_.reserve(256);
  body_.reserve(256);
}

std::size_t WindowOperator::open_windows() const noexcept {
  return plan_.window.kind == WindowKind::session ? open_sessions_ : open_.size();
}

namespace {

// An optional '-' and 1 to 18 digits (no overflow possible): from_chars's answer at a fraction of
// its cost (it was 125 instructions for a 9-digit id). Anything else is left to from_chars.
bool small_integer(std::string_view text, std::int64_t& out) noexcept {
  const bool neg = !text.empty() && text[0] == '-';
  const std::size_t begin = neg ? 1 : 0;
  const std::size_t n = text.size() - begin;
  if (n == 0 || n > 18) return false;
  std::int64_t v = 0;
  for (std::size_t k = begin; k < text.size(); ++k) {
    const auto d = static_cast<unsigned>(static_cast<unsigned char>(text[k]) - '0');
    if (d > 9) return false;
    v = v * 10 + static_cast<std::int64_t>(d);
  }
  out = neg ? -v : v;
  return true;
}

}  // namespace

bool WindowOperator::load_slots(const EventView& ev) {
  const std::size_t nslots = slots_.size();
  const std::size_t nfields = ev.field_count();
  std::size_t missing = 0;
  for (std::size_t s = 0; s < nslots; ++s) {
    const std::string_view name = slot_names_[s];
    // Found in locals and stored once: reading back slot_raw_ right after writing it stalled.
    std::string_view raw;
    FieldType raw_type = FieldType::null;
    const std::uint32_t h = slot_hint_[s];
    bool found = h < nfields && ev.field_if(h, name, raw, raw_type);
    for (std::size_t i = 0; !found && i < nfields; ++i) {
      if (ev.field_if(i, name, raw, raw_type)) {
        slot_hint_[s] = static_cast<std::uint32_t>(i);
        found = true;
      }
    }
    if (!found && name.find('.') != std::string_view::npos) {
      // "a.b" when the source kept object `a` as JSON text (no `fields` list): read inside it.
      for (std::size_t dot = name.find('.'); dot != std::string_view::npos && !found;
           dot = name.find('.', dot + 1)) {
        const std::string_view top = name.substr(0, dot);
        for (std::size_t i = 0; i < nfields && !found; ++i) {
          const Field f = ev.field(i);
          if (f.type == FieldType::json && f.key == top) {
            // Through copies: `raw` itself stays in registers for the common path above.
            std::string_view text = raw;
            FieldType type = raw_type;
            found = json_lookup(f.text, name.substr(dot + 1), arena_, text, type);
            raw = text;
            raw_type = type;
          }
        }
      }
    }
    if (!found && name == "body" &&
        (s >= plan_.field_types.size() || plan_.field_types[s] == SqlType::any)) {
      // No field of that name, and none declared (CREATE TABLE): the event's text (a raw
      // source's line).
      raw = ev.body();
      raw_type = FieldType::string;
      found = true;
    }
    slot_raw_[s] = raw;
    slot_raw_type_[s] = raw_type;
    if (!found) ++missing;
    // Typed value.
    Value& v = slots_[s];
    const SqlType declared = s < plan_.field_types.size() ? plan_.field_types[s] : SqlType::any;
    if (!found || raw_type == FieldType::null) {
      v = Value::null();
      continue;
    }
    const std::string_view text = raw;
    switch (raw_type) {
      case FieldType::integer: {
        std::int64_t i = 0;
        if (small_integer(text, i)) {
          v = Value::integer(i);
          break;
        }
        auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
        if (ec == std::errc() && p == text.data() + text.size()) {
          v = Value::integer(i);
        } else {
          double d = 0;
          std::from_chars(text.data(), text.data() + text.size(), d);
          v = Value::floating(d);
        }
        break;
      }
      case FieldType::floating:
        v = Value::floating(to_double(text));
        break;
      case FieldType::boolean:
        v = Value::boolean(text == "true");
        break;
      default:
        v = Value::string(text);
        break;
    }
    if (declared != SqlType::any && declared != v.type) {
      if (declared == SqlType::string) {
        v = Value::string(text);
      } else if (declared == SqlType::timestamp && v.type == SqlType::string && time_format_) {
        auto ns = time_format_->parse(text, time_format_->needs_now() ? options_.now_ns() : 0,
                                      time_cache_);
        v = ns ? Value::timestamp(*ns) : Value::null();
        if (!ns) ++stats_.eval_errors;
      } else {
        EvalContext ctx;
        ctx.arena = &arena_;
        ctx.errors = &stats_.eval_errors;
        v = cast_value(v, declared, ctx);
      }
    }
  }
  return missing == 0;
}

std::optional<std::int64_t> WindowOperator::event_time(const EventView& ev) {
  switch (options_.time_source) {
    case TimeSource::event_timestamp:
      return ev.timestamp_ns();
    case TimeSource::processing:
      return options_.now_ns();
    case TimeSource::field:
      break;
  }
  const std::string_view text = slot_raw_[time_slot_];
  const FieldType type = slot_raw_type_[time_slot_];
  if (type == FieldType::null || (type == FieldType::string && text.empty())) return std::nullopt;
  if (time_format_) {
    // The clock only for year-less formats: a clock read per event costs more than the parse.
    return time_format_->parse(text, time_format_->needs_now() ? options_.now_ns() : 0,
                               time_cache_);
  }
  if (type == FieldType::integer || type == FieldType::floating) {
    double ms = 0;  // epoch milliseconds
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
    if (ec != std::errc() || p != text.data() + text.size() || !(std::fabs(ms) < 9e12)) {
      return std::nullopt;
    }
    return static_cast<std::int64_t>(std::llround(ms * 1e6));
  }
  static const auto iso = parse::TimeFormat::make("iso8601", parse::TimeZone{});
  return iso->parse(text, 0);  // iso8601 always has a year
}

void WindowOperator::build_key() {
  key_buf_.clear();
  EvalContext ctx;
  ctx.slots = slots_.data();
  ctx.arena = &arena_;
  ctx.errors = &stats_.eval_errors;
  for (const auto& k : plan_.keys) {
    const Value v = eval_inline(*k, ctx);
    key_buf_.push_back(static_cast<char>(v.type));
    char buf[8];
    switch (v.type) {
      case SqlType::null:
        break;
      case SqlType::boolean:
        key_buf_.push_back(v.b ? 1 : 0);
        break;
      case SqlType::floating: {
        double d = v.d == 0 ? 0.0 : v.d;  // -0.0 groups with 0.0
        std::memcpy(buf, &d, 8);
        key_buf_.append(buf, 8);
        break;
      }
      case SqlType::string: {
        const auto n = static_cast<std::uint32_t>(v.s.size());
        std::memcpy(buf, &n, 4);
        key_buf_.append(buf, 4);
        key_buf_.append(v.s);
        break;
      }
      default:
        std::memcpy(buf, &v.i, 8);
        key_buf_.append(buf, 8);
        break;
    }
  }
  key_hash_ = sketch::xxh64(key_buf_);
}

bool WindowOperator::valid_key(std::string_view key) const {
  std::size_t at = 0;
  auto take = [&](std::size_t n) {
    if (key.size() - at < n) return false;
    at += n;
    return true;
  };
  for (std::size_t k = 0; k < plan_.keys.size(); ++k) {
    if (!take(1)) return false;
    const auto type = static_cast<SqlType>(key[at - 1]);
    switch (type) {
      case SqlType::null:
        break;
      case SqlType::boolean:
        if (!take(1)) return false;
        break;
      case SqlType::string: {
        std::uint32_t n = 0;
        if (key.size() - at < 4) return false;
        std::memcpy(&n, key.data() + at, 4);
        if (!take(4) || !take(n)) return false;
        break;
      }
      case SqlType::integer:
      case SqlType::floating:
      case SqlType::timestamp:
      case SqlType::interval:
        if (!take(8)) return false;
        break;
      default:
        return false;
    }
  }
  return at == key.size();
}

void WindowOperator::decode_key(std::string_view key, Value* out) const {
  std::size_t at = 0;
  for (std::size_t k = 0; k < plan_.keys.size(); ++k) {
    Value v;
    v.type = static_cast<SqlType>(key[at++]);
    switch (v.type) {
      case SqlType::null:
        break;
      case SqlType::boolean:
        v.b = key[at++] != 0;
        break;
      case SqlType::floating:
        std::memcpy(&v.d, key.data() + at, 8);
        at += 8;
        break;
      case SqlType::string: {
        std::uint32_t n;
        std::memcpy(&n, key.data() + at, 4);
        at += 4;
        v.s = key.substr(at, n);
        at += n;
        break;
      }
      default:
        std::memcpy(&v.i, key.data() + at, 8);
        at += 8;
        break;
    }
    out[k] = v;
  }
}

void WindowOperator::eval_args() {
  EvalContext ctx;
  ctx.slots = slots_.data();
  ctx.arena = &arena_;
  ctx.errors = &stats_.eval_errors;
  for (std::size_t a = 0; a < aggs_.size(); ++a) {
    const AggSpec& s = aggs_.spec(a);
    args_[a] = s.arg ? eval_inline(*s.arg, ctx) : Value::null();
  }
}

Pane* WindowOperator::pane_for(std::int64_t start) {
  std::size_t i = open_.size();
  while (i > 0 && open_[i - 1]->start > start) --i;
  if (i > 0 && open_[i - 1]->start == start) return open_[i - 1].get();
  std::unique_ptr<Pane> p;
  if (!pool_.empty()) {
    p = std::move(pool_.back());
    pool_.pop_back();
  } else {
    p = std::make_unique<Pane>();
    reserve_like_last(*p);
  }
  p->start = start;
  p->end = sat_add(start, plan_.window.size_ns);
  open_bytes_ += p->bytes();
  Pane* raw = p.get();
  open_.insert(open_.begin() + static_cast<std::ptrdiff_t>(i), std::move(p));
  return raw;
}

void WindowOperator::reserve_like_last(Pane& p) const {
  const std::size_t g = last_groups_;
  if (g < 1024) return;  // small windows grow as they come (and come from the pool)
  // What the reservation would add to the state: not past max_state_bytes, which would close
  // windows early for memory not used yet. The cells grow by blocks and need none; the key ids'
  // rows are sized to the key store at the first group.
  const std::size_t want = g * sizeof(std::uint32_t);
  if (open_bytes_ + want > options_.max_state_bytes) return;
  p.key_ids.reserve(g);
}

std::size_t WindowOperator::add_group(Pane& p) {
  const std::uint32_t id = key_id_;
  if (id >= p.rows.size()) {
    // As many as the store has room for: one reallocation per doubling of the store, and the same
    // capacity whatever order the pane saw its keys in.
    p.rows.reserve(std::max(keys_.capacity(), p.rows.capacity()));
    p.rows.resize(keys_.size(), 0);
  }
  const std::size_t g = p.groups();
  p.key_ids.push_back(id);
  p.rows[id] = static_cast<std::uint32_t>(g + 1);
  // The key is charged to the newest pane that holds it (it lives as long as that one).
  const std::size_t cost = KeyStore::cost(keys_.key(id).size());
  Pane* older = nullptr;
  bool newer = false;
  for (const auto* list : {&open_, &closed_}) {
    if (key_added_) break;  // new to the store: in no other pane
    for (const auto& q : *list) {
      if (q.get() == &p || q->group_of(id) < 0) continue;
      if (q->start > p.start) {
        newer = true;
      } else if (older == nullptr || q->start > older->start) {
        older = q.get();
      }
    }
  }
  key_added_ = false;  // the later panes of a HOP event look for this one
  if (!newer) {
    if (older != nullptr) {
      older->key_bytes -= cost;
      std::size_t& from = older->closed ? closed_bytes_ : open_bytes_;
      from -= std::min(from, cost);
    } else {
      key_charged_ += cost;
    }
    p.key_bytes += cost;
  }
  Row row = p.cells.add(aggs_.row_words());
  const std::size_t side_before = p.side.strings.capacity() * sizeof(std::string) +
                                  p.side.distincts.capacity() * sizeof(sketch::DistinctCounter) +
                                  p.side.quantiles.capacity() * sizeof(sketch::QuantileSketch);
  aggs_.init(row, p.side);  // null when there are no aggregates
  const std::size_t side_after = p.side.strings.capacity() * sizeof(std::string) +
                                 p.side.distincts.capacity() * sizeof(sketch::DistinctCounter) +
                                 p.side.quantiles.capacity() * sizeof(sketch::QuantileSketch);
  p.side_bytes += side_after - side_before;
  return g;
}

void KeyStore::compact(const std::vector<bool>& live, std::vector<std::uint32_t>& remap) {
  remap.assign(refs_.size(), UINT32_MAX);
  std::size_t n = 0, at = 0;
  for (std::size_t k = 0; k < refs_.size(); ++k) {
    if (!live[k]) continue;
    const KeyRef r = refs_[k];
    std::memmove(bytes_.data() + at, bytes_.data() + r.off, r.len);
    refs_[n] = {static_cast<std::uint32_t>(at), r.len};
    remap[k] = static_cast<std::uint32_t>(n++);
    at += r.len;
  }
  refs_.resize(n);
  bytes_.resize(at);
  // Mostly unused capacity goes back (a window of many keys followed by few); else it is kept
  // for the next window's new keys.
  if (refs_.capacity() > 4 * n + 64) refs_.shrink_to_fit();
  if (bytes_.capacity() > 4 * at + 1024) bytes_.shrink_to_fit();
  if (index_.bytes() > 4 * 16 * std::max<std::size_t>(n, 16)) {
    index_ = KeyIndex();
  } else {
    index_.clear();
  }
  index_.reserve(n);
  for (std::size_t k = 0; k < n; ++k)
    index_.insert(sketch::xxh64(key(static_cast<std::uint32_t>(k))));
}

void WindowOperator::maybe_compact_keys() {
  if (keys_.size() < 1024) return;
  key_live_.assign(keys_.size(), false);
  std::size_t live = 0;
  for (const auto* list : {&open_, &closed_}) {
    for (const auto& q : *list) {
      for (const std::uint32_t id : q->key_ids) {
        if (!key_live_[id]) {
          key_live_[id] = true;
          ++live;
        }
      }
    }
  }
  if (live * 2 > keys_.size()) return;
  keys_.compact(key_live_, key_remap_);
  for (const auto* list : {&open_, &closed_}) {
    for (const auto& q : *list) {
      const std::size_t before = q->bytes();
      std::vector<std::uint32_t, BigAlloc<std::uint32_t>> rows(keys_.size(), 0);
      for (std::size_t g = 0; g < q->key_ids.size(); ++g) {
        q->key_ids[g] = key_remap_[q->key_ids[g]];
        rows[q->key_ids[g]] = static_cast<std::uint32_t>(g + 1);
      }
      q->rows.swap(rows);
      std::size_t& total = q->closed ? closed_bytes_ : open_bytes_;
      total = total - std::min(total, before) + q->bytes();
    }
  }
  key_remap_ = {};
  key_live_ = {};
}

void WindowOperator::fold(Pane& p) {
  std::int64_t idx = p.group_of(key_id_);
  if (idx < 0) {
    const std::size_t before = p.bytes();
    idx = static_cast<std::int64_t>(add_group(p));
    open_bytes_ += p.bytes() - before;
  }
  const std::int64_t grown =
      aggs_.update(p.cells.row(static_cast<std::size_t>(idx)), p.side, args_.data(), event_time_,
                   decoded_.empty() ? nullptr : decoded_.data(), &stats_.partials_replaced);
  p.side_bytes = static_cast<std::size_t>(static_cast<std::int64_t>(p.side_bytes) + grown);
  open_bytes_ = static_cast<std::size_t>(static_cast<std::int64_t>(open_bytes_) + grown);
}

std::uint32_t WindowOperator::session_key_index(std::uint64_t hash) {
  std::int64_t idx = skey_index_.find(hash, key_buf_, [&](std::size_t k) {
    return std::string_view(skeys_.data() + skey_refs_[k].off, skey_refs_[k].len);
  });
  if (idx >= 0) return static_cast<std::uint32_t>(idx);
  skey_refs_.push_back(
      {static_cast<std::uint32_t>(skeys_.size()), static_cast<std::uint32_t>(key_buf_.size())});
  skeys_.append(key_buf_);
  skey_index_.insert(hash);
  skey_.emplace_back();
  open_bytes_ += key_buf_.size() + 48;
  return static_cast<std::uint32_t>(skey_.size() - 1);
}

std::uint32_t WindowOperator::new_session() {
  std::uint32_t id;
  if (!free_sessions_.empty()) {
    id = free_sessions_.back();
    free_sessions_.pop_back();
  } else {
    id = static_cast<std::uint32_t>(sessions_.size());
    sessions_.emplace_back();
  }
  Session& s = sessions_[id];
  s.alive = true;
  s.closed = false;
  s.side.reset();
  s.side_bytes = 0;
  s.cells.assign(aggs_.row_words(), 0);
  aggs_.init(s.cells.data(), s.side);
  s.side_bytes = s.side.bytes();  // its sketches, and what a reused slot kept
  open_bytes_ += s.bytes();
  ++open_sessions_;
  return id;
}

void WindowOperator::free_session(std::uint32_t id) {
  Session& s = sessions_[id];
  if (s.closed) {
    closed_bytes_ -= std::min(closed_bytes_, s.bytes());
  } else {
    open_bytes_ -= std::min(open_bytes_, s.bytes());
    --open_sessions_;
  }
  s.alive = false;
  s.closed = false;
  ++s.version;
  free_sessions_.push_back(id);
}

bool WindowOperator::on_session_event(std::int64_t t) {
  const std::int64_t gap = plan_.window.size_ns;
  build_key();
  const std::uint32_t k = session_key_index(key_hash_);
  std::vector<std::uint32_t>& open = skey_[k].open;
  std::int64_t target = -1;
  for (std::size_t i = 0; i < open.size(); ++i) {
    const Session& s = sessions_[open[i]];
    if (t > sat_sub(s.start, gap) && t < s.end) {
      if (target < 0 || s.start < sessions_[static_cast<std::size_t>(target)].start) {
        target = open[i];
      }
    }
  }
  const std::int64_t own_end = sat_add(t, gap);
  if (target < 0) {
    if (sat_add(own_end, lateness_) <= wm_) return false;
    const std::uint32_t id = new_session();
    Session& s = sessions_[id];
    s.start = t;
    s.end = own_end;
    s.key = k;
    skey_[k].open.push_back(id);
    heap_.push({s.end, id, s.version});
    target = id;
  } else {
    Session& tgt = sessions_[static_cast<std::size_t>(target)];
    // The event bridges every session it overlaps: fold them into the earliest one.
    for (std::size_t i = 0; i < open.size();) {
      const std::uint32_t id = open[i];
      Session& s = sessions_[id];
      if (static_cast<std::int64_t>(id) != target && t > sat_sub(s.start, gap) && t < s.end) {
        const std::int64_t grown = aggs_.merge(tgt.cells.data(), tgt.side, s.cells.data(), s.side);
        tgt.side_bytes =
            static_cast<std::size_t>(static_cast<std::int64_t>(tgt.side_bytes) + grown);
        open_bytes_ = static_cast<std::size_t>(static_cast<std::int64_t>(open_bytes_) + grown);
        tgt.start = std::min(tgt.start, s.start);
        tgt.end = std::max(tgt.end, s.end);
        open.erase(open.begin() + static_cast<std::ptrdiff_t>(i));
        free_session(id);
        continue;
      }
      ++i;
    }
    tgt.start = std::min(tgt.start, t);
    // The session's heap entry keeps its older end: close_ready() re-queues it when it surfaces,
    // so the heap holds one entry per session rather than one per event.
    tgt.end = std::max(tgt.end, own_end);
  }
  eval_args();
  Session& s = sessions_[static_cast<std::size_t>(target)];
  const std::int64_t grown = aggs_.update(s.cells.data(), s.side, args_.data(), t);
  s.side_bytes = static_cast<std::size_t>(static_cast<std::int64_t>(s.side_bytes) + grown);
  open_bytes_ = static_cast<std::size_t>(static_cast<std::int64_t>(open_bytes_) + grown);
  return true;
}

EventOutcome WindowOperator::on_event(const EventView& ev) {
  arena_.reset();
  load_slots(ev);
  const auto t = event_time(ev);
  // Times beyond 1824..2116 are not event times (and window arithmetic stays far from overflow).
  constexpr std::int64_t kTimeBound = std::int64_t{1} << 62;
  if (!t || *t < -kTimeBound || *t > kTimeBound) {
    ++stats_.events_without_time;
    return EventOutcome::no_time;
  }
  event_time_ = *t;
  EventOutcome outcome = EventOutcome::accepted;
  bool pass = true;
  if (plan_.where) {
    EvalContext ctx;
    ctx.slots = slots_.data();
    ctx.arena = &arena_;
    ctx.errors = &stats_.eval_errors;
    pass = truthy(eval(*plan_.where, ctx));
  }
  if (pass && plan_.has_merge) {
    // The planner allows MERGE with TUMBLE only: the event belongs to one window.
    const std::int64_t start = floor_div(*t, plan_.window.slide_ns) * plan_.window.slide_ns;
    eval_args();
    if (!decode_partials(start, sat_add(start, plan_.window.size_ns))) {
      outcome = EventOutcome::bad_state;
      ++stats_.bad_states;
    }
  }
  if (outcome == EventOutcome::bad_state) {
    // Not folded; its time still moves the watermark, as a filtered event's does.
  } else if (!pass) {
    outcome = EventOutcome::filtered;
  } else {
    const WindowSpec& w = plan_.window;
    bool any = false;
    if (w.kind == WindowKind::session) {
      any = on_session_event(*t);
    } else {
      const std::int64_t last_start = floor_div(*t, w.slide_ns) * w.slide_ns;
      bool prepared = false;
      const std::int64_t first_excluded = sat_sub(*t, w.size_ns);
      for (std::int64_t s = last_start; s > first_excluded; s = sat_sub(s, w.slide_ns)) {
        if (sat_add(sat_add(s, w.size_ns), lateness_) <= wm_) continue;
        if (!prepared) {
          build_key();
          key_id_ = keys_.intern(key_hash_, key_buf_, key_added_);
          eval_args();
          prepared = true;
        }
        fold(*pane_for(s));
        any = true;
        if (w.kind == WindowKind::tumble) break;
      }
    }
    outcome = any ? EventOutcome::accepted : EventOutcome::late;
  }
  switch (outcome) {
    case EventOutcome::accepted:
      ++stats_.events_accepted;
      break;
    case EventOutcome::filtered:
      ++stats_.events_filtered;
      break;
    case EventOutcome::late:
      ++stats_.events_late;
      break;
    case EventOutcome::no_time:
    case EventOutcome::bad_state:
      break;
  }
  if (*t > max_time_) max_time_ = *t;
  const std::int64_t wm = sat_sub(*t, delay_);
  if (wm > wm_) raise_watermark(wm);
  if (open_bytes_ > options_.max_state_bytes) enforce_bound();
  return outcome;
}

bool WindowOperator::decode_partials(std::int64_t start, std::int64_t end) {
  for (std::size_t a = 0; a < aggs_.size(); ++a) {
    const AggSpec& spec = aggs_.spec(a);
    if (spec.kind != AggKind::merge) continue;
    DecodedPartial& d = decoded_[a];
    d.valid = false;
    const Value& v = args_[a];
    const std::string& field = spec.arg->name;
    if (v.type != SqlType::string) {
      bad_state_ = "field '" + field + "': " +
                   (v.is_null() ? std::string("missing (no PARTIAL state)")
                                : "a " + std::string(type_name(v.type)) + ", not a PARTIAL state");
      return false;
    }
    if (auto why = decode_partial(v.s, d, partial_bytes_, aggs_.distinct_exact_limit())) {
      bad_state_ = "field '" + field + "': " + *why;
      return false;
    }
    const std::uint8_t code = partial_code(d.kind);
    if (merge_kind_[a] != 0 && merge_kind_[a] != code) {
      bad_state_ = "field '" + field + "': a state of " + std::string(agg_name(d.kind)) +
                   ", where earlier rows had another aggregate's";
      return false;
    }
    if (d.start < start || d.end > end) {
      bad_state_ = "field '" + field +
                   "': the partial's window does not fit in one of this query's windows (make "
                   "the collector's window a multiple of the edge's)";
      return false;
    }
  }
  for (std::size_t a = 0; a < aggs_.size(); ++a) {
    if (decoded_[a].valid) merge_kind_[a] = partial_code(decoded_[a].kind);
  }
  return true;
}

void WindowOperator::learn_merge_kinds() {
  if (!plan_.has_merge) return;
  const std::size_t n = aggs_.size();
  auto learn = [&](ConstRow cells, const SideStore& side) {
    for (std::size_t a = 0; a < n; ++a) {
      if (aggs_.spec(a).kind != AggKind::merge) continue;
      const MergeState& m = aggs_.merge_state(a, cells, side);
      if (m.has_kind) merge_kind_[a] = partial_code(m.kind);
    }
  };
  for (const auto* list : {&closed_, &open_}) {
    for (const auto& p : *list) {
      for (std::size_t g = 0; g < p->groups(); ++g) learn(p->cells.row(g), p->side);
    }
  }
}

void WindowOperator::advance_watermark(std::int64_t wm) {
  if (wm > wm_) raise_watermark(wm);
}

void WindowOperator::raise_watermark(std::int64_t wm) {
  wm_ = wm;
  close_ready();
}

void WindowOperator::close_ready() {
  if (plan_.window.kind != WindowKind::session) {
    std::size_t n = 0;
    while (n < open_.size() && sat_add(open_[n]->end, lateness_) <= wm_) ++n;
    for (std::size_t i = 0; i < n; ++i) {
      open_[i]->closed = true;
      last_groups_ = open_[i]->groups();
      const std::size_t b = open_[i]->bytes();
      open_bytes_ -= std::min(open_bytes_, b);
      closed_bytes_ += b;
      closed_.push_back(std::move(open_[i]));
      ++stats_.windows_closed;
    }
    if (n > 0) open_.erase(open_.begin(), open_.begin() + static_cast<std::ptrdiff_t>(n));
    return;
  }
  while (!heap_.empty() && sat_add(heap_.top().end, lateness_) <= wm_) {
    const HeapEntry e = heap_.top();
    heap_.pop();
    Session& s = sessions_[e.id];
    if (!s.alive || s.closed || s.version != e.version) continue;
    if (e.end < s.end) {  // extended since queued
      heap_.push({s.end, e.id, s.version});
      continue;
    }
    s.closed = true;
    auto& open = skey_[s.key].open;
    open.erase(std::find(open.begin(), open.end(), e.id));
    const std::size_t b = s.bytes();
    open_bytes_ -= std::min(open_bytes_, b);
    closed_bytes_ += b;
    --open_sessions_;
    closed_sessions_.push_back(e.id);
    sessions_sorted_ = false;
    ++stats_.windows_closed;
  }
}

void WindowOperator::enforce_bound() {
  while (open_bytes_ > options_.max_state_bytes && open_windows() > 0) {
    std::int64_t oldest_end;
    if (plan_.window.kind != WindowKind::session) {
      oldest_end = open_.front()->end;
    } else {
      while (!heap_.empty()) {  // drop stale entries and re-queue extended ones: the true oldest
        const HeapEntry e = heap_.top();
        const Session& s = sessions_[e.id];
        if (s.alive && !s.closed && s.version == e.version) {
          if (e.end == s.end) break;
          heap_.pop();
          heap_.push({s.end, e.id, s.version});
          continue;
        }
        heap_.pop();
      }
      if (heap_.empty()) return;
      oldest_end = heap_.top().end;
    }
    const std::uint64_t before = stats_.windows_closed;
    raise_watermark(sat_add(oldest_end, lateness_));
    stats_.windows_closed_early += stats_.windows_closed - before;
  }
}

bool WindowOperator::emit_row(ConstRow cells, const SideStore& side, std::string_view key,
                              std::int64_t start, std::int64_t end, Batch& out) {
  arena_.reset();
  scratch_.agent = options_.agent_name;
  scratch_.start = start;
  scratch_.end = end;
  scratch_.key = plan_.has_partial ? sketch::xxh64(key) : 0;
  scratch_.arena = &arena_;
  aggs_.finalize(cells, side, agg_out_.data(), &scratch_);
  decode_key(key, key_values_.data());
  EvalContext ctx;
  ctx.keys = key_values_.data();
  ctx.aggs = agg_out_.data();
  ctx.window_start = start;
  ctx.window_end = end;
  ctx.arena = &arena_;
  ctx.errors = &stats_.eval_errors;
  if (plan_.having && !truthy(eval(*plan_.having, ctx))) {
    ++stats_.rows_filtered_by_having;
    return false;
  }
  // Values first (the body is built from them), then the event and its fields.
  const std::size_t ncols = plan_.select.size();
  Value row[64];
  std::string_view texts[64];
  FieldType types[64];
  body_.clear();
  body_.push_back('{');
  for (std::size_t c = 0; c < ncols && c < 64; ++c) {
    Value v = eval(*plan_.select[c], ctx);
    if (v.type == SqlType::floating && !std::isfinite(v.d)) v = Value::null();
    row[c] = v;
    char buf[32];
    std::string_view text;
    switch (v.type) {
      case SqlType::null:
        text = "null";
        break;
      case SqlType::boolean:
        text = v.b ? "true" : "false";
        break;
      case SqlType::integer:
      case SqlType::interval: {
        auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v.i);
        (void)ec;
        text = arena_.copy({buf, static_cast<std::size_t>(p - buf)});
        break;
      }
      case SqlType::floating: {
        auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v.d);
        (void)ec;
        text = arena_.copy({buf, static_cast<std::size_t>(p - buf)});
        break;
      }
      case SqlType::string:
        text = v.s;
        break;
      default:
        text = cast_value(v, SqlType::string, ctx).s;
        break;
    }
    texts[c] = text;
    types[c] = field_type_of(v.type);
    if (c > 0) body_.push_back(',');
    body_.push_back('"');
    codec::append_json_string(body_, plan_.output[c].name);
    body_ += "\":";
    if (types[c] == FieldType::string) {
      body_.push_back('"');
      codec::append_json_string(body_, text);
      body_.push_back('"');
    } else {
      body_.append(text);
    }
  }
  body_.push_back('}');
  // The same window and key give the same id after a restart (duplicates can be recognised).
  char bounds[16];
  std::memcpy(bounds, &start, 8);
  std::memcpy(bounds + 8, &end, 8);
  std::uint64_t seed = sketch::xxh64({bounds, 16});
  // Partial rows of the same window and key from different agents are different rows.
  if (plan_.has_partial) seed = sketch::xxh64(options_.agent_name, seed);
  const std::uint64_t id = sketch::xxh64(key, seed);
  out.add(body_, end, id);
  for (std::size_t c = 0; c < ncols && c < 64; ++c) {
    out.add_field(plan_.output[c].name, texts[c], types[c]);
  }
  ++stats_.rows_emitted;
  return true;
}

std::size_t WindowOperator::emit_closed(Batch& out, std::size_t max_rows) {
  std::size_t emitted = 0;
  if (plan_.window.kind != WindowKind::session) {
    std::size_t done = 0;  // panes fully emitted, from the front
    while (done < closed_.size() && emitted < max_rows) {
      Pane& p = *closed_[done];
      while (emit_pos_ < p.groups() && emitted < max_rows) {
        emitted +=
            emit_row(p.cells.row(emit_pos_), p.side, key_of(p, emit_pos_), p.start, p.end, out) ? 1
                                                                                                : 0;
        ++emit_pos_;
      }
      if (emit_pos_ < p.groups()) break;
      emit_pos_ = 0;
      closed_bytes_ -= std::min(closed_bytes_, p.bytes());
      key_charged_ -= std::min(key_charged_, p.key_bytes);  // no later pane holds those keys
      // One spare, so that the next window reuses its capacity without allocating; but not a
      // large one: with a watermark delay two windows are open and full, and a kept third pane
      // would hold as much again, where regrowing a fresh one costs a few reallocations.
      if (pool_.empty() && p.bytes() <= kPoolMaxBytes) {
        closed_[done]->reset();
        pool_.push_back(std::move(closed_[done]));
      }
      ++done;
    }
    closed_.erase(closed_.begin(), closed_.begin() + static_cast<std::ptrdiff_t>(done));
    if (done > 0) maybe_compact_keys();
    return emitted;
  }
  if (emit_pos_ >= closed_sessions_.size()) return 0;
  auto key_of = [&](std::uint32_t id) {
    const std::uint32_t k = sessions_[id].key;
    return std::string_view(skeys_.data() + skey_refs_[k].off, skey_refs_[k].len);
  };
  if (!sessions_sorted_) {
    std::sort(closed_sessions_.begin() + static_cast<std::ptrdiff_t>(emit_pos_),
              closed_sessions_.end(), [&](std::uint32_t a, std::uint32_t b) {
                const Session& x = sessions_[a];
                const Session& y = sessions_[b];
                if (x.end != y.end) return x.end < y.end;
                if (x.start != y.start) return x.start < y.start;
                return key_of(a) < key_of(b);
              });
    sessions_sorted_ = true;
  }
  while (emit_pos_ < closed_sessions_.size() && emitted < max_rows) {
    const std::uint32_t id = closed_sessions_[emit_pos_++];
    const Session& s = sessions_[id];
    emitted += emit_row(s.cells.data(), s.side, key_of(id), s.start, s.end, out) ? 1 : 0;
    free_session(id);
  }
  if (emit_pos_ == closed_sessions_.size()) {
    closed_sessions_.clear();
    emit_pos_ = 0;
    compact_session_keys();
  }
  return emitted;
}

void WindowOperator::compact_session_keys() {
  // Keys whose sessions have all closed are forgotten once they are the majority, so a stream of
  // ever-new keys (session ids, users) does not grow the key table without bound.
  std::size_t live = 0;
  for (const SessionKey& k : skey_) live += k.open.empty() ? 0 : 1;
  if (skey_.size() < 1024 || live * 2 > skey_.size()) return;
  KeyIndex index;
  std::vector<KeyRef> refs;
  std::vector<std::uint32_t> remap(skey_.size(), UINT32_MAX);
  std::string keys;
  std::vector<SessionKey> sk;
  std::size_t dropped = 0;
  for (std::size_t k = 0; k < skey_.size(); ++k) {
    if (skey_[k].open.empty()) {
      dropped += skey_refs_[k].len + 48;
      continue;
    }
    remap[k] = static_cast<std::uint32_t>(sk.size());
    const std::string_view key(skeys_.data() + skey_refs_[k].off, skey_refs_[k].len);
    refs.push_back({static_cast<std::uint32_t>(keys.size()), skey_refs_[k].len});
    keys.append(key);
    index.insert(sketch::xxh64(key));  // the hash session_key_index() was given
    sk.push_back(std::move(skey_[k]));
  }
  for (Session& s : sessions_) {
    if (s.alive) s.key = remap[s.key];
  }
  skey_index_ = std::move(index);
  skey_refs_ = std::move(refs);
  skeys_ = std::move(keys);
  skey_ = std::move(sk);
  open_bytes_ -= std::min(open_bytes_, dropped);
}

std::size_t WindowOperator::flush(Batch& out, std::size_t max_rows) {
  // The watermark moves past every window flushed: their rows are final, and an event for one of
  // them (after a restart from the state stored now) is late, counted, rather than a second row
  // under the same id with the rest of the window (which an upsert by id or by tags and time, as
  // InfluxDB and QuestDB do, would take in place of the first).
  std::int64_t past = wm_;
  if (plan_.window.kind != WindowKind::session) {
    for (auto& p : open_) {
      past = std::max(past, sat_add(p->end, lateness_));
      p->closed = true;
      const std::size_t b = p->bytes();
      open_bytes_ -= std::min(open_bytes_, b);
      closed_bytes_ += b;
      closed_.push_back(std::move(p));
      ++stats_.windows_closed;
    }
    open_.clear();
  } else {
    for (std::uint32_t id = 0; id < sessions_.size(); ++id) {
      Session& s = sessions_[id];
      if (!s.alive || s.closed) continue;
      // An event within the gap of the session's end would have joined it: late too.
      past = std::max(past, sat_add(sat_add(s.end, plan_.window.size_ns), lateness_));
      s.closed = true;
      const std::size_t b = s.bytes();
      open_bytes_ -= std::min(open_bytes_, b);
      closed_bytes_ += b;
      --open_sessions_;
      closed_sessions_.push_back(id);
      sessions_sorted_ = false;
      ++stats_.windows_closed;
    }
    for (auto& k : skey_) k.open.clear();
    while (!heap_.empty()) heap_.pop();
  }
  wm_ = past;
  return emit_closed(out, max_rows);
}

void WindowOperator::clear_state() {
  for (auto& p : open_) p->reset();
  open_.clear();
  closed_.clear();
  keys_.clear();
  key_charged_ = 0;
  skey_index_.clear();
  skey_refs_.clear();
  skeys_.clear();
  skey_.clear();
  sessions_.clear();
  free_sessions_.clear();
  closed_sessions_.clear();
  while (!heap_.empty()) heap_.pop();
  open_sessions_ = 0;
  emit_pos_ = 0;
  sessions_sorted_ = false;
  open_bytes_ = closed_bytes_ = 0;
  wm_ = max_time_ = INT64_MIN;
  stats_ = RunnerStats{};
  std::fill(merge_kind_.begin(), merge_kind_.end(), std::uint8_t{0});
}

void WindowOperator::serialize_state(std::string& out) const {
  out.append(kStateMagic);
  enc::put_u8(out, kStateVersion);
  enc::put_u64(out, query_.fingerprint());
  enc::put_u8(out, static_cast<std::uint8_t>(plan_.window.kind));
  enc::put_varint(out, static_cast<std::uint64_t>(plan_.window.size_ns));
  enc::put_varint(out, static_cast<std::uint64_t>(plan_.window.slide_ns));
  enc::put_varint(out, aggs_.size());
  enc::put_varint(out, enc::zigzag(wm_));
  enc::put_varint(out, enc::zigzag(max_time_));
  const std::uint64_t counters[] = {
      stats_.events_accepted,     stats_.events_filtered,      stats_.events_late,
      stats_.events_without_time, stats_.rows_emitted,         stats_.rows_filtered_by_having,
      stats_.windows_closed,      stats_.windows_closed_early, stats_.eval_errors};
  for (std::uint64_t c : counters) enc::put_varint(out, c);
  if (plan_.window.kind != WindowKind::session) {
    enc::put_varint(out, closed_.size() + open_.size());
    // Rows emit_closed() already returned are not part of the state.
    auto put_pane = [&](const Pane& p, std::size_t from) {
      enc::put_varint(out, enc::zigzag(p.start));
      enc::put_u8(out, p.closed ? 1 : 0);
      enc::put_varint(out, p.groups() - from);
      for (std::size_t g = from; g < p.groups(); ++g) {
        const std::string_view k = key_of(p, g);
        enc::put_varint(out, k.size());
        out.append(k);
        aggs_.encode(p.cells.row(g), p.side, out);
      }
    };
    for (std::size_t c = 0; c < closed_.size(); ++c) put_pane(*closed_[c], c == 0 ? emit_pos_ : 0);
    for (const auto& p : open_) put_pane(*p, 0);
  } else {
    std::size_t count = 0;
    for (const Session& s : sessions_) count += s.alive ? 1 : 0;
    enc::put_varint(out, count);
    // Closed sessions first (in their emission order), then open ones by id.
    auto put_session = [&](std::uint32_t id) {
      const Session& s = sessions_[id];
      const std::string_view k(skeys_.data() + skey_refs_[s.key].off, skey_refs_[s.key].len);
      enc::put_varint(out, k.size());
      out.append(k);
      enc::put_varint(out, enc::zigzag(s.start));
      enc::put_varint(out, enc::zigzag(s.end));
      enc::put_u8(out, s.closed ? 1 : 0);
      aggs_.encode(s.cells.data(), s.side, out);
    };
    for (std::size_t c = emit_pos_; c < closed_sessions_.size(); ++c) {
      put_session(closed_sessions_[c]);
    }
    for (std::uint32_t id = 0; id < sessions_.size(); ++id) {
      if (sessions_[id].alive && !sessions_[id].closed) put_session(id);
    }
  }
}

Status WindowOperator::restore_state(std::string_view in) {
  clear_state();
  auto bad = [&](std::string why) {
    clear_state();
    return Status(Errc::invalid_data, "sql state: " + why);
  };
  if (in.substr(0, kStateMagic.size()) != kStateMagic) return bad("not a window state");
  in.remove_prefix(kStateMagic.size());
  std::uint8_t version = 0, kind = 0;
  std::uint64_t fp = 0, size = 0, slide = 0, naggs = 0, u = 0;
  if (!enc::get_u8(in, version)) return bad("truncated");
  if (version != kStateVersion) {
    return bad("unknown version " + std::to_string(version) + " (this build reads " +
               std::to_string(kStateVersion) + ")");
  }
  if (!enc::get_u64(in, fp) || !enc::get_u8(in, kind) || !enc::get_varint(in, size) ||
      !enc::get_varint(in, slide) || !enc::get_varint(in, naggs)) {
    return bad("truncated header");
  }
  if (fp != query_.fingerprint() || kind != static_cast<std::uint8_t>(plan_.window.kind) ||
      size != static_cast<std::uint64_t>(plan_.window.size_ns) ||
      slide != static_cast<std::uint64_t>(plan_.window.slide_ns) || naggs != aggs_.size()) {
    return bad("written by a different query");
  }
  std::uint64_t wm = 0, mt = 0;
  if (!enc::get_varint(in, wm) || !enc::get_varint(in, mt)) return bad("truncated header");
  std::uint64_t counters[9];
  for (std::uint64_t& c : counters) {
    if (!enc::get_varint(in, c)) return bad("truncated counters");
  }
  std::uint64_t count = 0;
  if (!enc::get_varint(in, count)) return bad("truncated");
  auto get_key = [&](std::string_view& key) {
    if (!enc::get_varint(in, u) || u > in.size()) return false;
    key = in.substr(0, u);
    in.remove_prefix(u);
    return true;
  };
  if (plan_.window.kind != WindowKind::session) {
    for (std::uint64_t i = 0; i < count; ++i) {
      std::uint8_t closed = 0;
      std::uint64_t groups = 0;
      if (!enc::get_varint(in, u) || !enc::get_u8(in, closed) || !enc::get_varint(in, groups)) {
        return bad("truncated window");
      }
      const std::int64_t start = enc::unzigzag(u);
      Pane* p;
      if (closed != 0) {
        auto owned = std::make_unique<Pane>();
        p = owned.get();
        p->start = start;
        p->end = sat_add(start, plan_.window.size_ns);
        p->closed = true;
        closed_.push_back(std::move(owned));
      } else {
        const std::size_t before = open_.size();
        p = pane_for(start);
        if (open_.size() == before) return bad("window stored twice");
        open_bytes_ -= std::min(open_bytes_, p->bytes());
      }
      for (std::uint64_t g = 0; g < groups; ++g) {
        std::string_view key;
        if (!get_key(key)) return bad("truncated key");
        // decode_key() would read a damaged key past its end when its row is made, at every start.
        if (!valid_key(key)) return bad("damaged group key");
        key_buf_.assign(key);
        key_hash_ = sketch::xxh64(key_buf_);
        key_id_ = keys_.intern(key_hash_, key_buf_, key_added_);
        if (p->group_of(key_id_) >= 0) return bad("group stored twice in one window");
        Row row = p->cells.row(add_group(*p));  // null without aggregates
        if (!aggs_.decode(in, row, p->side)) return bad("bad aggregate state");
      }
      p->side_bytes = p->side.bytes();
      (closed != 0 ? closed_bytes_ : open_bytes_) += p->bytes();
    }
  } else {
    for (std::uint64_t i = 0; i < count; ++i) {
      std::string_view key;
      std::uint64_t start = 0, end = 0;
      std::uint8_t closed = 0;
      if (!get_key(key) || !enc::get_varint(in, start) || !enc::get_varint(in, end) ||
          !enc::get_u8(in, closed)) {
        return bad("truncated session");
      }
      if (!valid_key(key)) return bad("damaged group key");
      key_buf_.assign(key);
      key_hash_ = sketch::xxh64(key_buf_);
      const std::uint32_t k = session_key_index(key_hash_);
      const std::uint32_t id = new_session();
      Session& s = sessions_[id];
      s.start = enc::unzigzag(start);
      s.end = enc::unzigzag(end);
      s.key = k;
      if (!aggs_.decode(in, s.cells.data(), s.side)) return bad("bad aggregate state");
      open_bytes_ -= std::min(open_bytes_, s.bytes());
      s.side_bytes = s.side.bytes();
      if (closed != 0) {
        s.closed = true;
        --open_sessions_;
        closed_sessions_.push_back(id);
        closed_bytes_ += s.bytes();
      } else {
        skey_[k].open.push_back(id);
        heap_.push({s.end, id, s.version});
        open_bytes_ += s.bytes();
      }
    }
  }
  if (!in.empty()) return bad("trailing bytes");
  wm_ = enc::unzigzag(wm);
  max_time_ = enc::unzigzag(mt);
  stats_.events_accepted = counters[0];
  stats_.events_filtered = counters[1];
  stats_.events_late = counters[2];
  stats_.events_without_time = counters[3];
  stats_.rows_emitted = counters[4];
  stats_.rows_filtered_by_having = counters[5];
  stats_.windows_closed = counters[6];
  stats_.windows_closed_early = counters[7];
  stats_.eval_errors = counters[8];
  learn_merge_kinds();
  return {};
}

}  // namespace sluice::sql

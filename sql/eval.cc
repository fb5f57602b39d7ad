#include "sql/eval.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "lib/parse/time_format.h"

namespace sluice::sql {

bool parse_number(std::string_view s, Value& out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (*b == '+') ++b;
  std::int64_t i = 0;
  auto [p, ec] = std::from_chars(b, e, i);
  if (ec == std::errc() && p == e) {
    out = Value::integer(i);
    return true;
  }
  double d = 0;
  auto [p2, ec2] = std::from_chars(b, e, d);
  if (ec2 == std::errc() && p2 == e) {
    out = Value::floating(d);
    return true;
  }
  return false;
}

std::optional<int> compare(const Value& a, const Value& b) {
  if (a.is_null() || b.is_null()) return std::nullopt;
  auto cmp = [](auto x, auto y) { return x < y ? -1 : (y < x ? 1 : 0); };
  if (a.type == b.type) {
    switch (a.type) {
      case SqlType::boolean:
        return cmp(a.b, b.b);
      case SqlType::integer:
      case SqlType::timestamp:
      case SqlType::interval:
        return cmp(a.i, b.i);
      case SqlType::floating:
        if (std::isnan(a.d) || std::isnan(b.d)) return std::nullopt;
        return cmp(a.d, b.d);
      case SqlType::string: {
        const int c = a.s.compare(b.s);
        return c < 0 ? -1 : (c > 0 ? 1 : 0);
      }
      default:
        return std::nullopt;
    }
  }
  if (a.is_number() && b.is_number()) {
    if (a.type == SqlType::integer && b.type == SqlType::floating) {
      if (std::isnan(b.d)) return std::nullopt;
      return cmp(static_cast<long double>(a.i), static_cast<long double>(b.d));
    }
    if (std::isnan(a.d)) return std::nullopt;
    return cmp(static_cast<long double>(a.d), static_cast<long double>(b.i));
  }
  // A string against a number (untyped fields): numerically if the string is a number.
  if (a.type == SqlType::string && b.is_number()) {
    Value n;
    if (!parse_number(a.s, n)) return std::nullopt;
    return compare(n, b);
  }
  if (b.type == SqlType::string && a.is_number()) {
    Value n;
    if (!parse_number(b.s, n)) return std::nullopt;
    return compare(a, n);
  }
  if ((a.type == SqlType::timestamp && b.type == SqlType::integer) ||
      (a.type == SqlType::integer && b.type == SqlType::timestamp)) {
    return cmp(a.i, b.i);
  }
  return std::nullopt;
}

bool like_match(std::string_view t, std::string_view p) {
  // Iterative matcher with backtracking to the last '%': linear for typical patterns.
  std::size_t ti = 0, pi = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '_' || p[pi] == t[ti])) {
      ++ti;
      ++pi;
    } else if (pi < p.size() && p[pi] == '%') {
      star = pi++;
      mark = ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '%') ++pi;
  return pi == p.size();
}

namespace {

std::string_view to_text(const Value& v, const EvalContext& ctx) {
  char buf[64];
  switch (v.type) {
    case SqlType::string:
      return v.s;
    case SqlType::boolean:
      return v.b ? "true" : "false";
    case SqlType::integer:
    case SqlType::interval: {
      auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v.i);
      (void)ec;
      return ctx.arena->copy({buf, static_cast<std::size_t>(p - buf)});
    }
    case SqlType::floating: {
      auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v.d);
      (void)ec;
      return ctx.arena->copy({buf, static_cast<std::size_t>(p - buf)});
    }
    case SqlType::timestamp: {
      // RFC 3339 with milliseconds, UTC.
      const std::int64_t ms = v.i >= 0 ? v.i / 1'000'000 : -((-v.i + 999'999) / 1'000'000);
      std::int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
      const int frac = static_cast<int>(ms - secs * 1000);
      std::int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
      const std::int64_t sod = secs - days * 86400;
      // civil_from_days (Howard Hinnant)
      days += 719468;
      const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
      const std::int64_t doe = days - era * 146097;
      const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
      std::int64_t y = yoe + era * 400;
      const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
      const std::int64_t mp = (5 * doy + 2) / 153;
      const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
      const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
      if (m <= 2) ++y;
      if (y >= 0 && y <= 9999) {
        // Digits written directly: snprintf was a tenth of the cost of an output row.
        const auto put = [&buf](int at, std::int64_t num, int width) {
          for (int k = width - 1; k >= 0; --k, num /= 10)
            buf[at + k] = static_cast<char>('0' + num % 10);
        };
        std::memcpy(buf, "0000-00-00T00:00:00.000Z", 24);
        put(0, y, 4);
        put(5, m, 2);
        put(8, d, 2);
        put(11, sod / 3600, 2);
        put(14, sod / 60 % 60, 2);
        put(17, sod % 60, 2);
        put(20, frac, 3);
        return ctx.arena->copy({buf, 24});
      }
      const int n = std::snprintf(
          buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03dZ",
          static_cast<long long>(y), static_cast<long long>(m), static_cast<long long>(d),
          static_cast<long long>(sod / 3600), static_cast<long long>(sod / 60 % 60),
          static_cast<long long>(sod % 60), frac);
      return ctx.arena->copy({buf, static_cast<std::size_t>(n)});
    }
    default:
      return {};
  }
}

Value arith(Op op, const Value& a, const Value& b, const EvalContext& ctx) {
  if (a.is_null() || b.is_null()) return Value::null();
  Value x = a, y = b;
  if (x.type == SqlType::string && !parse_number(x.s, x)) {
    ++*ctx.errors;
    return Value::null();
  }
  if (y.type == SqlType::string && !parse_number(y.s, y)) {
    ++*ctx.errors;
    return Value::null();
  }
  if (x.type == SqlType::timestamp || x.type == SqlType::interval || y.type == SqlType::timestamp ||
      y.type == SqlType::interval) {
    const bool x_ok =
        x.type == SqlType::timestamp || x.type == SqlType::interval || x.type == SqlType::integer;
    const bool y_ok =
        y.type == SqlType::timestamp || y.type == SqlType::interval || y.type == SqlType::integer;
    if (!x_ok || !y_ok) return Value::null();
    if (op == Op::add) {
      Value r = x.type == SqlType::timestamp || y.type == SqlType::timestamp
                    ? Value::timestamp(x.i + y.i)
                    : Value::interval(x.i + y.i);
      return r;
    }
    if (op == Op::sub) {
      if (x.type == SqlType::timestamp && y.type == SqlType::timestamp) {
        return Value::interval(x.i - y.i);
      }
      return x.type == SqlType::timestamp ? Value::timestamp(x.i - y.i)
                                          : Value::interval(x.i - y.i);
    }
    return Value::null();
  }
  if (x.type == SqlType::boolean || y.type == SqlType::boolean) {
    ++*ctx.errors;
    return Value::null();
  }
  if (x.type == SqlType::integer && y.type == SqlType::integer) {
    std::int64_t r = 0;
    switch (op) {
      case Op::add:
        if (__builtin_add_overflow(x.i, y.i, &r)) return Value::floating(double(x.i) + double(y.i));
        return Value::integer(r);
      case Op::sub:
        if (__builtin_sub_overflow(x.i, y.i, &r)) return Value::floating(double(x.i) - double(y.i));
        return Value::integer(r);
      case Op::mul:
        if (__builtin_mul_overflow(x.i, y.i, &r)) return Value::floating(double(x.i) * double(y.i));
        return Value::integer(r);
      case Op::div:
      case Op::mod:
        if (y.i == 0 || (x.i == INT64_MIN && y.i == -1)) {
          ++*ctx.errors;
          return Value::null();
        }
        return Value::integer(op == Op::div ? x.i / y.i : x.i % y.i);
      default:
        return Value::null();
    }
  }
  const double p = x.as_double(), q = y.as_double();
  switch (op) {
    case Op::add:
      return Value::floating(p + q);
    case Op::sub:
      return Value::floating(p - q);
    case Op::mul:
      return Value::floating(p * q);
    case Op::div:
      if (q == 0) {
        ++*ctx.errors;
        return Value::null();
      }
      return Value::floating(p / q);
    case Op::mod:
      if (q == 0) {
        ++*ctx.errors;
        return Value::null();
      }
      return Value::floating(std::fmod(p, q));
    default:
      return Value::null();
  }
}

Value case_map(const Value& v, bool upper, const EvalContext& ctx) {
  if (v.is_null()) return v;
  const std::string_view s = to_text(v, ctx);
  char* out = ctx.arena->allocate(s.size() + 1);
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    out[i] = c;
  }
  return Value::string({out, s.size()});
}

}  // namespace

Value cast_value(const Value& v, SqlType to, const EvalContext& ctx) {
  if (v.is_null() || v.type == to || to == SqlType::any) return v;
  switch (to) {
    case SqlType::string:
      return Value::string(to_text(v, ctx));
    case SqlType::integer:
      switch (v.type) {
        case SqlType::boolean:
          return Value::integer(v.b ? 1 : 0);
        case SqlType::floating:
          if (!(std::fabs(v.d) < 9.2e18)) break;
          return Value::integer(static_cast<std::int64_t>(std::trunc(v.d)));
        case SqlType::timestamp:
        case SqlType::interval:
          return Value::integer(v.i);
        case SqlType::string: {
          Value n;
          if (parse_number(v.s, n)) return cast_value(n, to, ctx);
          break;
        }
        default:
          break;
      }
      break;
    case SqlType::floating:
      switch (v.type) {
        case SqlType::boolean:
          return Value::floating(v.b ? 1 : 0);
        case SqlType::integer:
        case SqlType::timestamp:
        case SqlType::interval:
          return Value::floating(static_cast<double>(v.i));
        case SqlType::string: {
          Value n;
          if (parse_number(v.s, n)) return Value::floating(n.as_double());
          break;
        }
        default:
          break;
      }
      break;
    case SqlType::boolean:
      switch (v.type) {
        case SqlType::integer:
          return Value::boolean(v.i != 0);
        case SqlType::floating:
          return Value::boolean(v.d != 0);
        case SqlType::string: {
          std::string_view s = v.s;
          if (s == "true" || s == "TRUE" || s == "True" || s == "1") return Value::boolean(true);
          if (s == "false" || s == "FALSE" || s == "False" || s == "0")
            return Value::boolean(false);
          break;
        }
        default:
          break;
      }
      break;
    case SqlType::timestamp:
      switch (v.type) {
        case SqlType::integer:
          return Value::timestamp(v.i * 1'000'000);  // epoch ms
        case SqlType::floating:
          return Value::timestamp(static_cast<std::int64_t>(v.d * 1e6));
        case SqlType::string: {
          static const auto fmt = parse::TimeFormat::make("iso8601", parse::TimeZone{});
          if (fmt) {
            if (auto ns = fmt->parse(v.s, 0)) return Value::timestamp(*ns);
          }
          break;
        }
        default:
          break;
      }
      break;
    default:
      break;
  }
  ++*ctx.errors;
  return Value::null();
}

Value eval(const Expr& e, const EvalContext& ctx) {
  switch (e.op) {
    case Op::literal:
      return e.lit;
    case Op::field:
      return ctx.slots[e.index];
    case Op::key_ref:
      return ctx.keys[e.index];
    case Op::agg_ref:
      return ctx.aggs[e.index];
    case Op::window_start:
      return Value::timestamp(ctx.window_start);
    case Op::window_end:
      return Value::timestamp(ctx.window_end);
    case Op::neg: {
      Value v = eval(*e.args[0], ctx);
      if (v.type == SqlType::string && !parse_number(v.s, v)) return Value::null();
      if (v.type == SqlType::integer) return Value::integer(v.i == INT64_MIN ? v.i : -v.i);
      if (v.type == SqlType::floating) return Value::floating(-v.d);
      if (v.type == SqlType::interval) return Value::interval(-v.i);
      return Value::null();
    }
    case Op::not_: {
      const Value v = eval(*e.args[0], ctx);
      if (v.type != SqlType::boolean) return Value::null();
      return Value::boolean(!v.b);
    }
    case Op::add:
    case Op::sub:
    case Op::mul:
    case Op::div:
    case Op::mod:
      return arith(e.op, eval(*e.args[0], ctx), eval(*e.args[1], ctx), ctx);
    case Op::concat: {
      const Value a = eval(*e.args[0], ctx), b = eval(*e.args[1], ctx);
      if (a.is_null() || b.is_null()) return Value::null();
      const std::string_view x = to_text(a, ctx), y = to_text(b, ctx);
      char* out = ctx.arena->allocate(x.size() + y.size() + 1);
      if (!x.empty()) std::memcpy(out, x.data(), x.size());  // an empty view's data() may be null
      if (!y.empty()) std::memcpy(out + x.size(), y.data(), y.size());
      return Value::string({out, x.size() + y.size()});
    }
    case Op::eq:
    case Op::ne:
    case Op::lt:
    case Op::le:
    case Op::gt:
    case Op::ge: {
      const auto c = compare(eval(*e.args[0], ctx), eval(*e.args[1], ctx));
      if (!c) return Value::null();
      switch (e.op) {
        case Op::eq:
          return Value::boolean(*c == 0);
        case Op::ne:
          return Value::boolean(*c != 0);
        case Op::lt:
          return Value::boolean(*c < 0);
        case Op::le:
          return Value::boolean(*c <= 0);
        case Op::gt:
          return Value::boolean(*c > 0);
        default:
          return Value::boolean(*c >= 0);
      }
    }
    case Op::and_: {
      const Value a = eval(*e.args[0], ctx);
      if (a.type == SqlType::boolean && !a.b) return Value::boolean(false);
      const Value b = eval(*e.args[1], ctx);
      if (b.type == SqlType::boolean && !b.b) return Value::boolean(false);
      if (a.type == SqlType::boolean && b.type == SqlType::boolean) return Value::boolean(true);
      return Value::null();
    }
    case Op::or_: {
      const Value a = eval(*e.args[0], ctx);
      if (a.type == SqlType::boolean && a.b) return Value::boolean(true);
      const Value b = eval(*e.args[1], ctx);
      if (b.type == SqlType::boolean && b.b) return Value::boolean(true);
      if (a.type == SqlType::boolean && b.type == SqlType::boolean) return Value::boolean(false);
      return Value::null();
    }
    case Op::in: {
      const Value v = eval(*e.args[0], ctx);
      if (v.is_null()) return Value::null();
      bool saw_null = false;
      for (std::size_t i = 1; i < e.args.size(); ++i) {
        const auto c = compare(v, eval(*e.args[i], ctx));
        if (!c) {
          saw_null = true;
        } else if (*c == 0) {
          return Value::boolean(!e.negated);
        }
      }
      if (saw_null) return Value::null();
      return Value::boolean(e.negated);
    }
    case Op::like: {
      const Value a = eval(*e.args[0], ctx), p = eval(*e.args[1], ctx);
      if (a.is_null() || p.is_null()) return Value::null();
      const bool m = like_match(to_text(a, ctx), to_text(p, ctx));
      return Value::boolean(m != e.negated);
    }
    case Op::is_null: {
      const bool n = eval(*e.args[0], ctx).is_null();
      return Value::boolean(n != e.negated);
    }
    case Op::between: {
      const Value v = eval(*e.args[0], ctx);
      const auto lo = compare(v, eval(*e.args[1], ctx));
      const auto hi = compare(v, eval(*e.args[2], ctx));
      if (!lo || !hi) return Value::null();
      const bool in = *lo >= 0 && *hi <= 0;
      return Value::boolean(in != e.negated);
    }
    case Op::case_: {
      const std::size_t pairs = (e.args.size() - (e.has_else ? 1 : 0)) / 2;
      for (std::size_t i = 0; i < pairs; ++i) {
        if (truthy(eval(*e.args[2 * i], ctx))) {
          return cast_value(eval(*e.args[2 * i + 1], ctx), e.type, ctx);
        }
      }
      if (e.has_else) return cast_value(eval(*e.args.back(), ctx), e.type, ctx);
      return Value::null();
    }
    case Op::cast:
      return cast_value(eval(*e.args[0], ctx), e.cast_to, ctx);
    case Op::call:
      switch (e.func) {
        case Func::lower:
          return case_map(eval(*e.args[0], ctx), false, ctx);
        case Func::upper:
          return case_map(eval(*e.args[0], ctx), true, ctx);
        case Func::length: {
          const Value v = eval(*e.args[0], ctx);
          if (v.is_null()) return v;
          const std::string_view s = to_text(v, ctx);
          std::int64_t n = 0;  // characters, not bytes: count UTF-8 lead bytes
          for (unsigned char c : s) n += (c & 0xC0) != 0x80;
          return Value::integer(n);
        }
        case Func::abs: {
          Value v = eval(*e.args[0], ctx);
          if (v.type == SqlType::string && !parse_number(v.s, v)) return Value::null();
          if (v.type == SqlType::integer) return Value::integer(v.i < 0 ? -v.i : v.i);
          if (v.type == SqlType::floating) return Value::floating(std::fabs(v.d));
          return Value::null();
        }
        case Func::substr: {
          const Value v = eval(*e.args[0], ctx);
          Value start = eval(*e.args[1], ctx);
          if (v.is_null() || start.is_null()) return Value::null();
          start = cast_value(start, SqlType::integer, ctx);
          if (start.is_null()) return start;
          const std::string_view s = to_text(v, ctx);
          // SQL positions are 1-based; a start below 1 still counts toward the length.
          std::int64_t from = start.i - 1;
          std::int64_t len = static_cast<std::int64_t>(s.size());
          if (e.args.size() == 3) {
            Value l = cast_value(eval(*e.args[2], ctx), SqlType::integer, ctx);
            if (l.is_null()) return l;
            if (l.i < 0) {
              ++*ctx.errors;
              return Value::null();
            }
            len = l.i;
          }
          std::int64_t to = e.args.size() == 3 ? from + len : static_cast<std::int64_t>(s.size());
          if (from < 0) from = 0;
          if (to > static_cast<std::int64_t>(s.size())) to = static_cast<std::int64_t>(s.size());
          if (to <= from) return Value::string({});
          return Value::string(
              s.substr(static_cast<std::size_t>(from), static_cast<std::size_t>(to - from)));
        }
        case Func::concat: {
          std::size_t total = 0;
          // Two passes: first the parts (NULL parts are skipped, as in most engines).
          constexpr std::size_t kMax = 32;
          std::string_view parts[kMax];
          const std::size_t n = e.args.size() < kMax ? e.args.size() : kMax;
          for (std::size_t i = 0; i < n; ++i) {
            const Value v = eval(*e.args[i], ctx);
            parts[i] = v.is_null() ? std::string_view{} : to_text(v, ctx);
            total += parts[i].size();
          }
          char* out = ctx.arena->allocate(total + 1);
          std::size_t at = 0;
          for (std::size_t i = 0; i < n; ++i) {
            if (parts[i].empty()) continue;  // a NULL part's data() is null: not for memcpy
            std::memcpy(out + at, parts[i].data(), parts[i].size());
            at += parts[i].size();
          }
          return Value::string({out, total});
        }
        case Func::coalesce:
          for (const auto& a : e.args) {
            const Value v = eval(*a, ctx);
            if (!v.is_null()) return cast_value(v, e.type, ctx);
          }
          return Value::null();
      }
      return Value::null();
    case Op::agg:
      return Value::null();
  }
  return Value::null();
}

}  // namespace sluice::sql

#include <algorithm>
#include <charconv>
#include <cmath>

#include "sql/ast.h"
#include "sql/lexer.h"

namespace sluice::sql {

std::string_view agg_name(AggKind k) noexcept {
  switch (k) {
    case AggKind::count_star:
    case AggKind::count:
    case AggKind::count_distinct:
      return "COUNT";
    case AggKind::sum:
      return "SUM";
    case AggKind::avg:
      return "AVG";
    case AggKind::min:
      return "MIN";
    case AggKind::max:
      return "MAX";
    case AggKind::first_value:
      return "FIRST_VALUE";
    case AggKind::last_value:
      return "LAST_VALUE";
    case AggKind::approx_percentile:
      return "APPROX_PERCENTILE";
    case AggKind::merge:
      return "MERGE";
  }
  return "?";
}

namespace {

// Words that end an expression or a list; never read as a name or an alias.
constexpr std::string_view kReserved[] = {
    "select", "from",  "where", "group",  "by",    "having", "and",     "or",       "not",
    "in",     "like",  "is",    "null",   "case",  "when",   "then",    "else",     "end",
    "as",     "true",  "false", "insert", "into",  "cast",   "between", "distinct", "interval",
    "create", "table", "order", "limit",  "union", "join",   "on",      "window"};

bool reserved(const Token& t) {
  if (t.kind != Tok::ident) return false;
  for (std::string_view w : kReserved) {
    if (iequals(t.text, w)) return true;
  }
  return false;
}

std::string describe(const Token& t, std::string_view sql) {
  if (t.kind == Tok::end) return "end of input";
  return "'" + std::string(sql.substr(t.offset, t.length)) + "'";
}

/// "5 seconds", "5" + unit "SECOND": nanoseconds, or nullopt with `why`.
std::optional<std::int64_t> unit_ns(std::string_view unit) {
  std::string u;
  for (char c : unit) u.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
  if (u.size() > 1 && u.back() == 's' && u != "ms" && u != "us" && u != "ns") u.pop_back();
  if (u == "millisecond" || u == "ms") return 1'000'000;
  if (u == "microsecond" || u == "us") return 1'000;
  if (u == "nanosecond" || u == "ns") return 1;
  if (u == "second" || u == "sec" || u == "s") return 1'000'000'000;
  if (u == "minute" || u == "min" || u == "m") return 60'000'000'000;
  if (u == "hour" || u == "h") return 3'600'000'000'000;
  if (u == "day" || u == "d") return 86'400'000'000'000;
  if (u == "week") return 7 * 86'400'000'000'000;
  return std::nullopt;
}

class Parser {
 public:
  Parser(std::string_view sql, std::vector<Token> toks, CompileError& error)
      : sql_(sql), toks_(std::move(toks)), error_(error) {}

  std::optional<Statement> script() {
    Statement st;
    if (peek().is("create")) {
      auto t = create_table();
      if (!t) return std::nullopt;
      st.table = std::move(*t);
      if (peek().kind != Tok::semicolon) return fail_expected("';' after CREATE TABLE");
      next();
    }
    if (!statement(st)) return std::nullopt;
    while (peek().kind == Tok::semicolon) next();
    if (peek().kind != Tok::end) return fail_expected("end of query");
    st.end_offset = sql_.size();
    return st;
  }

 private:
  const Token& peek(std::size_t ahead = 0) const {
    const std::size_t i = pos_ + ahead;
    return i < toks_.size() ? toks_[i] : toks_.back();
  }
  const Token& next() {
    const Token& t = peek();
    if (pos_ < toks_.size() - 1) ++pos_;
    return t;
  }
  bool accept(std::string_view kw) {
    if (!peek().is(kw)) return false;
    next();
    return true;
  }
  bool accept(Tok k) {
    if (peek().kind != k) return false;
    next();
    return true;
  }
  std::nullopt_t fail_at(std::size_t offset, std::string msg) {
    if (error_.message.empty()) {
      error_.message = std::move(msg);
      error_.offset = offset;
    }
    return std::nullopt;
  }
  std::nullopt_t fail_expected(std::string_view what) {
    return fail_at(peek().offset,
                   "expected " + std::string(what) + ", got " + describe(peek(), sql_));
  }
  bool expect(std::string_view kw) {
    if (accept(kw)) return true;
    std::string up;
    for (char c : kw) up.push_back(static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c));
    fail_expected(up);
    return false;
  }
  bool expect(Tok k, std::string_view what) {
    if (accept(k)) return true;
    fail_expected(what);
    return false;
  }

  /// A name: an identifier that is not reserved, or a quoted identifier.
  std::optional<std::string> name(std::string_view what) {
    const Token& t = peek();
    if (t.kind == Tok::quoted_ident || (t.kind == Tok::ident && !reserved(t))) {
      next();
      return t.text;
    }
    return fail_expected(what);
  }
  /// A dotted path a.b.c.
  std::optional<std::string> path(std::string_view what) {
    auto first = name(what);
    if (!first) return std::nullopt;
    std::string p = *first;
    while (peek().kind == Tok::dot) {
      next();
      auto part = name("a name after '.'");
      if (!part) return std::nullopt;
      p += ".";
      p += *part;
    }
    return p;
  }

  std::optional<SqlType> type_name_() {
    const Token& t = peek();
    if (t.kind != Tok::ident) return fail_expected("a type");
    const std::size_t at = t.offset;
    std::string w = t.text;
    next();
    SqlType type;
    auto is = [&](std::initializer_list<std::string_view> names) {
      for (std::string_view n : names) {
        if (iequals(w, n)) return true;
      }
      return false;
    };
    if (is({"bigint", "int", "integer", "smallint", "tinyint", "long", "int64"})) {
      type = SqlType::integer;
    } else if (is({"double", "float", "real", "decimal", "numeric"})) {
      type = SqlType::floating;
      if (iequals(w, "double")) accept("precision");
    } else if (is({"varchar", "string", "text", "char"})) {
      type = SqlType::string;
    } else if (is({"boolean", "bool"})) {
      type = SqlType::boolean;
    } else if (is({"timestamp", "timestamp_ltz"})) {
      type = SqlType::timestamp;
    } else {
      return fail_at(at, "unknown type '" + w + "'");
    }
    if (peek().kind == Tok::lparen) {  // VARCHAR(64), DECIMAL(10, 2), TIMESTAMP(3): sizes ignored
      next();
      while (peek().kind == Tok::integer || peek().kind == Tok::comma) next();
      if (!expect(Tok::rparen, "')'")) return std::nullopt;
    }
    if (type == SqlType::timestamp && peek().is("with")) {  // WITH [LOCAL] TIME ZONE
      next();
      accept("local");
      if (!expect("time") || !expect("zone")) return std::nullopt;
    }
    return type;
  }

  std::optional<std::int64_t> interval_value() {
    const std::size_t at = peek().offset;
    if (!expect("interval")) return std::nullopt;
    const Token& v = peek();
    std::string text;
    if (v.kind == Tok::string || v.kind == Tok::integer) {
      text = v.text;
      next();
    } else {
      return fail_expected("a quoted interval such as '5' SECOND or '5 seconds'");
    }
    // Split "5 seconds" into number and unit.
    std::string num = text, unit;
    auto trim = [](std::string& s) {
      while (!s.empty() && s.front() == ' ') s.erase(s.begin());
      while (!s.empty() && s.back() == ' ') s.pop_back();
    };
    trim(num);
    const std::size_t sp = num.find(' ');
    if (sp != std::string::npos) {
      unit = num.substr(sp + 1);
      num.resize(sp);
      trim(unit);
    }
    if (peek().kind == Tok::ident && !reserved(peek()) && unit_ns(peek().text)) {
      if (!unit.empty()) {
        return fail_at(peek().offset, "the interval '" + text + "' already names its unit");
      }
      unit = next().text;
    }
    if (unit.empty() && peek().kind == Tok::ident && !reserved(peek())) {
      return fail_at(peek().offset, "unknown interval unit '" + peek().text + "'");
    }
    if (unit.empty()) {
      return fail_at(v.offset, "interval '" + text +
                                   "' needs a unit: INTERVAL '5' SECOND or INTERVAL '5 seconds'");
    }
    auto mult = unit_ns(unit);
    if (!mult) return fail_at(v.offset, "unknown interval unit '" + unit + "'");
    double amount = 0;
    const char* b = num.data();
    const char* e = num.data() + num.size();
    auto [ptr, ec] = std::from_chars(b, e, amount);
    if (ec != std::errc() || ptr != e || num.empty()) {
      return fail_at(v.offset, "invalid interval '" + text + "'");
    }
    const double ns = amount * static_cast<double>(*mult);
    if (!(ns >= 0) || ns > 9.2e18) return fail_at(v.offset, "interval '" + text + "' out of range");
    (void)at;
    return static_cast<std::int64_t>(std::llround(ns));
  }

  std::optional<CreateTable> create_table() {
    CreateTable t;
    next();  // CREATE
    if (!expect("table")) return std::nullopt;
    t.offset = peek().offset;
    auto n = name("a table name");
    if (!n) return std::nullopt;
    t.name = *n;
    if (!expect(Tok::lparen, "'('")) return std::nullopt;
    for (;;) {
      if (peek().is("watermark")) {
        next();
        if (!expect("for")) return std::nullopt;
        t.watermark_offset = peek().offset;
        auto col = path("a column name");
        if (!col) return std::nullopt;
        if (!expect("as")) return std::nullopt;
        const std::size_t at = peek().offset;
        auto col2 = path("the column name");
        if (!col2) return std::nullopt;
        if (*col2 != *col) {
          return fail_at(
              at, "the watermark must be '" + *col + " - INTERVAL ...', got '" + *col2 + "'");
        }
        std::int64_t delay = 0;
        if (accept(Tok::minus)) {
          auto d = interval_value();
          if (!d) return std::nullopt;
          delay = *d;
        }
        t.watermark_column = *col;
        t.watermark_delay_ns = delay;
      } else if (peek().is("primary")) {
        return fail_at(peek().offset, "PRIMARY KEY is not supported in a stream table");
      } else {
        const std::size_t at = peek().offset;
        auto col = path("a column name");
        if (!col) return std::nullopt;
        for (std::size_t i = 0; i < t.columns.size(); ++i) {
          if (t.columns[i].name == *col) return fail_at(at, "duplicate column '" + *col + "'");
        }
        auto ty = type_name_();
        if (!ty) return std::nullopt;
        Column c{*col, *ty, false};
        if (peek().is("not")) {
          next();
          if (!expect("null")) return std::nullopt;
          c.not_null = true;
        } else {
          accept("null");
        }
        t.columns.push_back(std::move(c));
        t.column_offsets.push_back(at);
      }
      if (accept(Tok::comma)) continue;
      if (!expect(Tok::rparen, "',' or ')'")) return std::nullopt;
      break;
    }
    if (t.watermark_column) {
      bool found = false;
      for (const Column& c : t.columns) {
        if (c.name == *t.watermark_column) {
          found = true;
          if (c.type != SqlType::timestamp && c.type != SqlType::integer) {
            return fail_at(t.watermark_offset, "watermark column '" + c.name +
                                                   "' must be TIMESTAMP or BIGINT, not " +
                                                   std::string(type_name(c.type)));
          }
        }
      }
      if (!found) {
        return fail_at(t.watermark_offset,
                       "unknown watermark column '" + *t.watermark_column + "'");
      }
    }
    // WITH ('connector' = ...) options of other engines are not ours.
    if (peek().is("with"))
      return fail_at(peek().offset,
                     "WITH options are not supported: the "
                     "source is configured in sluice");
    return t;
  }

  bool statement(Statement& st) {
    if (accept("insert")) {
      if (!expect("into")) return false;
      auto ch = name("a channel name");
      if (!ch) return false;
      st.insert_into = *ch;
    }
    if (!expect("select")) return false;
    for (;;) {
      SelectItem item;
      const std::size_t start = peek().offset;
      if (peek().kind == Tok::star) {
        fail_at(start, "SELECT * is not supported: name the keys and aggregates");
        return false;
      }
      item.expr = expr();
      if (!item.expr) return false;
      item.text = std::string(sql_.substr(start, item.expr->offset + item.expr->length - start));
      if (accept("as")) {
        auto a = name("an alias");
        if (!a) return false;
        item.alias = *a;
      } else if (peek().kind == Tok::quoted_ident ||
                 (peek().kind == Tok::ident && !reserved(peek()))) {
        item.alias = next().text;
      }
      st.select.push_back(std::move(item));
      if (!accept(Tok::comma)) break;
    }
    if (!expect("from")) return false;
    st.from_offset = peek().offset;
    auto from = name("a source name");
    if (!from) return false;
    st.from = *from;
    if (accept("where")) {
      st.where = expr();
      if (!st.where) return false;
    }
    if (!peek().is("group")) {
      fail_expected("GROUP BY with a window (TUMBLE, HOP or SESSION)");
      return false;
    }
    st.group_by_offset = peek().offset;
    next();
    if (!expect("by")) return false;
    for (;;) {
      const Token& t = peek();
      if ((t.is("tumble") || t.is("hop") || t.is("session")) && peek(1).kind == Tok::lparen) {
        if (st.window) {
          fail_at(t.offset, "only one window per query");
          return false;
        }
        auto w = window_call();
        if (!w) return false;
        st.window = std::move(*w);
      } else {
        auto e = expr();
        if (!e) return false;
        st.group.push_back(std::move(e));
      }
      if (!accept(Tok::comma)) break;
    }
    if (!st.window) {
      fail_at(st.group_by_offset, "GROUP BY needs a window: TUMBLE, HOP or SESSION");
      return false;
    }
    if (accept("having")) {
      st.having = expr();
      if (!st.having) return false;
    }
    if (peek().is("order") || peek().is("limit") || peek().is("union") || peek().is("join")) {
      fail_at(peek().offset, "'" + peek().text + "' is not supported in a streaming query");
      return false;
    }
    return true;
  }

  std::optional<WindowCall> window_call() {
    WindowCall w;
    const Token& t = next();
    w.offset = t.offset;
    w.kind = t.is("tumble") ? WindowKind::tumble
             : t.is("hop")  ? WindowKind::hop
                            : WindowKind::session;
    next();  // (
    if (!peek().is("interval")) {
      w.time_column_offset = peek().offset;
      auto col = path("a time column or INTERVAL");
      if (!col) return std::nullopt;
      w.time_column = *col;
      if (!expect(Tok::comma, "','")) return std::nullopt;
    }
    const std::size_t first_at = peek().offset;
    auto first = interval_value();
    if (!first) return std::nullopt;
    if (w.kind == WindowKind::hop) {
      if (!expect(Tok::comma, "',' and the window size")) return std::nullopt;
      const std::size_t size_at = peek().offset;
      auto size = interval_value();
      if (!size) return std::nullopt;
      w.slide_ns = *first;
      w.size_ns = *size;
      if (w.slide_ns <= 0) return fail_at(first_at, "HOP slide must be positive");
      if (w.size_ns <= 0) return fail_at(size_at, "HOP size must be positive");
      if (w.size_ns % w.slide_ns != 0) {
        return fail_at(size_at, "HOP size must be a multiple of its slide");
      }
      if (w.size_ns / w.slide_ns > 1000) {
        return fail_at(size_at, "HOP size / slide must be at most 1000");
      }
    } else {
      w.size_ns = *first;
      w.slide_ns = w.kind == WindowKind::tumble ? *first : 0;
      if (w.size_ns <= 0) {
        return fail_at(first_at, w.kind == WindowKind::tumble ? "TUMBLE size must be positive"
                                                              : "SESSION gap must be positive");
      }
    }
    if (!expect(Tok::rparen, "')'")) return std::nullopt;
    return w;
  }

  // Expressions, lowest precedence first.
  std::unique_ptr<Expr> make(Op op, std::size_t offset) {
    auto e = std::make_unique<Expr>();
    e->op = op;
    e->offset = offset;
    return e;
  }
  void span_to_prev(Expr& e) {
    const Token& prev = toks_[pos_ == 0 ? 0 : pos_ - 1];
    e.length = prev.offset + prev.length - e.offset;
  }
  // The height of a parsed tree. Binary nodes store theirs when made; between two binary nodes
  // there are at most depth_ levels (parentheses, NOT, signs, calls), so this recursion is bounded.
  static int height(Expr& e) {
    if (e.height == 0) {
      int h = 0;
      for (auto& a : e.args) h = std::max(h, height(*a));
      e.height = h + 1;
    }
    return e.height;
  }
  // A chain of binary operators (a + a + ... or x = 1 OR x = 2 OR ...) makes a tree as tall as the
  // chain is long, and planning, evaluation and destruction recurse over it: it shares the bound.
  std::unique_ptr<Expr> binary(Op op, std::unique_ptr<Expr> l, std::unique_ptr<Expr> r) {
    const int h = 1 + std::max(height(*l), height(*r));
    if (h > kMaxHeight) {
      fail_at(r->offset, "expression nested too deeply");
      return nullptr;
    }
    auto e = make(op, l->offset);
    e->height = h;
    e->length = r->offset + r->length - l->offset;
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return e;
  }

  // Every recursion of the expression grammar (parentheses, NOT, unary signs) counts against one
  // bound, so that no query can overflow the stack. On success the caller decrements depth_.
  static constexpr int kMaxHeight = 200;
  bool deeper() {
    if (++depth_ > kMaxHeight) {
      fail_at(peek().offset, "expression nested too deeply");
      return false;
    }
    return true;
  }
  std::unique_ptr<Expr> expr() {
    if (!deeper()) return nullptr;
    auto e = or_expr();
    --depth_;
    return e;
  }
  std::unique_ptr<Expr> or_expr() {
    auto l = and_expr();
    while (l && peek().is("or")) {
      next();
      auto r = and_expr();
      if (!r) return nullptr;
      l = binary(Op::or_, std::move(l), std::move(r));
      if (!l) return nullptr;
    }
    return l;
  }
  std::unique_ptr<Expr> and_expr() {
    auto l = not_expr();
    while (l && peek().is("and")) {
      next();
      auto r = not_expr();
      if (!r) return nullptr;
      l = binary(Op::and_, std::move(l), std::move(r));
      if (!l) return nullptr;
    }
    return l;
  }
  std::unique_ptr<Expr> not_expr() {
    if (peek().is("not")) {
      const std::size_t at = next().offset;
      if (!deeper()) return nullptr;
      auto inner = not_expr();
      --depth_;
      if (!inner) return nullptr;
      auto e = make(Op::not_, at);
      e->length = inner->offset + inner->length - at;
      e->args.push_back(std::move(inner));
      return e;
    }
    return comparison();
  }
  std::unique_ptr<Expr> comparison() {
    auto l = concat_expr();
    if (!l) return nullptr;
    for (;;) {
      const Token& t = peek();
      Op op;
      switch (t.kind) {
        case Tok::eq:
          op = Op::eq;
          break;
        case Tok::ne:
          op = Op::ne;
          break;
        case Tok::lt:
          op = Op::lt;
          break;
        case Tok::le:
          op = Op::le;
          break;
        case Tok::gt:
          op = Op::gt;
          break;
        case Tok::ge:
          op = Op::ge;
          break;
        default:
          op = Op::literal;
      }
      if (op != Op::literal) {
        next();
        auto r = concat_expr();
        if (!r) return nullptr;
        l = binary(op, std::move(l), std::move(r));
        if (!l) return nullptr;
        continue;
      }
      if (t.is("is")) {
        next();
        auto e = make(Op::is_null, l->offset);
        e->negated = accept("not");
        if (!expect("null")) return nullptr;
        span_to_prev(*e);
        e->args.push_back(std::move(l));
        l = std::move(e);
        continue;
      }
      bool negated = false;
      if (t.is("not") && (peek(1).is("in") || peek(1).is("like") || peek(1).is("between"))) {
        next();
        negated = true;
      }
      if (peek().is("in")) {
        next();
        auto e = make(Op::in, l->offset);
        e->negated = negated;
        e->args.push_back(std::move(l));
        if (!expect(Tok::lparen, "'(' after IN")) return nullptr;
        for (;;) {
          auto item = expr();
          if (!item) return nullptr;
          e->args.push_back(std::move(item));
          if (!accept(Tok::comma)) break;
        }
        if (!expect(Tok::rparen, "',' or ')'")) return nullptr;
        span_to_prev(*e);
        l = std::move(e);
        continue;
      }
      if (peek().is("like")) {
        next();
        auto r = concat_expr();
        if (!r) return nullptr;
        l = binary(Op::like, std::move(l), std::move(r));
        if (!l) return nullptr;
        l->negated = negated;
        continue;
      }
      if (peek().is("between")) {
        next();
        auto lo = concat_expr();
        if (!lo) return nullptr;
        if (!expect("and")) return nullptr;
        auto hi = concat_expr();
        if (!hi) return nullptr;
        auto e = make(Op::between, l->offset);
        e->negated = negated;
        e->length = hi->offset + hi->length - l->offset;
        e->args.push_back(std::move(l));
        e->args.push_back(std::move(lo));
        e->args.push_back(std::move(hi));
        l = std::move(e);
        continue;
      }
      return l;
    }
  }
  std::unique_ptr<Expr> concat_expr() {
    auto l = additive();
    while (l && peek().kind == Tok::concat) {
      next();
      auto r = additive();
      if (!r) return nullptr;
      l = binary(Op::concat, std::move(l), std::move(r));
      if (!l) return nullptr;
    }
    return l;
  }
  std::unique_ptr<Expr> additive() {
    auto l = multiplicative();
    while (l && (peek().kind == Tok::plus || peek().kind == Tok::minus)) {
      const Op op = next().kind == Tok::plus ? Op::add : Op::sub;
      auto r = multiplicative();
      if (!r) return nullptr;
      l = binary(op, std::move(l), std::move(r));
      if (!l) return nullptr;
    }
    return l;
  }
  std::unique_ptr<Expr> multiplicative() {
    auto l = unary();
    while (l &&
           (peek().kind == Tok::star || peek().kind == Tok::slash || peek().kind == Tok::percent)) {
      const Tok k = next().kind;
      const Op op = k == Tok::star ? Op::mul : k == Tok::slash ? Op::div : Op::mod;
      auto r = unary();
      if (!r) return nullptr;
      l = binary(op, std::move(l), std::move(r));
      if (!l) return nullptr;
    }
    return l;
  }
  std::unique_ptr<Expr> unary() {
    if (peek().kind == Tok::minus || peek().kind == Tok::plus) {
      const Token& t = next();
      const bool minus = t.kind == Tok::minus;
      if (!deeper()) return nullptr;
      auto inner = unary();
      --depth_;
      if (!inner) return nullptr;
      if (!minus) return inner;
      if (inner->op == Op::literal && inner->lit.type == SqlType::integer) {
        inner->lit.i = -inner->lit.i;
        inner->length += inner->offset - t.offset;
        inner->offset = t.offset;
        return inner;
      }
      if (inner->op == Op::literal && inner->lit.type == SqlType::floating) {
        inner->lit.d = -inner->lit.d;
        inner->length += inner->offset - t.offset;
        inner->offset = t.offset;
        return inner;
      }
      auto e = make(Op::neg, t.offset);
      e->length = inner->offset + inner->length - t.offset;
      e->args.push_back(std::move(inner));
      return e;
    }
    return primary();
  }

  std::unique_ptr<Expr> primary() {
    const Token& t = peek();
    const std::size_t at = t.offset;
    switch (t.kind) {
      case Tok::integer: {
        next();
        auto e = make(Op::literal, at);
        e->length = t.length;
        std::int64_t v = 0;
        auto [p, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
        if (ec != std::errc()) {
          fail_at(at, "integer literal " + t.text + " out of range");
          return nullptr;
        }
        (void)p;
        e->lit = Value::integer(v);
        e->type = SqlType::integer;
        return e;
      }
      case Tok::number: {
        next();
        auto e = make(Op::literal, at);
        e->length = t.length;
        double v = 0;
        std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
        e->lit = Value::floating(v);
        e->type = SqlType::floating;
        return e;
      }
      case Tok::string: {
        next();
        auto e = make(Op::literal, at);
        e->length = t.length;
        e->name = t.text;
        e->type = SqlType::string;
        e->lit.type = SqlType::string;  // the view is set after planning (name may move)
        return e;
      }
      case Tok::lparen: {
        next();
        auto e = expr();
        if (!e) return nullptr;
        if (!expect(Tok::rparen, "')'")) return nullptr;
        e->length = toks_[pos_ - 1].offset + 1 - e->offset;
        if (e->offset > at) {  // keep the parentheses in the span
          e->length += e->offset - at;
          e->offset = at;
        }
        return e;
      }
      case Tok::quoted_ident: {
        auto p = path("a name");
        if (!p) return nullptr;
        auto e = make(Op::field, at);
        e->name = *p;
        span_to_prev(*e);
        return e;
      }
      case Tok::ident:
        break;
      default:
        fail_expected("an expression");
        return nullptr;
    }
    if (t.is("null")) {
      next();
      auto e = make(Op::literal, at);
      e->length = t.length;
      e->type = SqlType::null;
      return e;
    }
    if (t.is("true") || t.is("false")) {
      next();
      auto e = make(Op::literal, at);
      e->length = t.length;
      e->lit = Value::boolean(t.is("true"));
      e->type = SqlType::boolean;
      return e;
    }
    if (t.is("interval")) {
      auto ns = interval_value();
      if (!ns) return nullptr;
      auto e = make(Op::literal, at);
      span_to_prev(*e);
      e->lit = Value::interval(*ns);
      e->type = SqlType::interval;
      return e;
    }
    if (t.is("case")) return case_expr();
    if (t.is("cast")) {
      next();
      if (!expect(Tok::lparen, "'(' after CAST")) return nullptr;
      auto inner = expr();
      if (!inner) return nullptr;
      if (!expect("as")) return nullptr;
      auto ty = type_name_();
      if (!ty) return nullptr;
      if (!expect(Tok::rparen, "')'")) return nullptr;
      auto e = make(Op::cast, at);
      e->cast_to = *ty;
      e->args.push_back(std::move(inner));
      span_to_prev(*e);
      return e;
    }
    if (reserved(t)) {
      fail_expected("an expression");
      return nullptr;
    }
    if (peek(1).kind == Tok::lparen) return call();
    if (t.is("window_start") || t.is("window_end")) {
      next();
      auto e = make(t.is("window_start") ? Op::window_start : Op::window_end, at);
      e->length = t.length;
      return e;
    }
    auto p = path("a name");
    if (!p) return nullptr;
    auto e = make(Op::field, at);
    e->name = *p;
    span_to_prev(*e);
    return e;
  }

  std::unique_ptr<Expr> case_expr() {
    const std::size_t at = next().offset;  // CASE
    auto e = make(Op::case_, at);
    std::unique_ptr<Expr> operand;
    if (!peek().is("when")) {
      operand = expr();
      if (!operand) return nullptr;
    }
    if (!peek().is("when")) {
      fail_expected("WHEN");
      return nullptr;
    }
    while (accept("when")) {
      auto cond = expr();
      if (!cond) return nullptr;
      if (operand) {  // CASE x WHEN v: x = v
        auto copy = clone(*operand);
        cond = binary(Op::eq, std::move(copy), std::move(cond));
        if (!cond) return nullptr;
      }
      if (!expect("then")) return nullptr;
      auto then = expr();
      if (!then) return nullptr;
      e->args.push_back(std::move(cond));
      e->args.push_back(std::move(then));
    }
    if (accept("else")) {
      auto other = expr();
      if (!other) return nullptr;
      e->args.push_back(std::move(other));
      e->has_else = true;
    }
    if (!expect("end")) return nullptr;
    span_to_prev(*e);
    return e;
  }

  std::unique_ptr<Expr> call() {
    const Token& t = next();
    const std::size_t at = t.offset;
    std::string fname = t.text;
    next();  // (
    auto is = [&](std::string_view n) { return iequals(fname, n); };
    struct AggName {
      std::string_view name;
      AggKind kind;
    };
    static constexpr AggName kAggs[] = {
        {"count", AggKind::count},
        {"sum", AggKind::sum},
        {"avg", AggKind::avg},
        {"min", AggKind::min},
        {"max", AggKind::max},
        {"first_value", AggKind::first_value},
        {"last_value", AggKind::last_value},
        {"approx_percentile", AggKind::approx_percentile},
    };
    if (is("partial")) {
      // PARTIAL(agg(...)): the aggregate's mergeable state instead of its value.
      if (peek().kind == Tok::rparen) {
        fail_at(peek().offset, "PARTIAL needs an aggregate, e.g. PARTIAL(COUNT(*))");
        return nullptr;
      }
      auto inner = expr();
      if (!inner) return nullptr;
      if (inner->op != Op::agg) {
        fail_at(inner->offset, "PARTIAL takes one aggregate call, e.g. PARTIAL(COUNT(*))");
        return nullptr;
      }
      if (inner->partial) {
        fail_at(inner->offset, "PARTIAL cannot be nested");
        return nullptr;
      }
      if (inner->agg == AggKind::merge) {
        fail_at(inner->offset, "PARTIAL(MERGE(...)) is not supported: a collector emits values");
        return nullptr;
      }
      if (peek().kind == Tok::comma) {
        fail_at(peek().offset, "PARTIAL takes one aggregate call");
        return nullptr;
      }
      if (!expect(Tok::rparen, "')'")) return nullptr;
      inner->partial = true;
      inner->offset = at;
      span_to_prev(*inner);
      return inner;
    }
    if (is("merge")) {
      auto e = make(Op::agg, at);
      e->name = fname;
      e->agg = AggKind::merge;
      if (peek().kind == Tok::rparen) {
        fail_at(peek().offset, "MERGE needs the field that carries a PARTIAL state");
        return nullptr;
      }
      for (;;) {
        auto arg = expr();
        if (!arg) return nullptr;
        e->args.push_back(std::move(arg));
        if (!accept(Tok::comma)) break;
      }
      if (!expect(Tok::rparen, "')'")) return nullptr;
      span_to_prev(*e);
      return e;
    }
    for (const AggName& a : kAggs) {
      if (!is(a.name)) continue;
      auto e = make(Op::agg, at);
      e->name = fname;
      e->agg = a.kind;
      if (a.kind == AggKind::count && peek().kind == Tok::star) {
        next();
        e->agg = AggKind::count_star;
      } else {
        if (accept("distinct")) {
          if (a.kind != AggKind::count) {
            fail_at(toks_[pos_ - 1].offset, "DISTINCT is supported in COUNT only");
            return nullptr;
          }
          e->agg = AggKind::count_distinct;
        }
        if (peek().kind == Tok::rparen) {
          fail_at(peek().offset, std::string(agg_name(a.kind)) + " needs an argument");
          return nullptr;
        }
        for (;;) {
          auto arg = expr();
          if (!arg) return nullptr;
          e->args.push_back(std::move(arg));
          if (!accept(Tok::comma)) break;
        }
      }
      if (!expect(Tok::rparen, "')'")) return nullptr;
      span_to_prev(*e);
      if (peek().is("over") || peek().is("filter")) {
        fail_at(peek().offset, "'" + peek().text + "' is not supported");
        return nullptr;
      }
      return e;
    }
    struct FuncName {
      std::string_view name;
      Func func;
    };
    static constexpr FuncName kFuncs[] = {
        {"lower", Func::lower},      {"upper", Func::upper},        {"substr", Func::substr},
        {"substring", Func::substr}, {"concat", Func::concat},      {"coalesce", Func::coalesce},
        {"length", Func::length},    {"char_length", Func::length}, {"abs", Func::abs},
    };
    for (const FuncName& f : kFuncs) {
      if (!is(f.name)) continue;
      auto e = make(Op::call, at);
      e->name = fname;
      e->func = f.func;
      if (peek().kind != Tok::rparen) {
        for (;;) {
          auto arg = expr();
          if (!arg) return nullptr;
          e->args.push_back(std::move(arg));
          if (f.func == Func::substr && (peek().is("from") || peek().is("for"))) {
            next();  // SUBSTRING(s FROM a FOR b)
            continue;
          }
          if (!accept(Tok::comma)) break;
        }
      }
      if (!expect(Tok::rparen, "')'")) return nullptr;
      span_to_prev(*e);
      return e;
    }
    fail_at(at, "unknown function '" + fname + "'");
    return nullptr;
  }

  std::string_view sql_;
  std::vector<Token> toks_;
  CompileError& error_;
  std::size_t pos_ = 0;
  int depth_ = 0;
};

void canon(const Expr& e, std::string& out) {
  out += std::to_string(static_cast<int>(e.op));
  out.push_back('(');
  switch (e.op) {
    case Op::literal:
      out += std::to_string(static_cast<int>(e.type));
      out.push_back(':');
      if (e.type == SqlType::string) {
        out += e.name;
      } else if (e.type == SqlType::floating) {
        out += std::to_string(e.lit.d);
      } else {
        out += std::to_string(e.lit.i) + (e.lit.b ? "t" : "f");
      }
      break;
    case Op::field:
      out += e.name;
      break;
    case Op::call:
      out += std::to_string(static_cast<int>(e.func));
      break;
    case Op::agg:
      out += std::to_string(static_cast<int>(e.agg));
      if (e.partial) out += "p";
      break;
    case Op::cast:
      out += std::to_string(static_cast<int>(e.cast_to));
      break;
    default:
      break;
  }
  if (e.negated) out.push_back('!');
  for (const auto& a : e.args) {
    out.push_back(',');
    canon(*a, out);
  }
  out.push_back(')');
}

}  // namespace

std::unique_ptr<Expr> clone(const Expr& x) {
  auto e = std::make_unique<Expr>();
  e->op = x.op;
  e->offset = x.offset;
  e->length = x.length;
  e->type = x.type;
  e->name = x.name;
  e->lit = x.lit;
  if (x.lit.type == SqlType::string) e->lit.s = e->name;
  e->negated = x.negated;
  e->has_else = x.has_else;
  e->partial = x.partial;
  e->func = x.func;
  e->agg = x.agg;
  e->cast_to = x.cast_to;
  e->index = x.index;
  for (const auto& a : x.args) e->args.push_back(clone(*a));
  return e;
}

std::string canonical(const Expr& e) {
  std::string out;
  canon(e, out);
  return out;
}

std::optional<Statement> parse(std::string_view sql, CompileError& error) {
  std::vector<Token> toks;
  if (!tokenize(sql, toks, error)) return std::nullopt;
  Parser p(sql, std::move(toks), error);
  return p.script();
}

}  // namespace sluice::sql

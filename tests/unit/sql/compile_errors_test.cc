#include <catch2/catch.hpp>

#include "sql/engine.h"

using namespace sluice::sql;

namespace {

/// "line:col: message" of compiling `sql`, or "OK".
std::string error_of(std::string_view sql, const CompileOptions& options = {}) {
  CompileError e;
  auto q = compile(sql, options, &e);
  if (q) return "OK";
  CHECK(q.error().message() == e.str());
  return e.str();
}

constexpr const char* kWin = " GROUP BY TUMBLE(INTERVAL '5' SECOND)";

std::string with_window(std::string head) { return head + kWin; }

}  // namespace

TEST_CASE("sql errors: syntax names what was expected and where", "[unit][sql]") {
  CHECK(error_of("SELECT COUNT(*) FROM src") ==
        "1:25: expected GROUP BY with a window (TUMBLE, HOP or SESSION), got end of input");
  CHECK(error_of("SELECT COUNT(* FROM src GROUP BY TUMBLE(INTERVAL '5' SECOND)") ==
        "1:16: expected ')', got 'FROM'");
  CHECK(error_of("SELECT 'abc FROM src") == "1:8: unterminated string literal");
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY k") ==
        "1:26: GROUP BY needs a window: TUMBLE, HOP or SESSION");
  CHECK(error_of(with_window("SELECT COUNT(*) FROM src") + " ORDER BY 1") ==
        "1:63: 'ORDER' is not supported in a streaming query");
  CHECK(error_of(with_window("SELECT * FROM src")) ==
        "1:8: SELECT * is not supported: name the keys and aggregates");
  CHECK(error_of(with_window("SELECT NOSUCH(x) FROM src")) == "1:8: unknown function 'NOSUCH'");
  CHECK(error_of(with_window("SELECT SUM(DISTINCT x) FROM src")) ==
        "1:12: DISTINCT is supported in COUNT only");
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY TUMBLE(INTERVAL '5' SECOND), "
                 "SESSION(INTERVAL '1' MINUTE)") == "1:64: only one window per query");
  CHECK(error_of("SELECT COUNT(*) FROM src WHERE a ? 1" + std::string(kWin)) ==
        "1:34: unexpected character '?'");
}

TEST_CASE("sql errors: positions count lines and columns", "[unit][sql]") {
  CHECK(error_of("INSERT INTO out\nSELECT game_id,\n       COUNT(*) AS n\nFROM src\n"
                 "GROUP BY TUMBLE(INTERVAL '5' SECOND), game_id\nHAVING n > 'x'") ==
        "6:8: cannot compare BIGINT with VARCHAR");
  CompileError e;
  REQUIRE(
      !compile("SELECT\n  a,\n  COUNT(*)\nFROM src\nGROUP BY TUMBLE(INTERVAL '5' SECOND)", {}, &e));
  CHECK(e.line == 2);
  CHECK(e.column == 3);
  CHECK(e.offset == 9);
  CHECK(e.message == "column 'a' must appear in GROUP BY or in an aggregate");
}

TEST_CASE("sql errors: intervals and windows", "[unit][sql]") {
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY TUMBLE(INTERVAL '5' PARSEC)") ==
        "1:55: unknown interval unit 'PARSEC'");
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY TUMBLE(INTERVAL '5 parsecs')") ==
        "1:51: unknown interval unit 'parsecs'");
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY TUMBLE(INTERVAL '5')") ==
        "1:51: interval '5' needs a unit: INTERVAL '5' SECOND or INTERVAL '5 seconds'");
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY TUMBLE(INTERVAL '0 seconds')") ==
        "1:42: TUMBLE size must be positive");
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY SESSION(INTERVAL '0' SECOND)") ==
        "1:43: SESSION gap must be positive");
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY HOP(INTERVAL '10' SECOND, INTERVAL '15' "
                 "SECOND)") == "1:61: HOP size must be a multiple of its slide");
  CHECK(error_of("SELECT COUNT(*) AS n FROM src GROUP BY HOP(INTERVAL '1' SECOND, INTERVAL '1001' "
                 "SECOND)")
            .find("HOP size / slide must be at most 1000") != std::string::npos);
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY TUMBLE(INTERVAL 'x' SECOND)") ==
        "1:51: invalid interval 'x'");
  // Both spellings of an interval, and a time column first, compile.
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY TUMBLE(INTERVAL '5 seconds')") == "OK");
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY TUMBLE(INTERVAL '5' SECOND)") == "OK");
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE)") == "OK");
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY HOP(INTERVAL '10' SECOND, INTERVAL '1' "
                 "MINUTE)") == "OK");
}

TEST_CASE("sql errors: aggregate misuse", "[unit][sql]") {
  CHECK(error_of(with_window("SELECT a, COUNT(*) FROM src")) ==
        "1:8: column 'a' must appear in GROUP BY or in an aggregate");
  CHECK(error_of("SELECT COUNT(*) FROM src WHERE COUNT(*) > 1" + std::string(kWin)) ==
        "1:32: aggregate COUNT is not allowed in WHERE");
  CHECK(error_of("SELECT COUNT(*) FROM src GROUP BY TUMBLE(INTERVAL '5' SECOND), SUM(x)") ==
        "1:64: aggregate SUM is not allowed in GROUP BY");
  CHECK(error_of(with_window("SELECT SUM(COUNT(*)) FROM src")) ==
        "1:12: aggregate functions cannot be nested");
  CHECK(error_of(with_window("SELECT APPROX_PERCENTILE(x) FROM src")) ==
        "1:8: APPROX_PERCENTILE takes 2 arguments (value, quantile), got 1");
  CHECK(error_of(with_window("SELECT APPROX_PERCENTILE(x, 1.5) FROM src")) ==
        "1:29: APPROX_PERCENTILE's quantile must be in [0, 1], got 1.5");
  CHECK(error_of(with_window("SELECT APPROX_PERCENTILE(x, y) FROM src")) ==
        "1:29: APPROX_PERCENTILE's quantile must be a number literal in [0, 1]");
  CHECK(error_of(with_window("SELECT COUNT(*) FROM src WHERE window_start > 0")) ==
        "1:32: window_start is not allowed in WHERE (only in SELECT and HAVING)");
  CHECK(error_of(with_window("SELECT COUNT(*) AS n, COUNT(*) AS n FROM src")) ==
        "1:23: duplicate output column 'n' (use AS to rename it)");
  CHECK(error_of(with_window("SELECT COUNT(*) FROM src") + " HAVING COUNT(*)") ==
        "1:70: HAVING needs a BOOLEAN condition, got BIGINT");
  // A key may be used inside expressions; HAVING may name an output column.
  CHECK(error_of("SELECT UPPER(k) AS k2, COUNT(*) AS n FROM src GROUP BY TUMBLE(INTERVAL '5' "
                 "SECOND), k HAVING n > 2") == "OK");
}

TEST_CASE("sql errors: type mismatches", "[unit][sql]") {
  CHECK(error_of(with_window("SELECT SUM(name || 'x') FROM src")) ==
        "1:12: SUM needs a number, got VARCHAR");
  CHECK(error_of(with_window("SELECT COUNT(*) FROM src WHERE 'a' + 1 > 2")) ==
        "1:32: operator '+' cannot apply to VARCHAR and BIGINT");
  CHECK(error_of(with_window("SELECT COUNT(*) FROM src WHERE 'a' = 1")) ==
        "1:32: cannot compare VARCHAR with BIGINT");
  CHECK(error_of(with_window("SELECT CASE WHEN true THEN 'a' ELSE 1 END FROM src")) ==
        "1:37: CASE branches have incompatible types VARCHAR and BIGINT");
  CHECK(error_of(with_window("SELECT LOWER(1) FROM src")) ==
        "1:14: LOWER needs a VARCHAR, got BIGINT");
  CHECK(error_of(with_window("SELECT COUNT(*) FROM src WHERE 1 AND x")) ==
        "1:32: AND needs BOOLEAN operands, got BIGINT");
  CHECK(error_of(with_window("SELECT COUNT(*) FROM src WHERE x LIKE 5")) ==
        "1:39: LIKE needs VARCHAR operands, got BIGINT");
  CHECK(error_of(with_window("SELECT COUNT(*) FROM src WHERE x IN (1, 'a')")) == "OK");
  CHECK(error_of(with_window("SELECT COUNT(*) FROM src WHERE 1 IN (1, 'a')")) ==
        "1:41: IN list item of type VARCHAR cannot be compared with BIGINT");
}

TEST_CASE("sql errors: limits", "[unit][sql]") {
  std::string many = "SELECT ";
  for (int c = 0; c < 65; ++c)
    many += (c ? ", " : "") + std::string("COUNT(*) AS c") + std::to_string(c);
  CHECK(error_of(with_window(many + " FROM src")) == "1:1086: at most 64 output columns");
  std::string args = "SELECT CONCAT(";
  for (int c = 0; c < 33; ++c) args += (c ? ", " : "") + std::string("'x'");
  CHECK(error_of(with_window(args + ") AS v FROM src")) ==
        "1:175: CONCAT takes at most 32 arguments");
  // Nesting is bounded whatever nests (parentheses, NOT, signs): a hostile query in a
  // configuration file is an error, not a stack overflow in `sluice check`.
  const std::string parens = std::string(100'000, '(') + "1" + std::string(100'000, ')');
  CHECK(error_of(with_window("SELECT " + parens + " AS v FROM src"))
            .find("expression nested too deeply") != std::string::npos);
  std::string nots;
  for (int i = 0; i < 100'000; ++i) nots += "NOT ";
  CHECK(error_of(with_window("SELECT COUNT(*) AS n FROM src WHERE " + nots + "TRUE"))
            .find("expression nested too deeply") != std::string::npos);
  std::string signs;  // "- " apart: "--" starts a comment
  for (int i = 0; i < 100'000; ++i) signs += "- ";
  CHECK(error_of(with_window("SELECT " + signs + "1 AS v FROM src"))
            .find("expression nested too deeply") != std::string::npos);
  // So are long chains of binary operators, whose trees are as tall as the chain is long.
  std::string sum = "v";
  for (int i = 0; i < 100'000; ++i) sum += " + v";
  CHECK(error_of(with_window("SELECT SUM(" + sum + ") AS s FROM src"))
            .find("expression nested too deeply") != std::string::npos);
  std::string ors = "k = 0";
  for (int i = 1; i < 100'000; ++i) ors += " OR k = " + std::to_string(i);
  CHECK(error_of(with_window("SELECT COUNT(*) AS n FROM src WHERE " + ors))
            .find("expression nested too deeply") != std::string::npos);
  std::string short_sum = "v";
  for (int i = 0; i < 100; ++i) short_sum += " + v";
  CHECK(error_of(with_window("SELECT SUM(" + short_sum + ") AS s FROM src")) == "OK");
  // Up to the bound, a nested expression compiles.
  CHECK(error_of(with_window("SELECT " + std::string(50, '(') + "1" + std::string(50, ')') +
                             " AS v FROM src")) == "OK");
}

TEST_CASE("sql errors: names against a declared schema", "[unit][sql]") {
  const std::string t = "CREATE TABLE t (a BIGINT, b VARCHAR); ";
  CHECK(error_of(t + "SELECT c, COUNT(*) FROM t GROUP BY TUMBLE(INTERVAL '5' SECOND), c") ==
        "1:103: unknown column 'c' (did you mean 'a'?)");
  CHECK(error_of(t + "SELECT COUNT(*) FROM u" + kWin) ==
        "1:60: unknown table 'u' (the query declares 't')");
  CHECK(error_of(t + "SELECT SUM(b) FROM t" + kWin) == "1:50: SUM needs a number, got VARCHAR");
  CHECK(error_of("CREATE TABLE t (a BIGINT, b VARCHAR, WATERMARK FOR ts AS ts - INTERVAL '5' "
                 "SECOND); SELECT COUNT(*) FROM t" +
                 std::string(kWin)) == "1:52: unknown watermark column 'ts'");
  CHECK(error_of("CREATE TABLE t (a BLOB); SELECT COUNT(*) FROM t" + std::string(kWin)) ==
        "1:19: unknown type 'BLOB'");
  CHECK(error_of("CREATE TABLE t (a BIGINT, a VARCHAR); SELECT COUNT(*) FROM t" +
                 std::string(kWin)) == "1:27: duplicate column 'a'");
  CHECK(error_of("CREATE TABLE t (user_id BIGINT); SELECT COUNT(DISTINCT userid) FROM t" +
                 std::string(kWin)) == "1:56: unknown column 'userid' (did you mean 'user_id'?)");
  // The agent's schema works like CREATE TABLE.
  CompileOptions o;
  o.schema =
      std::vector<Column>{{"host", SqlType::string, false}, {"bytes", SqlType::integer, false}};
  CHECK(error_of(with_window("SELECT host, SUM(bytes) FROM src") + ", host", o) == "OK");
  CHECK(error_of(with_window("SELECT hots, SUM(bytes) FROM src") + ", hots", o) ==
        "1:72: unknown column 'hots' (did you mean 'host'?)");
  // Without a schema any name is a field read at run time.
  CHECK(error_of(with_window("SELECT COUNT(*) FROM src WHERE anything.nested = 1")) == "OK");
}

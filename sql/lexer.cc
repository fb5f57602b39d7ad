#include "sql/lexer.h"

namespace sluice::sql {

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

bool Token::is(std::string_view kw) const noexcept {
  return kind == Tok::ident && iequals(text, kw);
}

void locate(std::string_view sql, CompileError& error) {
  std::uint32_t line = 1, col = 1;
  for (std::size_t i = 0; i < error.offset && i < sql.size(); ++i) {
    if (sql[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  error.line = line;
  error.column = col;
}

namespace {

bool ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool ident_char(char c) { return ident_start(c) || (c >= '0' && c <= '9'); }
bool digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool tokenize(std::string_view sql, std::vector<Token>& out, CompileError& error) {
  std::size_t i = 0;
  const std::size_t n = sql.size();
  auto fail = [&](std::size_t at, std::string msg) {
    error.message = std::move(msg);
    error.offset = at;
    return false;
  };
  auto push = [&](Tok k, std::size_t at, std::size_t len, std::string text = {}) {
    Token t;
    t.kind = k;
    t.offset = at;
    t.length = len;
    t.text = std::move(text);
    out.push_back(std::move(t));
  };
  while (i < n) {
    const char c = sql[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
      ++i;
      continue;
    }
    if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      while (i < n && sql[i] != '\n') ++i;
      continue;
    }
    if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      const std::size_t close = sql.find("*/", i + 2);
      if (close == std::string_view::npos) return fail(i, "unterminated comment");
      i = close + 2;
      continue;
    }
    const std::size_t start = i;
    if (ident_start(c)) {
      while (i < n && ident_char(sql[i])) ++i;
      push(Tok::ident, start, i - start, std::string(sql.substr(start, i - start)));
      continue;
    }
    if (digit(c) || (c == '.' && i + 1 < n && digit(sql[i + 1]))) {
      bool is_float = false;
      while (i < n && digit(sql[i])) ++i;
      if (i < n && sql[i] == '.') {
        is_float = true;
        ++i;
        while (i < n && digit(sql[i])) ++i;
      }
      if (i < n && (sql[i] == 'e' || sql[i] == 'E')) {
        std::size_t j = i + 1;
        if (j < n && (sql[j] == '+' || sql[j] == '-')) ++j;
        if (j < n && digit(sql[j])) {
          is_float = true;
          i = j;
          while (i < n && digit(sql[i])) ++i;
        }
      }
      if (i < n && ident_start(sql[i])) return fail(i, "unexpected character after number");
      push(is_float ? Tok::number : Tok::integer, start, i - start,
           std::string(sql.substr(start, i - start)));
      continue;
    }
    if (c == '\'' || c == '"' || c == '`') {
      const char q = c;
      std::string text;
      ++i;
      for (;;) {
        if (i >= n) {
          return fail(start,
                      q == '\'' ? "unterminated string literal" : "unterminated quoted identifier");
        }
        if (sql[i] == q) {
          if (i + 1 < n && sql[i + 1] == q) {
            text.push_back(q);
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        text.push_back(sql[i++]);
      }
      if (q != '\'' && text.empty()) return fail(start, "empty quoted identifier");
      push(q == '\'' ? Tok::string : Tok::quoted_ident, start, i - start, std::move(text));
      continue;
    }
    auto two = [&](char a, char b) { return c == a && i + 1 < n && sql[i + 1] == b; };
    Tok k;
    std::size_t len = 1;
    if (two('<', '=')) {
      k = Tok::le, len = 2;
    } else if (two('>', '=')) {
      k = Tok::ge, len = 2;
    } else if (two('<', '>') || two('!', '=')) {
      k = Tok::ne, len = 2;
    } else if (two('|', '|')) {
      k = Tok::concat, len = 2;
    } else if (two('=', '=')) {
      k = Tok::eq, len = 2;
    } else {
      switch (c) {
        case '(':
          k = Tok::lparen;
          break;
        case ')':
          k = Tok::rparen;
          break;
        case ',':
          k = Tok::comma;
          break;
        case '.':
          k = Tok::dot;
          break;
        case ';':
          k = Tok::semicolon;
          break;
        case '+':
          k = Tok::plus;
          break;
        case '-':
          k = Tok::minus;
          break;
        case '*':
          k = Tok::star;
          break;
        case '/':
          k = Tok::slash;
          break;
        case '%':
          k = Tok::percent;
          break;
        case '=':
          k = Tok::eq;
          break;
        case '<':
          k = Tok::lt;
          break;
        case '>':
          k = Tok::gt;
          break;
        default: {
          std::string msg = "unexpected character '";
          msg.push_back(c);
          msg += "'";
          return fail(i, std::move(msg));
        }
      }
    }
    push(k, start, len);
    i += len;
  }
  push(Tok::end, n, 0);
  return true;
}

}  // namespace sluice::sql

#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/result.h"
#include "sql/engine.h"

namespace sluice::sql {

enum class Tok : std::uint8_t {
  end,
  ident,         // a name or keyword as written; `text` is the name
  quoted_ident,  // "name" or `name`: never a keyword
  string,        // 'text' with '' unescaped into `text`
  integer,
  number,  // with a fraction or exponent
  lparen,
  rparen,
  comma,
  dot,
  semicolon,
  plus,
  minus,
  star,
  slash,
  percent,
  eq,
  ne,
  lt,
  le,
  gt,
  ge,
  concat,  // ||
};

struct Token {
  Tok kind = Tok::end;
  std::string text;
  std::size_t offset = 0;
  std::size_t length = 0;
  /// For ident: is it the keyword `kw` (case-insensitive)?
  bool is(std::string_view kw) const noexcept;
};

/// Splits SQL text into tokens; `--` and `/* */` comments are skipped. A bad character or an
/// unterminated string fills `error` and returns false.
bool tokenize(std::string_view sql, std::vector<Token>& out, CompileError& error);

/// Fills line and column of `error` from its offset into `sql`.
void locate(std::string_view sql, CompileError& error);

bool iequals(std::string_view a, std::string_view b) noexcept;

}  // namespace sluice::sql

#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/result.h"

namespace sluice::parse {

/// A compiled PCRE2 pattern (JIT when available) with its own match data, bounded by a match
/// limit so that a pattern prone to catastrophic backtracking fails a line instead of stalling the
/// loop. Not thread-safe: one per user (the match data is reused).
class Regex {
 public:
  static constexpr std::uint32_t kDefaultMatchLimit = 100'000;

  /// Compiles `pattern`; the error names the offset of the problem in the pattern.
  static Result<Regex> compile(std::string_view pattern,
                               std::uint32_t match_limit = kDefaultMatchLimit);

  enum class Outcome : std::uint8_t { match, no_match, limit, error };
  /// Matches `subject` (unanchored unless the pattern anchors itself).
  Outcome match(std::string_view subject) noexcept;
  /// After a match: capture group `i` (0 = whole match); empty if it did not participate.
  std::string_view group(std::uint32_t i) const noexcept;
  bool group_set(std::uint32_t i) const noexcept;
  std::uint32_t group_count() const noexcept { return groups_; }
  /// Named groups, as (name, number), in pattern order.
  const std::vector<std::pair<std::string, std::uint32_t>>& names() const noexcept {
    return names_;
  }
  const std::string& pattern() const noexcept { return pattern_; }
  /// Compiled by PCRE2's JIT (false where it is unavailable: the interpreter runs it).
  bool jit() const noexcept { return jit_; }

 private:
  struct Free {
    void operator()(pcre2_code* p) const noexcept { pcre2_code_free(p); }
    void operator()(pcre2_match_data* p) const noexcept { pcre2_match_data_free(p); }
    void operator()(pcre2_match_context* p) const noexcept { pcre2_match_context_free(p); }
    void operator()(pcre2_jit_stack* p) const noexcept { pcre2_jit_stack_free(p); }
  };
  std::unique_ptr<pcre2_code, Free> code_;
  std::unique_ptr<pcre2_match_data, Free> data_;
  std::unique_ptr<pcre2_match_context, Free> mctx_;
  std::unique_ptr<pcre2_jit_stack, Free> jit_stack_;
  std::string pattern_;
  std::string_view subject_;
  std::vector<std::pair<std::string, std::uint32_t>> names_;
  std::uint32_t groups_ = 0;
  bool jit_ = false;
};

}  // namespace sluice::parse

#include "lib/parse/regex.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>

namespace sluice::parse {

Result<Regex> Regex::compile(std::string_view pattern, std::uint32_t match_limit) {
  Regex r;
  r.pattern_ = std::string(pattern);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  r.code_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0, &err,
                              &err_off, nullptr));
  if (!r.code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return Status(Errc::config, "regex /" + r.pattern_ + "/ does not compile at offset " +
                                    std::to_string(err_off) + ": " +
                                    reinterpret_cast<const char*>(msg));
  }
  const int jit_rc = pcre2_jit_compile(r.code_.get(), PCRE2_JIT_COMPLETE);
  r.jit_ = jit_rc == 0;
  if (!r.jit_ && jit_rc != PCRE2_ERROR_JIT_BADOPTION) {
    // Once per process: e.g. systemd's MemoryDenyWriteExecute=yes refuses the JIT's memory.
    static std::once_flag warned;
    std::call_once(warned, [jit_rc] {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(jit_rc, msg, sizeof msg);
      spdlog::warn(
          "regex: PCRE2's JIT is not available ({}; writable executable memory refused, e.g. by "
          "MemoryDenyWriteExecute=yes); patterns run in the interpreter, several times slower",
          reinterpret_cast<const char*>(msg));
    });
  }
  r.data_.reset(pcre2_match_data_create_from_pattern(r.code_.get(), nullptr));
  r.mctx_.reset(pcre2_match_context_create(nullptr));
  pcre2_set_match_limit(r.mctx_.get(), match_limit);
  pcre2_set_depth_limit(r.mctx_.get(), match_limit);
  if (r.jit_) {
    r.jit_stack_.reset(pcre2_jit_stack_create(32 * 1024, 512 * 1024, nullptr));
    pcre2_jit_stack_assign(r.mctx_.get(), nullptr, r.jit_stack_.get());
  }
  pcre2_pattern_info(r.code_.get(), PCRE2_INFO_CAPTURECOUNT, &r.groups_);
  std::uint32_t count = 0, entry_size = 0;
  PCRE2_SPTR table = nullptr;
  pcre2_pattern_info(r.code_.get(), PCRE2_INFO_NAMECOUNT, &count);
  pcre2_pattern_info(r.code_.get(), PCRE2_INFO_NAMEENTRYSIZE, &entry_size);
  pcre2_pattern_info(r.code_.get(), PCRE2_INFO_NAMETABLE, &table);
  for (std::uint32_t i = 0; i < count; ++i) {
    const PCRE2_SPTR e = table + static_cast<std::size_t>(i) * entry_size;
    const std::uint32_t n = (static_cast<std::uint32_t>(e[0]) << 8) | e[1];
    r.names_.emplace_back(reinterpret_cast<const char*>(e + 2), n);
  }
  // The name table is sorted by name; keep the pattern's order.
  std::sort(r.names_.begin(), r.names_.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  return r;
}

Regex::Outcome Regex::match(std::string_view subject) noexcept {
  subject_ = subject;
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const int rc =
      jit_ ? pcre2_jit_match(code_.get(), s, subject.size(), 0, 0, data_.get(), mctx_.get())
           : pcre2_match(code_.get(), s, subject.size(), 0, 0, data_.get(), mctx_.get());
  if (rc >= 0) return Outcome::match;
  if (rc == PCRE2_ERROR_NOMATCH) return Outcome::no_match;
  if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
      rc == PCRE2_ERROR_JIT_STACKLIMIT)
    return Outcome::limit;
  return Outcome::error;
}

bool Regex::group_set(std::uint32_t i) const noexcept {
  if (i > groups_) return false;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_.get());
  return ov[2 * i] != PCRE2_UNSET;
}

std::string_view Regex::group(std::uint32_t i) const noexcept {
  if (!group_set(i)) return {};
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_.get());
  return subject_.substr(ov[2 * i], ov[2 * i + 1] - ov[2 * i]);
}

}  // namespace sluice::parse

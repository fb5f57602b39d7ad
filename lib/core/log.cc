#include "lib/core/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <string>
#include <vector>

namespace sluice {
namespace {

// Whether stderr is connected to journald (systemd sets JOURNAL_STREAM to "DEV:INODE").
bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  struct stat st {};
  if (fstat(2, &st) != 0) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  return dev == st.st_dev && ino == st.st_ino;
}

class SyslogPriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    // sd-daemon(3) priorities: err 3, warning 4, info 6, debug 7.
    char p = '6';
    switch (msg.level) {
      case spdlog::level::critical:
        p = '2';
        break;
      case spdlog::level::err:
        p = '3';
        break;
      case spdlog::level::warn:
        p = '4';
        break;
      case spdlog::level::info:
        p = '6';
        break;
      default:
        p = '7';
        break;
    }
    dest.push_back('<');
    dest.push_back(p);
    dest.push_back('>');
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriorityFlag>();
  }
};

// Length of the valid UTF-8 sequence at s[i] (2 to 4), or 0 if the bytes there are not one;
// `cp` is its code point. Overlong forms and surrogates are invalid.
std::size_t utf8_sequence(std::string_view s, std::size_t i, std::uint32_t& cp) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c >= 0xC2 && c <= 0xDF && cont(1)) {
    cp = (c & 0x1Fu) << 6 | (b(1) & 0x3Fu);
    return 2;
  }
  if (c >= 0xE0 && c <= 0xEF && cont(1) && cont(2)) {
    cp = (c & 0x0Fu) << 12 | (b(1) & 0x3Fu) << 6 | (b(2) & 0x3Fu);
    if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    cp = (c & 0x07u) << 18 | (b(1) & 0x3Fu) << 12 | (b(2) & 0x3Fu) << 6 | (b(3) & 0x3Fu);
    if (cp < 0x10000 || cp > 0x10FFFF) return 0;
    return 4;
  }
  return 0;
}

// Code points that terminals or editors act on rather than show: C1 controls (0x9B is CSI),
// line and paragraph separators, and the bidirectional overrides and isolates.
bool invisible_control(std::uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E ||
         cp == 0x200F || cp == 0x061C;
}

void append_hex_byte(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 0xF];
}

// The one escaper: `excerpt` also escapes backslashes (so that an escape in the output is never the
// input's own text) and cuts at `max_bytes`; the logger's final pass does neither. Returns whether
// anything was changed.
bool escape(std::string& out, std::string_view s, bool excerpt, std::size_t max_bytes) {
  bool changed = false;
  std::size_t i = 0;
  while (i < s.size()) {
    if (excerpt && i >= max_bytes) {
      fmt::format_to(std::back_inserter(out), "...({} bytes)", s.size());
      return true;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F) {
      if (c == '\\' && excerpt) out += '\\';
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    changed = true;
    if (c < 0x80) {
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else {
        append_hex_byte(out, c);
      }
      ++i;
      continue;
    }
    std::uint32_t cp = 0;
    const std::size_t len = utf8_sequence(s, i, cp);
    if (len == 0) {
      append_hex_byte(out, c);
      ++i;
      continue;
    }
    if (excerpt && i + len > max_bytes) {  // cut before a character, not inside it
      fmt::format_to(std::back_inserter(out), "...({} bytes)", s.size());
      return true;
    }
    if (invisible_control(cp)) {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", cp);
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  return changed;
}

// Valid UTF-8 without control bytes needs no copy: the common case for every log line.
bool clean(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F) {
      ++i;
      continue;
    }
    if (c < 0x80) return false;
    std::uint32_t cp = 0;
    const std::size_t len = utf8_sequence(s, i, cp);
    if (len == 0 || invisible_control(cp)) return false;
    i += len;
  }
  return true;
}

class SanitizingFormatter final : public spdlog::formatter {
 public:
  explicit SanitizingFormatter(std::unique_ptr<spdlog::formatter> inner)
      : inner_(std::move(inner)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    if (clean(text)) return inner_->format(msg, dest);
    std::string escaped;
    sanitize_log_message(text, escaped);
    spdlog::details::log_msg copy = msg;
    copy.payload = spdlog::string_view_t(escaped.data(), escaped.size());
    inner_->format(copy, dest);
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<SanitizingFormatter>(inner_->clone());
  }

 private:
  std::unique_ptr<spdlog::formatter> inner_;
};

// Every live RateLimiter, for log_summaries(). Never destroyed: a limiter with static storage
// may unregister after this translation unit's statics are gone.
std::mutex& registry_mutex() {
  static auto* mu = new std::mutex;
  return *mu;
}
std::vector<RateLimiter*>& registry() {
  static auto* r = new std::vector<RateLimiter*>;
  return *r;
}

std::string window_text(Duration d) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return ms % 1000 == 0 ? fmt::format("{}s", ms / 1000) : fmt::format("{}ms", ms);
}

}  // namespace

void append_log_excerpt(std::string& out, std::string_view text, std::size_t max_bytes) {
  escape(out, text, true, max_bytes);
}

std::string escape_for_log(std::string_view text, std::size_t max_bytes) {
  std::string out;
  append_log_excerpt(out, text, max_bytes);
  return out;
}

bool sanitize_log_message(std::string_view message, std::string& out) {
  if (clean(message)) return false;
  escape(out, message, false, 0);
  return true;
}

std::unique_ptr<spdlog::formatter> make_sanitizing_formatter(
    std::unique_ptr<spdlog::formatter> inner) {
  return std::make_unique<SanitizingFormatter>(std::move(inner));
}

RateLimiter::RateLimiter(std::uint32_t burst, Duration window, const Clock* clock)
    : burst_(burst), window_(window), clock_(clock) {
  std::lock_guard lock(registry_mutex());
  registry().push_back(this);
}

RateLimiter::~RateLimiter() {
  std::lock_guard lock(registry_mutex());
  auto& r = registry();
  r.erase(std::remove(r.begin(), r.end(), this), r.end());
}

TimePoint RateLimiter::now() const noexcept {
  return clock_ != nullptr ? clock_->now() : std::chrono::steady_clock::now();
}

bool RateLimiter::allow(std::uint64_t& suppressed) noexcept {
  std::lock_guard lock(mu_);
  const TimePoint t = now();
  if (!started_ || t - start_ >= window_) {
    started_ = true;
    start_ = t;
    used_ = 0;
  }
  if (used_ >= burst_) {
    ++suppressed_;
    return false;
  }
  ++used_;
  suppressed = suppressed_;
  suppressed_ = 0;
  sampled_ = false;
  sample_.clear();
  return true;
}

bool RateLimiter::wants_sample() noexcept {
  std::lock_guard lock(mu_);
  return suppressed_ > 0 && !sampled_;
}

void RateLimiter::set_sample(std::string text) {
  std::lock_guard lock(mu_);
  sample_ = std::move(text);
  sampled_ = true;
}

std::optional<std::string> RateLimiter::take_summary(bool force) {
  std::lock_guard lock(mu_);
  if (suppressed_ == 0) return std::nullopt;
  if (!force && now() - start_ < window_) return std::nullopt;
  std::string s = fmt::format("{} similar message{} suppressed within {}", suppressed_,
                              suppressed_ == 1 ? "" : "s", window_text(window_));
  if (sampled_) s += fmt::format("; the first: {}", sample_);
  suppressed_ = 0;
  sampled_ = false;
  sample_.clear();
  return s;
}

void RateLimiter::log_summaries(bool force) {
  std::vector<std::string> lines;
  {
    std::lock_guard lock(registry_mutex());
    for (RateLimiter* l : registry()) {
      if (auto s = l->take_summary(force)) lines.push_back(std::move(*s));
    }
  }
  for (const auto& line : lines) spdlog::warn("{}", line);
}

void init_logging(spdlog::level::level_enum level) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("sluice", sink);
  std::unique_ptr<spdlog::pattern_formatter> formatter;
  if (stderr_is_journal()) {
    formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<SyslogPriorityFlag>('*').set_pattern("%*%v");
  } else {
    formatter = std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %l %v",
                                                            spdlog::pattern_time_type::utc);
  }
  logger->set_formatter(make_sanitizing_formatter(std::move(formatter)));
  logger->set_level(level);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

bool parse_log_level(std::string_view text, spdlog::level::level_enum& out) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},   {"critical", spdlog::level::critical},
      {"off", spdlog::level::off}};
  for (const auto& [name, level] : kLevels) {
    if (name == text) {
      out = level;
      return true;
    }
  }
  return false;
}

}  // namespace sluice

#include "lib/core/log.h"

#include <spdlog/pattern_formatter.h>

#include <catch2/catch.hpp>
#include <string>

#include "tests/support/test_support.h"

using namespace std::chrono_literals;
using sluice::escape_for_log;

TEST_CASE("log excerpt: control bytes and invalid UTF-8 become visible escapes",
          "[unit][core][log]") {
  using namespace std::string_literals;
  CHECK(escape_for_log("plain text, é and ü stay") == "plain text, é and ü stay");
  CHECK(escape_for_log("a\nb\r\tc") == R"(a\nb\r\tc)");
  CHECK(escape_for_log("x\n2026-12-01T08:00:00.000Z error forged") ==
        R"(x\n2026-12-01T08:00:00.000Z error forged)");
  CHECK(escape_for_log("\x1b[2J\x1b]0;owned\x07") == R"(\x1b[2J\x1b]0;owned\x07)");
  CHECK(escape_for_log("nul\0byte"s) == R"(nul\x00byte)");
  CHECK(escape_for_log("del\x7f") == R"(del\x7f)");
  // A backslash is doubled, so that the input's own text can never look like an escape.
  CHECK(escape_for_log(R"(a\x1b)") == R"(a\\x1b)");
  // Invalid UTF-8: a lone continuation byte, a truncated sequence, an overlong '/', a surrogate.
  CHECK(escape_for_log("\x80|\xc3|\xc0\xaf|\xed\xa0\x80|\xff") ==
        R"(\x80|\xc3|\xc0\xaf|\xed\xa0\x80|\xff)");
  // C1 CSI (U+009B), a line separator and a right-to-left override: code points terminals obey.
  CHECK(escape_for_log("\xc2\x9b"
                       "31m|\xe2\x80\xa8|\xe2\x80\xae") == R"(\u009b31m|\u2028|\u202e)");
}

TEST_CASE("log excerpt: cut at max_bytes on a character boundary, with the full size",
          "[unit][core][log]") {
  CHECK(escape_for_log(std::string(200, 'x'), 10) == "xxxxxxxxxx...(200 bytes)");
  CHECK(escape_for_log("short", 10) == "short");
  CHECK(escape_for_log("exactly10!", 10) == "exactly10!");
  // "é" is two bytes; it does not fit after 9 bytes and is not split.
  CHECK(escape_for_log("123456789é", 10) == "123456789...(11 bytes)");
  // The limit counts input bytes: escapes do not shorten what is shown.
  CHECK(escape_for_log("\n\n\n\n", 2) == R"(\n\n...(4 bytes))");
  CHECK(fmt::format("got {}", sluice::log_excerpt("a\x1b", 120)) == R"(got a\x1b)");
}

TEST_CASE("log sanitizer: whole messages lose raw control bytes, clean ones are untouched",
          "[unit][core][log]") {
  std::string out;
  CHECK_FALSE(sluice::sanitize_log_message("nothing to do here, \\x41 é", out));
  CHECK(out.empty());
  REQUIRE(sluice::sanitize_log_message("line\n[error] forged \x1b[31m\xff", out));
  CHECK(out == R"(line\n[error] forged \x1b[31m\xff)");

  // Through the formatter the logger uses: one line, no raw ESC, the payload escaped.
  auto f = sluice::make_sanitizing_formatter(std::make_unique<spdlog::pattern_formatter>("%l %v"));
  const std::string payload = "bad: x\n2026 error forged\x1b[2J";
  spdlog::details::log_msg msg("sluice", spdlog::level::warn, payload);
  spdlog::memory_buf_t buf;
  f->format(msg, buf);
  const std::string line(buf.data(), buf.size());
  CHECK(line.rfind(R"(warning bad: x\n2026 error forged\x1b[2J)", 0) == 0);
  CHECK(line.find('\x1b') == std::string::npos);
  CHECK(std::count(line.begin(), line.end(), '\n') == 1);  // only the line's own end
  auto copy = f->clone();
  spdlog::memory_buf_t buf2;
  copy->format(msg, buf2);
  CHECK(std::string(buf2.data(), buf2.size()) == line);
}

TEST_CASE("rate limiter: the first N per window, then one summary with the suppressed count",
          "[unit][core][log]") {
  sluice::test::ManualClock clock;
  sluice::RateLimiter limiter(3, 10s, &clock);
  std::uint64_t suppressed = 99;
  for (int i = 0; i < 3; ++i) {
    CHECK(limiter.allow(suppressed));
    CHECK(suppressed == 0);
  }
  CHECK_FALSE(limiter.take_summary());  // nothing held back yet
  CHECK_FALSE(limiter.allow(suppressed));
  CHECK(limiter.wants_sample());  // the first one held back is quoted in the summary
  limiter.set_sample("lmdb channel c: full; dropped 7 of the oldest events");
  for (int i = 0; i < 207; ++i) {
    CHECK_FALSE(limiter.allow(suppressed));
    CHECK_FALSE(limiter.wants_sample());  // formatted once per window, not per message
  }
  clock.advance(9s);
  CHECK_FALSE(limiter.take_summary());  // the window has not ended: no summary yet
  clock.advance(1s);
  const auto summary = limiter.take_summary();
  REQUIRE(summary);
  CHECK(*summary ==
        "208 similar messages suppressed within 10s; the first: lmdb channel c: full; dropped 7 of "
        "the oldest events");
  CHECK_FALSE(limiter.take_summary());  // reported once

  // A new window lets the burst through again; what was held back goes out with the next message
  // if it comes before a summary does.
  CHECK(limiter.allow(suppressed));
  CHECK(suppressed == 0);
  CHECK(limiter.allow(suppressed));
  CHECK(limiter.allow(suppressed));
  CHECK_FALSE(limiter.allow(suppressed));
  CHECK_FALSE(limiter.allow(suppressed));
  clock.advance(10s);
  CHECK(limiter.allow(suppressed));
  CHECK(suppressed == 2);
  CHECK_FALSE(limiter.take_summary(true));  // already reported with that message

  // force (at exit) reports what is held back at once; one held back message reads singular.
  CHECK(limiter.allow(suppressed));
  CHECK(limiter.allow(suppressed));
  CHECK_FALSE(limiter.allow(suppressed));
  CHECK(limiter.take_summary(true) ==
        std::optional<std::string>("1 similar message suppressed within 10s"));
}

TEST_CASE("rate limiter: SLUICE_WARN_LIMITED formats only what it logs and one sample",
          "[unit][core][log]") {
  spdlog::set_level(spdlog::level::off);  // the burst itself need not reach the test output
  sluice::test::ManualClock clock;
  sluice::RateLimiter limiter(1, std::chrono::milliseconds(250), &clock);
  for (int i = 0; i < 50; ++i) SLUICE_WARN_LIMITED(limiter, "warning {}", i);
  clock.advance(250ms);
  const auto summary = limiter.take_summary();
  REQUIRE(summary);
  CHECK(*summary == "49 similar messages suppressed within 250ms; the first: warning 1");
  spdlog::set_level(spdlog::level::info);
}

#include "lib/parse/time_format.h"

#include <catch2/catch.hpp>

using namespace sluice;
using namespace sluice::parse;

namespace {

constexpr std::int64_t kS = 1'000'000'000;

std::optional<std::int64_t> at(std::string_view format, std::string_view text,
                               std::string_view zone = "UTC", std::int64_t now = 0) {
  auto z = TimeZone::load(zone);
  REQUIRE(z);
  auto f = TimeFormat::make(format, *z);
  REQUIRE(f);
  return f->parse(text, now);
}

// 2025-06-24T12:30:09Z
constexpr std::int64_t kGame = 1750768209;

}  // namespace

TEST_CASE("time: ISO 8601 / RFC 3339 with fractions and offsets", "[parse][time]") {
  CHECK(at("iso8601", "2025-06-24T12:30:09Z") == kGame * kS);
  CHECK(at("rfc3339", "2025-06-24T12:30:09.903Z") == kGame * kS + 903'000'000);
  CHECK(at("iso8601", "2025-06-24T20:30:09.000000001+08:00") == kGame * kS + 1);
  CHECK(at("iso8601", "2025-06-24 20:30:09+0800") == kGame * kS);
  CHECK(at("iso8601", "2025-06-24T07:30:09-05") == kGame * kS);
  CHECK(at("iso8601", "2025-06-24T12:30:09,5Z") == kGame * kS + 500'000'000);
  CHECK(at("iso8601", "2025-06-24") == (kGame - 45009) * kS);
  CHECK(at("iso8601", "2025-06-24 20:30:09", "Asia/Shanghai") == kGame * kS);
  CHECK(at("iso8601", "2025-06-24 20:30:09", "+08:00") == kGame * kS);
  CHECK_FALSE(at("iso8601", "2025-13-24T12:30:09Z"));
  CHECK_FALSE(at("iso8601", "2025-06-24T12:30:09Q"));
  CHECK_FALSE(at("iso8601", "yesterday"));
  CHECK_FALSE(at("iso8601", ""));
}

TEST_CASE("time: epoch seconds, ms, us, ns", "[parse][time]") {
  CHECK(at("epoch", "1750768209") == kGame * kS);
  CHECK(at("epoch", "1750768209.903") == kGame * kS + 903'000'000);
  CHECK(at("epoch_ms", "1750768209903") == kGame * kS + 903'000'000);
  CHECK(at("epoch_us", "1750768209903001") == kGame * kS + 903'001'000);
  CHECK(at("epoch_ns", "1750768209903001002") == kGame * kS + 903'001'002);
  CHECK(at("epoch", "-1") == -kS);
  CHECK_FALSE(at("epoch", "12abc"));
  CHECK_FALSE(at("epoch_ms", "99999999999999999999999"));
  // Found by fuzz_parse: numbers and years beyond int64 nanoseconds are not times, not overflows.
  CHECK_FALSE(at("epoch", "9999999999999999999"));
  CHECK_FALSE(at("%s", "9999999999999999999"));
  CHECK_FALSE(at("iso8601", "4050-06-24T12:30:00Z"));
}

TEST_CASE("time: strftime-like patterns", "[parse][time]") {
  // The game events of ../shared/scenarios: local wall-clock text with milliseconds.
  CHECK(at("%Y-%m-%d %H:%M:%S.%f", "2025-06-24 20:30:09.903", "Asia/Shanghai") ==
        kGame * kS + 903'000'000);
  CHECK(at("%Y-%m-%d %H:%M:%S.%f", "2025-06-24 12:30:09.000903") == kGame * kS + 903'000);
  // Apache / nginx access logs.
  CHECK(at("%d/%b/%Y:%H:%M:%S %z", "24/Jun/2025:14:30:09 +0200") == kGame * kS);
  CHECK(at("%a, %d %B %Y %T %Z", "Tue, 24 June 2025 12:30:09 GMT") == kGame * kS);
  CHECK(at("%F %I:%M:%S %p", "2025-06-24 12:30:09 PM") == kGame * kS);
  CHECK(at("%F %I:%M:%S %p", "2025-06-24 12:30:09 am") == (kGame - 12 * 3600) * kS);
  CHECK(at("%Y %j %T", "2025 175 12:30:09") == kGame * kS);
  CHECK(at("%s", "1750768209") == kGame * kS);
  CHECK(at("%D %T", "06/24/25 12:30:09") == kGame * kS);
  CHECK(at("%Y%%%m", "2025%06") == (kGame - 23 * 86400 - 45009) * kS);
  CHECK_FALSE(at("%Y-%m-%d", "2025-06-24 trailing"));
  CHECK_FALSE(at("%d/%b/%Y", "24/Foo/2025"));
}

TEST_CASE("time: syslog times without a year take the current one", "[parse][time]") {
  const std::int64_t now = kGame * kS;  // June 2025
  CHECK(at("%b %e %H:%M:%S", "Jun 24 12:30:09", "UTC", now) == kGame * kS);
  CHECK(at("%b %e %H:%M:%S", "Jun  4 12:30:09", "UTC", now) == (kGame - 20 * 86400) * kS);
  // December seen in June is last December, not next.
  const auto dec = at("%b %e %H:%M:%S", "Dec 31 23:59:59", "UTC", now);
  REQUIRE(dec);
  CHECK(*dec < now);
  CHECK(*dec > now - 200 * 86400 * kS);
}

TEST_CASE("time: zones from the tz database, DST gaps and overlaps", "[parse][time]") {
  // New York, 2025-03-09 02:30 does not exist (spring forward): the offset before applies.
  CHECK(at("iso8601", "2025-03-09 01:59:59", "America/New_York") == std::int64_t{1741503599} * kS);
  CHECK(at("iso8601", "2025-03-09 03:00:00", "America/New_York") == std::int64_t{1741503600} * kS);
  CHECK(at("iso8601", "2025-03-09 02:30:00", "America/New_York") == std::int64_t{1741505400} * kS);
  // 2025-11-02 01:30 happens twice (fall back): the earlier instant wins (EDT).
  CHECK(at("iso8601", "2025-11-02 01:30:00", "America/New_York") == std::int64_t{1762061400} * kS);
  CHECK(at("iso8601", "2025-07-01 00:00:00", "America/New_York") == std::int64_t{1751342400} * kS);
}

TEST_CASE("time: bad formats and zones are refused with a clear message", "[parse][time]") {
  auto z = TimeZone::load("Mars/Olympus");
  REQUIRE_FALSE(z);
  CHECK_THAT(z.error().message(), Catch::Contains("unknown time zone"));
  CHECK_FALSE(TimeZone::load("../../etc/passwd"));
  auto f = TimeFormat::make("%Y-%q", TimeZone());
  REQUIRE_FALSE(f);
  CHECK_THAT(f.error().message(), Catch::Contains("unsupported directive %q"));
  CHECK_FALSE(TimeFormat::make("yyyy-mm-dd", TimeZone()));
  CHECK_FALSE(TimeFormat::make("%Y%", TimeZone()));
}

TEST_CASE("time: only year-less patterns read the clock", "[parse][time]") {
  auto needs = [](std::string_view format) {
    auto f = TimeFormat::make(format, TimeZone());
    REQUIRE(f);
    return f->needs_now();
  };
  CHECK(needs("%b %e %H:%M:%S"));
  CHECK(needs("%%Y %m-%d %H"));  // a literal "%Y"
  CHECK_FALSE(needs("%Y-%m-%d %H:%M:%S.%f"));
  CHECK_FALSE(needs("%d/%b/%y:%H:%M:%S"));
  CHECK_FALSE(needs("%F %T"));
  CHECK_FALSE(needs("%D %T"));
  CHECK_FALSE(needs("%s.%f"));
  CHECK_FALSE(needs("%j %H"));
  for (std::string_view f : {"iso8601", "rfc3339", "epoch", "epoch_ms", "epoch_us", "epoch_ns"}) {
    CHECK_FALSE(needs(f));
  }
  // A pattern with a year parses the same whatever now_ns says.
  auto f = TimeFormat::make("%Y-%m-%d %H:%M:%S", TimeZone());
  REQUIRE(f);
  CHECK(f->parse("2025-06-24 20:30:00", 0) == f->parse("2025-06-24 20:30:00", INT64_MAX / 2));
}

// The per-second cache gives what a full parse gives, text by text: same second, next second,
// fractions of every length, texts that do not match, a separator elsewhere, spaces around it.
TEST_CASE("time: the second cache gives the full parse's results", "[parse][time]") {
  struct Case {
    std::string_view format, zone;
  };
  const Case cases[] = {{"%Y-%m-%d %H:%M:%S.%f", "UTC"},
                        {"%Y-%m-%d %H:%M:%S,%f", "UTC"},
                        {"%d/%b/%Y:%H:%M:%S.%f %z", "UTC"},  // not cacheable: %f is not last
                        {"%Y-%m-%dT%H:%M:%S.%f", "Europe/Berlin"},
                        {"%H.%M.%S.%f", "UTC"},
                        {"%s.%f", "UTC"},
                        {"%b %e %H:%M:%S.%f", "UTC"}};  // no year: reads the clock, no cache
  const std::string_view texts[] = {"2025-06-24 20:30:09.903",
                                    "2025-06-24 20:30:09.904",
                                    "2025-06-24 20:30:09.9",
                                    "2025-06-24 20:30:09.123456789123",
                                    "2025-06-24 20:30:09.",
                                    "2025-06-24 20:30:09.9x",
                                    "2025-06-24 20:30:10.001",
                                    "2025-06-24 20:30:09.5",
                                    "2025-06-24 20:30:9.5",
                                    " 2025-06-24 20:30:09.5 ",
                                    "2025-06-24  20:30:09.5",
                                    "2025-06-24 20:30:09,5",
                                    "2025-06-24 20:30:09,6",
                                    "2025-13-24 20:30:09.5",
                                    "2025-13-24 20:30:09.6",
                                    "2025-06-24T20:30:09.5",
                                    "2025-03-30T02:30:00.1",
                                    "2025-03-30T02:30:00.2",
                                    "2025-10-26T02:30:00.1",
                                    "20.30.09.5",
                                    "20.30.09.6",
                                    "20.30.09",
                                    "1750768200.25",
                                    "1750768200.5",
                                    "99999999999999999.5",
                                    "Jun 24 20:30:09.5",
                                    "Jun 24 20:30:09.6",
                                    "24/Jun/2025:20:30:09.5 +0200",
                                    "",
                                    ".",
                                    "5",
                                    "2025-06-24 20:30:09.-5"};
  for (const auto& c : cases) {
    auto z = TimeZone::load(c.zone);
    REQUIRE(z);
    auto f = TimeFormat::make(c.format, *z);
    REQUIRE(f);
    TimeFormat::SecondCache cache;
    const std::int64_t now = 1750768209 * kS;
    for (int round = 0; round < 2; ++round) {
      for (const auto text : texts) {
        INFO(c.format << " | " << text);
        CHECK(f->parse(text, now, cache) == f->parse(text, now));
      }
    }
  }
  // A hit reads only the fraction.
  auto f = TimeFormat::make("%Y-%m-%d %H:%M:%S.%f", TimeZone{});
  REQUIRE(f);
  TimeFormat::SecondCache cache;
  const std::int64_t second = 1750797009 * kS;  // 2025-06-24 20:30:09 UTC
  CHECK(f->parse("2025-06-24 20:30:09.903", 0, cache) == second + 903'000'000);
  CHECK(f->parse("2025-06-24 20:30:09.000000001", 0, cache) == second + 1);
  CHECK(f->parse("2025-06-24 20:30:09.99", 0, cache) == second + 990'000'000);
  CHECK(f->parse("2025-06-24 20:30:10.5", 0, cache) == second + kS + 500'000'000);
  CHECK(f->parse("2025-06-24 20:30:10.x", 0, cache) == std::nullopt);
  CHECK(f->parse("2025-06-24 20:30:10.25", 0, cache) == second + kS + 250'000'000);
  // A cache filled by another format is not used by this one.
  auto g = TimeFormat::make("%Y-%d-%m %H:%M:%S.%f", TimeZone{});
  REQUIRE(g);
  CHECK(g->parse("2025-06-24 20:30:10.25", 0, cache) == std::nullopt);
  CHECK(g->parse("2025-01-06 20:30:10.25", 0, cache) == f->parse("2025-06-01 20:30:10.25", 0));
}

// libFuzzer target: one record through each format (json with and without field selection and
// unwrap, the combined and syslog patterns, logfmt) and the time formats.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "lib/parse/formats.h"
#include "lib/parse/time_format.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::parse;
  static JsonFormat all{JsonOptions{}};
  static JsonFormat some{JsonOptions{{"a", "b.c", "d"}, "log", 16}};
  static auto combined = std::move(*RegexFormat::make("combined", 10000));
  static auto syslog = std::move(*RegexFormat::make("syslog", 10000));
  static LogfmtFormat logfmt;
  static const TimeFormat formats[] = {*TimeFormat::make("iso8601", TimeZone()),
                                       *TimeFormat::make("epoch", TimeZone()),
                                       *TimeFormat::make("%Y-%m-%d %H:%M:%S.%f", TimeZone()),
                                       *TimeFormat::make("%d/%b/%Y:%H:%M:%S %z", TimeZone()),
                                       *TimeFormat::make("%b %e %H:%M:%S", TimeZone())};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Draft d;
  Format* all_formats[] = {&all, &some, combined.get(), syslog.get(), &logfmt};
  for (Format* f : all_formats) {
    d.reset(text, 0, 0);
    (void)f->parse(text, d);
  }
  for (const auto& f : formats) (void)f.parse(text, 1'700'000'000'000'000'000);
  return 0;
}

#include "lib/parse/multiline.h"

#include <catch2/catch.hpp>

#include "tests/unit/lib/parse/parse_helpers.h"

using namespace sluice;
using namespace sluice::parse;

namespace {

struct Out {
  std::string text;
  std::uint64_t start, end;
  std::string stream;
  std::int64_t time_ns;
};

// Feeds lines (offsets = line numbers) and collects every record, then flushes.
struct Harness {
  MultilineRules rules;
  LineAssembler assembler;
  std::vector<Out> out;
  std::uint64_t n = 0;

  explicit Harness(MultilineConfig cfg)
      : rules(std::move(*MultilineRules::make(cfg))), assembler(rules) {}
  void take(const std::vector<Record>& rs) {
    for (const auto& r : rs)
      out.push_back({std::string(r.text), r.start, r.end, std::string(r.stream), r.time_ns});
  }
  void line(std::string_view l, std::int64_t now = 0) {
    take(assembler.push(l, n, n + 1, now));
    ++n;
  }
  void lines(std::initializer_list<std::string_view> ls) {
    for (auto l : ls) line(l);
  }
  void flush() { take(assembler.flush()); }
};

MultilineConfig mode(std::string m) {
  MultilineConfig c;
  c.mode = m;
  c.continuation = std::string(ready_continuation(m));
  return c;
}

}  // namespace

TEST_CASE("multiline: Java stack traces join onto their log line", "[parse][multiline]") {
  Harness h(mode("java"));
  h.lines({"2025-06-24 12:00:00 INFO started", "2025-06-24 12:00:01 ERROR request failed",
           "java.lang.IllegalStateException: boom", "\tat com.example.Foo.bar(Foo.java:10)",
           "\tat com.example.Main.main(Main.java:5)", "Caused by: java.io.IOException: disk",
           "\t... 2 more", "2025-06-24 12:00:02 INFO next"});
  h.flush();
  REQUIRE(h.out.size() == 3);
  CHECK(h.out[0].text == "2025-06-24 12:00:00 INFO started");
  CHECK(h.out[1].text.rfind("2025-06-24 12:00:01 ERROR request failed\njava.lang.Illegal", 0) == 0);
  CHECK(h.out[1].text.find("\t... 2 more") != std::string::npos);
  CHECK(h.out[1].start == 1);
  CHECK(h.out[1].end == 7);
  CHECK(h.out[2].text == "2025-06-24 12:00:02 INFO next");
}

TEST_CASE("multiline: Python tracebacks", "[parse][multiline]") {
  Harness h(mode("python"));
  h.lines({"ERROR:root:failed",
           "Traceback (most recent call last):", "  File \"a.py\", line 3, in <module>", "    f()",
           "ValueError: bad value", "INFO:root:fine"});
  h.flush();
  REQUIRE(h.out.size() == 2);
  CHECK(h.out[0].text ==
        "ERROR:root:failed\nTraceback (most recent call last):\n  File \"a.py\", line 3, in "
        "<module>\n    f()\nValueError: bad value");
  CHECK(h.out[1].text == "INFO:root:fine");
}

TEST_CASE("multiline: Go panics", "[parse][multiline]") {
  Harness h(mode("go"));
  h.lines({"panic: runtime error: index out of range [3] with length 3", "",
           "goroutine 1 [running]:", "main.main()", "\t/app/main.go:8 +0x1d", "exit status 2",
           "2025/06/24 12:00:00 restarted"});
  h.flush();
  REQUIRE(h.out.size() == 2);
  CHECK(h.out[0].text.find("goroutine 1 [running]:\nmain.main()\n\t/app/main.go:8") !=
        std::string::npos);
  CHECK(h.out[1].text == "2025/06/24 12:00:00 restarted");
}

TEST_CASE("multiline: a custom start pattern, max_lines and max_bytes", "[parse][multiline]") {
  MultilineConfig c;
  c.start = "^\\[";
  c.max_lines = 3;
  Harness h(c);
  h.lines({"orphan", "[1] a", "b", "c", "d", "[2] e"});
  h.flush();
  REQUIRE(h.out.size() == 4);
  CHECK(h.out[0].text == "orphan");
  CHECK(h.out[1].text == "[1] a\nb\nc");
  CHECK(h.out[2].text == "d");
  CHECK(h.out[3].text == "[2] e");
  CHECK(h.rules.overflows() == 1);

  MultilineConfig b;
  b.start = "^\\[";
  b.max_bytes = ByteSize{64};
  Harness hb(b);
  hb.lines({"[1] " + std::string(40, 'x'), std::string(40, 'y'), "[2]"});
  hb.flush();
  REQUIRE(hb.out.size() == 3);
  CHECK(hb.out[1].text == std::string(40, 'y'));
}

TEST_CASE("multiline: a held record is flushed after the timeout", "[parse][multiline]") {
  MultilineConfig c = mode("java");
  c.timeout = std::chrono::milliseconds(100);
  Harness h(c);
  h.line("ERROR x", 0);
  h.line("\tat a.b(C.java:1)", 10'000'000);
  CHECK(h.out.empty());
  CHECK(h.assembler.holding());
  CHECK(h.assembler.held_from() == 0);
  h.take(h.assembler.flush_due(50'000'000));
  CHECK(h.out.empty());
  h.take(h.assembler.flush_due(110'000'000));
  REQUIRE(h.out.size() == 1);
  CHECK(h.out[0].text == "ERROR x\n\tat a.b(C.java:1)");
  CHECK_FALSE(h.assembler.holding());
  CHECK(h.assembler.held_from() == UINT64_MAX);
}

TEST_CASE("multiline: CRI partial lines are joined per stream", "[parse][multiline]") {
  MultilineConfig c;
  c.container = Container::cri;
  Harness h(c);
  h.lines({"2025-06-24T12:30:09.000000001Z stdout P hello ",
           "2025-06-24T12:30:09.1Z stderr F an error", "2025-06-24T12:30:09.2Z stdout P big ",
           "2025-06-24T12:30:09.3Z stdout F world", "2025-06-24T12:30:10Z stdout F ",
           "not a cri line"});
  REQUIRE(h.out.size() == 4);
  CHECK(h.out[0].text == "an error");
  CHECK(h.out[0].stream == "stderr");
  CHECK(h.out[1].text == "hello big world");
  CHECK(h.out[1].stream == "stdout");
  CHECK(h.out[1].time_ns == 1750768209000000001);
  CHECK(h.out[1].start == 0);
  CHECK(h.out[1].end == 4);
  CHECK(h.out[2].text.empty());
  CHECK(h.out[3].text == "not a cri line");
  CHECK(h.rules.container_errors() == 1);
}

TEST_CASE("multiline: Docker JSON lines are decoded, partials joined", "[parse][multiline]") {
  MultilineConfig c;
  c.container = Container::docker;
  Harness h(c);
  h.lines({R"({"log":"part one ","stream":"stdout","time":"2025-06-24T12:30:09Z"})",
           R"({"log":"and two\n","stream":"stdout","time":"2025-06-24T12:30:09.5Z"})",
           R"({"log":"err \"q\"\n","stream":"stderr","time":"2025-06-24T12:30:10Z"})",
           R"({"log":"x")"});
  REQUIRE(h.out.size() == 3);
  CHECK(h.out[0].text == "part one and two");
  CHECK(h.out[0].time_ns == 1750768209 * std::int64_t{1'000'000'000});
  CHECK(h.out[1].text == "err \"q\"");
  CHECK(h.out[1].stream == "stderr");
  CHECK(h.out[2].text == R"({"log":"x")");
  CHECK(h.rules.container_errors() == 1);
}

TEST_CASE("multiline: CRI decoding then Java joining", "[parse][multiline]") {
  MultilineConfig c = mode("java");
  c.container = Container::cri;
  Harness h(c);
  h.lines({"2025-06-24T12:30:09Z stdout F ERROR failed",
           "2025-06-24T12:30:09Z stdout F java.lang.RuntimeException: x",
           "2025-06-24T12:30:09Z stdout P \tat a.b", "2025-06-24T12:30:09Z stdout F (C.java:1)",
           "2025-06-24T12:30:09Z stdout F INFO ok"});
  CHECK(h.assembler.held_from() == 4);  // "INFO ok" waits for the next line
  h.flush();
  REQUIRE(h.out.size() == 2);
  CHECK(h.out[0].text == "ERROR failed\njava.lang.RuntimeException: x\n\tat a.b(C.java:1)");
  CHECK(h.out[1].text == "INFO ok");
}

TEST_CASE("multiline: configuration errors", "[parse][multiline]") {
  using sluice::parse::testing::pipeline_config;
  PipelineConfig cfg;
  CHECK_THAT(pipeline_config(R"(multiline = { mode = "java", start = "^x" })", cfg),
             Catch::Contains("does not take 'start'"));
  CHECK_THAT(pipeline_config(R"(multiline = { start = "^x", continuation = "^y" })", cfg),
             Catch::Contains("not both"));
  CHECK_THAT(pipeline_config(R"(multiline = { start = "([" })", cfg),
             Catch::Contains("does not compile"));
  CHECK_THAT(pipeline_config(R"(multiline = { mode = "cobol" })", cfg),
             Catch::Contains("sources.s.multiline.mode"));
  CHECK_THAT(pipeline_config(R"(multiline = { max_lines = 0, mode = "go" })", cfg),
             Catch::Contains("max_lines"));
  CHECK_THAT(pipeline_config(R"(multiline = { timeut = "1s", mode = "go" })", cfg),
             Catch::Contains("did you mean 'timeout'"));
  PipelineConfig fresh;
  CHECK(pipeline_config(R"(multiline = { mode = "cri" })", fresh).empty());
  CHECK(fresh.multiline.container == Container::cri);
}

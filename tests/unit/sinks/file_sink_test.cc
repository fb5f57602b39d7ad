// The file sink when the disk fills up part-way through a batch, and when a roll cannot open the
// new file: what it wrote before failing must not stay in the file (the batch is written again
// whole on retry), and a roll that failed after its rename must not fail every write after it.
#include "sinks/file/file_sink.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <optional>

#include "tests/support/test_support.h"

using namespace sluice;
using namespace sluice::sinks;
using namespace std::chrono_literals;

namespace {

struct Answer final : DeliveryListener {
  std::optional<DeliveryResult> result;
  void on_delivered(DeliveryId, const DeliveryResult& r) noexcept override { result = r; }
};

struct Rig {
  Loop loop;
  MetricsRegistry metrics;
  test::TempDir dir;
  SinkContext ctx{loop, metrics, "out", "file", "/tmp"};
  std::unique_ptr<FileSink> sink;
  explicit Rig(FileConfig c = {}) {
    if (c.path.empty()) c.path = dir.file("out.log");
    auto s = FileSink::create(c, ctx);
    REQUIRE(s);
    sink = std::move(*s);
  }
  Outcome deliver(const Batch& b) {
    Answer a;
    sink->deliver(b, DeliveryId{1}, a);
    REQUIRE(test::run_until(loop, 5s, [&] { return a.result.has_value(); }));
    return a.result->outcome;
  }
  ~Rig() {
    bool stopped = false;
    sink->stop([&] { stopped = true; });
    test::run_until(loop, 5s, [&] { return stopped; });
    sink.reset();
    loop.close();
  }
};

// Writes past this many bytes fail part-way (EFBIG), as a full disk does (ENOSPC), while in scope.
struct FileSizeLimit {
  rlimit saved{};
  explicit FileSizeLimit(rlim_t bytes) {
    ::signal(SIGXFSZ, SIG_IGN);
    ::getrlimit(RLIMIT_FSIZE, &saved);
    rlimit l = saved;
    l.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &l) == 0);
  }
  ~FileSizeLimit() { ::setrlimit(RLIMIT_FSIZE, &saved); }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
};

}  // namespace

TEST_CASE("file sink: a batch cut short by a full disk leaves no part of it in the file",
          "[unit][sinks][file]") {
  Rig r;
  const Batch first = test::make_batch(10, "first-line-", 0);
  REQUIRE(r.deliver(first) == Outcome::ok);
  const std::string path = r.dir.file("out.log");
  const std::size_t before = test::read_file(path).size();
  const Batch second = test::make_batch(50, "second-line-", 0);
  {
    FileSizeLimit limit(before + 100);  // room for a few lines of the second batch, not all
    CHECK(r.deliver(second) == Outcome::retry);
  }
  CHECK(test::read_file(path).size() == before);  // the part written was taken back
  REQUIRE(r.deliver(second) == Outcome::ok);      // the retry, once there is room again
  const auto lines = test::read_lines(path);
  REQUIRE(lines.size() == 60);
  for (std::size_t i = 0; i < 10; ++i) CHECK(lines[i] == "first-line-" + std::to_string(i));
  for (std::size_t i = 0; i < 50; ++i) CHECK(lines[10 + i] == "second-line-" + std::to_string(i));
  CHECK(r.metrics.render().find("sluice_sink_write_errors_total") != std::string::npos);
}

TEST_CASE("file sink: the part taken back is measured on the file, not on what the sink wrote",
          "[unit][sinks][file]") {
  Rig r;
  REQUIRE(r.deliver(test::make_batch(10, "first-line-", 0)) == Outcome::ok);
  const std::string path = r.dir.file("out.log");
  // Someone else empties the file (a copytruncate rotation of the sink's output).
  REQUIRE(::truncate(path.c_str(), 0) == 0);
  const Batch second = test::make_batch(50, "second-line-", 0);
  {
    FileSizeLimit limit(100);
    CHECK(r.deliver(second) == Outcome::retry);
  }
  // Cut back to where the batch began (0), not to the 130 bytes the sink had written: no zeros.
  CHECK(test::read_file(path).empty());
  REQUIRE(r.deliver(second) == Outcome::ok);
  const auto lines = test::read_lines(path);
  REQUIRE(lines.size() == 50);
  CHECK(lines.front() == "second-line-0");
  CHECK(test::read_file(path).find('\0') == std::string::npos);
}

TEST_CASE("file sink: a roll whose new file could not be opened is finished by the next write",
          "[unit][sinks][file]") {
  test::TempDir dir;
  FileConfig c;
  c.path = dir.file("app.log");
  c.roll_bytes = ByteSize{1024};
  Rig r(c);
  REQUIRE(r.deliver(test::make_batch(60, "line-of-some-length-", 0)) == Outcome::ok);  // > 1 KiB
  const Batch next = test::make_batch(5, "after-the-roll-", 0);
  {
    // No descriptor left: the roll renames the full file, then cannot open the new one.
    const int probe = ::dup(0);
    REQUIRE(probe >= 0);
    ::close(probe);
    rlimit saved{};
    ::getrlimit(RLIMIT_NOFILE, &saved);
    rlimit l = saved;
    l.rlim_cur = static_cast<rlim_t>(probe);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &l) == 0);
    const Outcome o = r.deliver(next);
    ::setrlimit(RLIMIT_NOFILE, &saved);
    CHECK(o == Outcome::retry);
  }
  CHECK_FALSE(std::filesystem::exists(c.path));  // renamed away
  // Before, every later write tried the roll again, whose rename found no file: retry for ever.
  REQUIRE(r.deliver(next) == Outcome::ok);
  const auto lines = test::read_lines(c.path);
  REQUIRE(lines.size() == 5);
  CHECK(lines[0] == "after-the-roll-0");
  std::size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  CHECK(files == 2);  // the rolled file and the new one
}

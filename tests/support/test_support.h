#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "lib/core/batch.h"
#include "lib/core/channel.h"
#include "lib/core/clock.h"
#include "lib/core/loop.h"
#include "lib/core/sink.h"

namespace sluice::test {

/// True in AddressSanitizer/UBSan builds, whose shadow memory and quarantine make resident-memory
/// bounds meaningless: memory assertions hold in release builds only (the behaviour they measure is
/// still exercised).
#ifdef SLUICE_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

using namespace std::chrono_literals;

/// A fresh directory under $TMPDIR, removed with its contents when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

/// True when SLUICE_SOAK=1: tests then run their long form.
bool soak();

/// Polls `cond` every few milliseconds until it holds or `timeout` passes.
bool eventually(std::chrono::milliseconds timeout, const std::function<bool()>& cond);
/// Runs `loop` in small steps until `cond` holds or `timeout` passes.
bool run_until(Loop& loop, std::chrono::milliseconds timeout, const std::function<bool()>& cond);

/// A take() that expects records: lets the loop turn until the channel answers with some. An lmdb
/// channel answers empty once a loop turn's decode budget is spent, and the budget is wall time,
/// so a test preempted on a loaded machine can spend it on a tiny take. Empty if take() failed or
/// nothing came within `timeout`.
std::optional<Lease> take_some(Loop& loop, Channel& channel, CursorId cursor, Batch& out,
                               TakeLimits limits,
                               std::chrono::milliseconds timeout = std::chrono::seconds(5));

/// Counts operator new calls on this thread while alive (the test binary replaces operator new).
class AllocationCounter {
 public:
  AllocationCounter();
  ~AllocationCounter();
  std::uint64_t count() const;

 private:
  std::uint64_t start_;
};
/// False in sanitizer builds, where the allocator is not ours to count.
bool allocation_counting_available();
/// Usable bytes (malloc_usable_size) of the operator new blocks allocated and not yet freed, net,
/// on this thread: what a structure built here really holds on the heap. 0 in sanitizer builds.
std::int64_t live_heap_bytes();

/// A clock that moves only when told.
class ManualClock final : public Clock {
 public:
  TimePoint now() const noexcept override { return now_; }
  void advance(Duration d) { now_ += d; }

 private:
  TimePoint now_{std::chrono::seconds(1000)};
};

/// A sink whose answers are scripted: each delivery records the bodies and then answers with
/// the next scripted result on a later loop turn (or never, for Outcome-less `hold` entries).
class RecordingSink final : public Sink {
 public:
  explicit RecordingSink(Loop& loop) : loop_(loop) {}
  void deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) override;
  void stop(StopCallback on_stopped) override;

  /// Answers for the next deliveries, in order; when empty, every delivery answers ok.
  void script(std::vector<DeliveryResult> answers) { script_ = std::move(answers); }
  /// Holds the next `n` deliveries unanswered until release_held().
  void hold_next(std::size_t n) { hold_ = n; }
  void release_held();

  std::vector<std::string> delivered;  // bodies of batches answered ok, in answer order
  std::vector<std::string> attempted;  // bodies of every delivery, in deliver order
  std::size_t deliveries = 0;

 private:
  struct Pending {
    Batch batch;
    DeliveryId id;
    DeliveryListener* done;
    DeliveryResult result;
  };
  static void answer_task(void* self, std::uint64_t);
  Loop& loop_;
  std::vector<DeliveryResult> script_;
  std::size_t hold_ = 0;
  std::vector<Pending> pending_, held_;
};

/// A blocking HTTP/1.1 client for tests: one request per connection.
struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;
};
HttpReply http_request(const std::string& address, std::string_view raw_request,
                       std::chrono::milliseconds timeout = 5s);
HttpReply http_get(const std::string& address, std::string_view path);

/// Polls `GET /healthz` on `admin` from a thread of its own at a health checker's pace (one poll
/// every 2 ms) until stop() or destruction: how long the agent's loop made a probe wait.
class HealthzPoller {
 public:
  explicit HealthzPoller(std::string admin);
  ~HealthzPoller() { stop(); }
  HealthzPoller(const HealthzPoller&) = delete;
  HealthzPoller& operator=(const HealthzPoller&) = delete;
  void stop();
  long long worst_us() const noexcept { return worst_us_; }
  int polls() const noexcept { return polls_; }
  int failed() const noexcept { return failed_; }  // answers other than 200

 private:
  std::string admin_;
  std::atomic<bool> done_{false};
  std::atomic<long long> worst_us_{0};
  std::atomic<int> polls_{0}, failed_{0};
  std::thread thread_;
};

std::string read_file(const std::string& path);
void write_file(const std::string& path, std::string_view content);
std::vector<std::string> read_lines(const std::string& path);

/// Appends lines "first".."last" (decimal numbers) to `path`, creating it.
void append_numbers(const std::string& path, long first, long last);
/// Newline characters in the file.
std::size_t count_lines(const std::string& path);
/// The number at the start of each line of `text`.
std::vector<long> numbers_of(const std::string& text);

/// Makes a batch of `n` events whose bodies are `prefix` followed by the event's index.
Batch make_batch(std::size_t n, std::string_view prefix = "event-", std::size_t first = 0);

}  // namespace sluice::test

#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lib/core/clock.h"

namespace sluice {

/// Closes a heap-allocated libuv handle and deletes it once libuv is done with it.
template <class H>
void close_and_delete(H* handle) {
  if (handle == nullptr) return;
  auto* h = reinterpret_cast<uv_handle_t*>(handle);
  if (uv_is_closing(h)) return;
  uv_close(h, [](uv_handle_t* closed) { delete reinterpret_cast<H*>(closed); });
}

/// The agent's one event loop. Everything here runs on the loop thread.
class Loop {
 public:
  using TaskFn = void (*)(void* self, std::uint64_t arg);

  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uv_loop_t* uv() noexcept { return &loop_; }
  /// Runs fn(self, arg) on a later turn of the loop, never inline; keeps order. Does not allocate
  /// once warm, so completions of synchronous work (null sink, memory channel) can use it per
  /// batch.
  void defer(TaskFn fn, void* self, std::uint64_t arg);
  /// Drops every task deferred for `self` that has not run yet, including later tasks of the turn
  /// being run. Every owner of deferred tasks calls it from its destructor, so that a task never
  /// reaches a destroyed object.
  void cancel_deferred(const void* self) noexcept;
  /// Runs the loop until stop() or until no handle is active. Returns uv_run's value.
  int run();
  void stop() { uv_stop(&loop_); }
  /// Runs one turn without waiting (tests).
  int run_once() { return uv_run(&loop_, UV_RUN_NOWAIT); }
  /// Tasks deferred and not yet run.
  std::size_t deferred_tasks() const noexcept { return pending_.size(); }
  /// Closes every handle still open and the loop itself; 0 when nothing leaked.
  int close();

 private:
  struct Task {
    TaskFn fn;
    void* self;
    std::uint64_t arg;
  };
  static void on_idle(uv_idle_t* idle);

  uv_loop_t loop_{};
  uv_idle_t* idle_ = nullptr;
  std::vector<Task> pending_, running_;
  bool closed_ = false;
};

/// A one-shot or repeating timer bound to a loop. Destroying it cancels it.
class Timer {
 public:
  explicit Timer(Loop& loop);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void start(Duration after, std::function<void()> fn, Duration repeat = Duration::zero());
  void stop();
  bool active() const;

 private:
  uv_timer_t* t_;
  std::function<void()> fn_;
};

/// Writes `data` to `stream`, keeping the bytes alive until libuv is done with them. Returns
/// uv_write's code (0: queued).
int write_owned(uv_stream_t* stream, std::string data);

/// Closes every handle of `loop`, runs it until they are closed, and closes it. Tests end with
/// REQUIRE(close_loop(loop) == 0) so that a leaked handle fails them.
int close_loop(uv_loop_t* loop);

}  // namespace sluice

#pragma once

#include <chrono>
#include <functional>

#include "lib/core/loop.h"
#include "lib/core/sink.h"  // StopCallback

namespace sluice {

/// Calls a component's stop callback once, as soon as `idle()` holds: checked at once, whenever the
/// component calls check(), and every 10 ms meanwhile. Loop thread only.
class StopWaiter {
 public:
  explicit StopWaiter(Loop& loop) : timer_(loop) {}

  void wait(std::function<bool()> idle, StopCallback on_stopped) {
    idle_ = std::move(idle);
    on_stopped_ = std::move(on_stopped);
    check();
  }
  /// Re-checks now; a no-op unless wait() was called and has not fired yet.
  void check() {
    if (!on_stopped_) return;
    if (!idle_()) {
      if (!timer_.active()) {
        timer_.start(
            std::chrono::milliseconds(10), [this] { check(); }, std::chrono::milliseconds(10));
      }
      return;
    }
    timer_.stop();
    auto cb = std::move(on_stopped_);
    on_stopped_ = nullptr;
    cb();
  }
  bool waiting() const noexcept { return static_cast<bool>(on_stopped_); }

 private:
  Timer timer_;
  std::function<bool()> idle_;
  StopCallback on_stopped_;
};

}  // namespace sluice

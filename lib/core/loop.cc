#include "lib/core/loop.h"

#include <vector>

#include "lib/core/assert.h"

namespace sluice {

Loop::Loop() {
  SLUICE_ASSERT(uv_loop_init(&loop_) == 0);
  idle_ = new uv_idle_t;
  uv_idle_init(&loop_, idle_);
  idle_->data = this;
  pending_.reserve(64);
  running_.reserve(64);
}

Loop::~Loop() { close(); }

void Loop::defer(TaskFn fn, void* self, std::uint64_t arg) {
  if (pending_.empty() && idle_ != nullptr) uv_idle_start(idle_, &Loop::on_idle);
  pending_.push_back({fn, self, arg});
}

void Loop::cancel_deferred(const void* self) noexcept {
  std::erase_if(pending_, [self](const Task& t) { return t.self == self; });
  // Tasks of the turn being run stay in place (on_idle walks them by index) but run no more.
  for (Task& t : running_) {
    if (t.self == self) t.fn = nullptr;
  }
}

void Loop::on_idle(uv_idle_t* idle) {
  auto* self = static_cast<Loop*>(idle->data);
  self->running_.swap(self->pending_);
  if (self->pending_.empty()) uv_idle_stop(idle);
  for (std::size_t i = 0; i < self->running_.size(); ++i) {
    const Task t = self->running_[i];
    if (t.fn != nullptr) t.fn(t.self, t.arg);
  }
  self->running_.clear();
  if (self->pending_.empty()) uv_idle_stop(idle);
}

int Loop::run() { return uv_run(&loop_, UV_RUN_DEFAULT); }

int Loop::close() {
  if (closed_) return 0;
  closed_ = true;
  close_and_delete(idle_);
  idle_ = nullptr;
  return close_loop(&loop_);
}

int close_loop(uv_loop_t* loop) {
  // A handle still open here was leaked by its owner: close it (its memory leaks; the count
  // returned makes the caller's check fail) so that the loop itself can be closed.
  int leaked = 0;
  uv_walk(
      loop,
      [](uv_handle_t* h, void* n) {
        if (uv_is_closing(h)) return;
        ++*static_cast<int*>(n);
        uv_close(h, nullptr);
      },
      &leaked);
  uv_run(loop, UV_RUN_DEFAULT);
  const int rc = uv_loop_close(loop);
  return rc != 0 ? rc : leaked;
}

Timer::Timer(Loop& loop) : t_(new uv_timer_t) {
  uv_timer_init(loop.uv(), t_);
  t_->data = this;
}

Timer::~Timer() {
  t_->data = nullptr;
  close_and_delete(t_);
}

void Timer::start(Duration after, std::function<void()> fn, Duration repeat) {
  fn_ = std::move(fn);
  auto ms = [](Duration d) {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  };
  uv_timer_start(
      t_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Timer*>(t->data);
        if (self != nullptr && self->fn_) self->fn_();
      },
      ms(after), ms(repeat));
}

void Timer::stop() { uv_timer_stop(t_); }
bool Timer::active() const { return uv_is_active(reinterpret_cast<const uv_handle_t*>(t_)) != 0; }

int write_owned(uv_stream_t* stream, std::string data) {
  struct Write {
    uv_write_t req;
    std::string data;
  };
  auto* w = new Write{{}, std::move(data)};
  uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  const int rc = uv_write(&w->req, stream, &b, 1,
                          [](uv_write_t* r, int) { delete reinterpret_cast<Write*>(r); });
  if (rc != 0) delete w;
  return rc;
}

}  // namespace sluice

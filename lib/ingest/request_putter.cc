#include "lib/ingest/request_putter.h"

#include <utility>
#include <vector>

namespace sluice::sources {

RequestPutter::RequestPutter(Loop& loop, SourceOutput& output) : loop_(loop), output_(output) {
  output_.set_listener(this);
}

void RequestPutter::submit(Batch& batch, Answer answer) {
  if (batch.empty()) {
    answer(true);
    return;
  }
  if (!accepting()) {
    batch.clear();
    answer(false);
    return;
  }
  pending_.push_back({std::move(answer), 0, false});
  unput_bytes_ += batch.bytes();
  unput_.emplace_back();
  unput_.back().batch.swap(batch);  // no copy of the events here
  batch.clear();
  // Behind earlier requests, this one waits for its turn (a deferred put_some or on_writable).
  if (unput_.size() == 1) put_some();
}

// Puts chunks of the oldest unput request until about kBytesPerTurn were put this turn, the
// output is not writable (on_writable continues), or nothing is left; then continues on a later
// turn. Answers and puts may call back into this object (on_safe, on_writable, submit): the
// outer call keeps going, and a Pending is referenced only while it cannot be popped.
void RequestPutter::put_some() {
  if (putting_) return;
  putting_ = true;
  const std::size_t max = output_.max_batch_events();
  std::uint64_t put_bytes = 0;
  while (!unput_.empty() && output_.writable() && put_bytes < kBytesPerTurn) {
    Unput& u = unput_.front();
    Pending& p = pending_[pending_.size() - unput_.size()];  // not all_put: stays in pending_
    const std::size_t n = u.batch.size();
    const std::size_t to = std::min(n, u.next + max);
    chunk_.clear();
    if (u.next == 0 && to == n) {
      chunk_.swap(u.batch);
    } else {
      chunk_.append_range(u.batch, u.next, to);
    }
    u.next = to;
    put_bytes += chunk_.bytes();
    unput_bytes_ -= chunk_.bytes();
    p.last_seq = output_.put(chunk_, {});
    if (output_.waiting_for_space()) {
      output_.abandon_waiting();
      putting_ = false;
      refuse_unput();
      return;
    }
    if (to == n) {
      free_off_loop(u.batch);
      unput_.pop_front();
      p.all_put = true;
      answer_safe(output_.safe_seq());
    }
  }
  putting_ = false;
  if (!unput_.empty() && output_.writable() && !deferred_) {
    deferred_ = true;
    loop_.defer(&RequestPutter::put_some_task, this, 0);
  }
  if (on_progress_) on_progress_();
}

// Unmapping what a large request grew (128 MiB of faulted-in pages) takes milliseconds: the uv
// threadpool does it.
void RequestPutter::free_off_loop(Batch& batch) {
  if (batch.capacity_bytes() < kFreeOffLoopBytes) return;
  struct Freeing {
    uv_work_t work{};
    Batch batch;
  };
  auto* f = new Freeing;
  f->batch.swap(batch);
  f->work.data = f;
  uv_queue_work(
      loop_.uv(), &f->work, [](uv_work_t* w) { static_cast<Freeing*>(w->data)->batch.release(); },
      [](uv_work_t* w, int) { delete static_cast<Freeing*>(w->data); });
}

void RequestPutter::put_some_task(void* self, std::uint64_t) {
  auto* p = static_cast<RequestPutter*>(self);
  p->deferred_ = false;
  p->put_some();
}

// The channel is full: the request being put (its chunks stored so far stay: at-least-once) and
// every request queued behind it are answered false.
void RequestPutter::refuse_unput() {
  std::vector<Answer> refused;
  refused.reserve(unput_.size());
  for (std::size_t i = pending_.size() - unput_.size(); i < pending_.size(); ++i) {
    refused.push_back(std::move(pending_[i].answer));
  }
  pending_.resize(pending_.size() - unput_.size());
  unput_.clear();
  unput_bytes_ = 0;
  for (Answer& answer : refused) answer(false);
  if (on_progress_) on_progress_();
}

void RequestPutter::answer_safe(std::uint64_t seq) {
  while (!pending_.empty() && pending_.front().all_put && pending_.front().last_seq <= seq) {
    Answer answer = std::move(pending_.front().answer);
    pending_.pop_front();
    answer(true);
  }
}

void RequestPutter::on_writable() noexcept {
  if (!unput_.empty() && !putting_) {
    put_some();  // calls on_progress_
    return;
  }
  if (on_progress_) on_progress_();
}

void RequestPutter::on_safe(std::uint64_t seq) noexcept {
  answer_safe(seq);
  if (on_progress_) on_progress_();
}

}  // namespace sluice::sources

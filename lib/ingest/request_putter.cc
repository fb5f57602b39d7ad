#include "lib/ingest/request_putter.h"

namespace sluice::sources {

RequestPutter::RequestPutter(SourceOutput& output) : output_(output) { output_.set_listener(this); }

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
  pending_.push_back({std::move(answer), 0, 0});
  const std::size_t max = output_.max_batch_events();
  const std::size_t n = batch.size();
  for (std::size_t from = 0; from < n; from += max) {
    const std::size_t to = std::min(n, from + max);
    Batch chunk;
    if (from == 0 && to == n) {
      chunk.swap(batch);
    } else {
      chunk.append_range(batch, from, to);
    }
    if (leftover_.empty() && output_.writable()) {
      if (!put_chunk(chunk)) break;
    } else {
      leftover_.push_back(std::move(chunk));
      ++pending_.back().unput;
    }
  }
  batch.clear();
}

// Puts one chunk of the newest request; false (and the request refused) if the channel is full.
bool RequestPutter::put_chunk(Batch& chunk) {
  pending_.back().last_seq = output_.put(chunk, {});
  if (!output_.waiting_for_space()) return true;
  output_.abandon_waiting();
  refuse_newest();
  return false;
}

void RequestPutter::refuse_newest() {
  leftover_.clear();
  Answer answer = std::move(pending_.back().answer);
  pending_.pop_back();
  answer(false);
  if (on_progress_) on_progress_();
}

void RequestPutter::on_writable() noexcept {
  while (!leftover_.empty() && output_.writable()) {
    Batch chunk = std::move(leftover_.front());
    leftover_.pop_front();
    --pending_.back().unput;
    if (!put_chunk(chunk)) break;
  }
  if (on_progress_) on_progress_();
}

void RequestPutter::on_safe(std::uint64_t seq) noexcept {
  while (!pending_.empty() && pending_.front().unput == 0 && pending_.front().last_seq <= seq) {
    Answer answer = std::move(pending_.front().answer);
    pending_.pop_front();
    answer(true);
  }
  if (on_progress_) on_progress_();
}

}  // namespace sluice::sources

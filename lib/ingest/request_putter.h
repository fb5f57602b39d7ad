#pragma once

#include <cstdint>
#include <deque>
#include <functional>

#include "lib/core/batch.h"
#include "lib/core/source_output.h"

namespace sluice::sources {

/// For sources that answer a client per request (Avro, HTTP): puts each request's events, in
/// chunks of at most the output's transaction size, and calls its answer once: `true` when every
/// chunk is safe (on_safe: stored durably, or delivered for a memory channel), `false` at once
/// when the channel is full (the client retries; chunks stored before stay, at-least-once).
class RequestPutter final : private OutputListener {
 public:
  using Answer = std::function<void(bool safe)>;

  explicit RequestPutter(SourceOutput& output);
  /// Takes the events of `batch` (left empty). An empty batch is answered true at once.
  void submit(Batch& batch, Answer answer);
  /// Refuses at once (false) while a request waits for the output or the channel is full.
  bool accepting() const noexcept { return leftover_.empty() && output_.writable(); }
  /// True when no request waits for its answer.
  bool idle() const noexcept { return pending_.empty() && leftover_.empty() && output_.idle(); }
  /// Called after answers and whenever the output may have become writable (stop waiters).
  void set_on_progress(std::function<void()> fn) { on_progress_ = std::move(fn); }

 private:
  struct Pending {
    Answer answer;
    std::uint64_t last_seq = 0;
    std::size_t unput = 0;
  };
  bool put_chunk(Batch& chunk);
  void refuse_newest();
  void on_safe(std::uint64_t seq) noexcept override;
  void on_writable() noexcept override;

  SourceOutput& output_;
  std::deque<Pending> pending_;
  std::deque<Batch> leftover_;  // chunks of the newest request waiting for max_pending_puts
  std::function<void()> on_progress_;
};

}  // namespace sluice::sources

#pragma once

#include <cstdint>
#include <deque>
#include <functional>

#include "lib/core/batch.h"
#include "lib/core/loop.h"
#include "lib/core/source_output.h"

namespace sluice::sources {

/// For sources that answer a client per request (Avro, HTTP): puts each request's events, in
/// chunks of at most the output's transaction size, and calls its answer once: `true` when every
/// chunk is safe (on_safe: stored durably, or delivered for a memory channel), `false` at once
/// when the channel is full (the client retries; chunks stored before stay, at-least-once).
///
/// A loop turn copies and puts about kBytesPerTurn of events (plus at most one chunk); a
/// larger request continues on later turns, so that a 128 MiB body does not hold every other
/// connection (and /healthz) for the time of copying it. Requests submitted meanwhile queue behind
/// it, in order; a full channel refuses the request being put and every one queued behind it.
class RequestPutter final : private OutputListener {
 public:
  using Answer = std::function<void(bool safe)>;
  static constexpr std::uint64_t kBytesPerTurn = 1 << 20;
  /// Events accepted and not put yet are outside the channel's bounds: at most this much more.
  static constexpr std::uint64_t kMaxUnputBytes = 64 << 20;
  static constexpr std::size_t kFreeOffLoopBytes = 8 << 20;

  RequestPutter(Loop& loop, SourceOutput& output);
  ~RequestPutter() { loop_.cancel_deferred(this); }
  RequestPutter(const RequestPutter&) = delete;
  RequestPutter& operator=(const RequestPutter&) = delete;
  /// Takes the events of `batch` (left empty, possibly with recycled buffers). An empty batch is
  /// answered true at once. The first chunks are put inside this call (so that a full channel
  /// answers false at once) unless earlier requests are still being put.
  void submit(Batch& batch, Answer answer);
  /// False while the output is not writable (max_pending_puts outstanding, or the channel full)
  /// or kMaxUnputBytes of events wait to be put: submit() would answer false at once.
  bool accepting() const noexcept { return unput_bytes_ < kMaxUnputBytes && output_.writable(); }
  /// True when no request waits for its answer.
  bool idle() const noexcept { return pending_.empty() && unput_.empty() && output_.idle(); }
  /// Called after answers and whenever the output may have become writable (stop waiters).
  void set_on_progress(std::function<void()> fn) { on_progress_ = std::move(fn); }

 private:
  struct Pending {
    Answer answer;
    std::uint64_t last_seq = 0;
    bool all_put = false;
  };
  // Events of a request not put yet: [next, batch.size()) of batch.
  struct Unput {
    Batch batch;
    std::size_t next = 0;
  };
  void put_some();
  static void put_some_task(void* self, std::uint64_t);
  void free_off_loop(Batch& batch);
  void refuse_unput();
  void answer_safe(std::uint64_t seq);
  void on_safe(std::uint64_t seq) noexcept override;
  void on_writable() noexcept override;

  Loop& loop_;
  SourceOutput& output_;
  std::deque<Pending> pending_;
  std::deque<Unput> unput_;  // the last unput_.size() entries of pending_, in the same order
  Batch chunk_;              // reused: a put hands it the channel's recycled buffers
  std::uint64_t unput_bytes_ = 0;
  bool deferred_ = false;  // a put_some_task is queued on the loop
  bool putting_ = false;   // inside put_some
  std::function<void()> on_progress_;
};

}  // namespace sluice::sources

#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/core/batch.h"
#include "lib/core/channel.h"
#include "lib/core/loop.h"
#include "lib/core/metrics.h"

namespace sluice {

/// What a source hears from its output.
class OutputListener {
 public:
  /// `seq` and every earlier batch are safe in every channel: persist or acknowledge up to it.
  /// Calls come in increasing order.
  virtual void on_safe(std::uint64_t seq) noexcept = 0;
  /// put() had answered false; the source may read and put again.
  virtual void on_writable() noexcept = 0;

 protected:
  ~OutputListener() = default;
};

/// Hands a source's batches to each of its channels (Flume's replicating selector), keeps at most
/// `max_pending_puts` puts outstanding, waits for space on backpressure without re-putting into
/// channels that already took the batch, and turns the channels' per-put safety into ordered
/// on_safe() calls (safe when safe in all channels). Loop thread only.
class SourceOutput final : private PutListener, private SpaceListener, private SafeListener {
 public:
  static constexpr std::size_t kDefaultMaxPendingPuts = 4;

  /// Events flagged Batch::kDeadLetter go to `dead_letter` (if set) instead of `channels`.
  SourceOutput(Loop& loop, std::vector<Channel*> channels,
               std::size_t max_pending_puts = kDefaultMaxPendingPuts,
               Channel* dead_letter = nullptr);
  ~SourceOutput() { loop_.cancel_deferred(this); }
  SourceOutput(const SourceOutput&) = delete;
  SourceOutput& operator=(const SourceOutput&) = delete;
  void set_listener(OutputListener* listener) { listener_ = listener; }

  /// Puts `batch` (which is left empty) with the source's `position` after its last event; a
  /// durable channel stores it under "SOURCE/key" with the batch. Returns the sequence number
  /// given to it. Check writable() before each put. An empty batch only carries a position
  /// forward (every event of a read was filtered out): it is safe once every earlier put is.
  std::uint64_t put(Batch& batch, std::string_view position, std::string_view key = {});
  /// The checkpoints a durable channel of this output holds for this source, as (key without the
  /// "SOURCE/" prefix, position); empty without a durable channel.
  std::vector<std::pair<std::string, std::string>> load_checkpoints();
  bool durable() const noexcept;
  /// At stop, for sources that can read their input again (taildir): forgets the puts still
  /// waiting for space that no channel has taken yet, so that a full channel behind a dead sink
  /// does not hold the shutdown. Their positions were never reported safe. Returns how many.
  std::size_t drop_waiting();
  /// For sources that answer a client (Avro FAILED, HTTP 503) rather than wait: forgets the puts
  /// waiting for space (or for a retry) that no channel has taken yet, as if never made; their
  /// sequence numbers count as safe. Returns how many.
  std::size_t abandon_waiting();
  /// True while a put waits for space in a channel (or for a retry after an error).
  bool waiting_for_space() const noexcept { return waiting_ > 0; }
  void set_source_name(std::string name) { source_name_ = std::move(name); }
  /// False while a put waits for space or max_pending_puts are outstanding.
  bool writable() const noexcept;
  /// True when no put is outstanding.
  bool idle() const noexcept { return pending_ == 0; }
  /// True when no put is outstanding and every put a channel took is safe in it (the puts
  /// drop_waiting() forgot never will be): no channel calls this output back any more, except
  /// on_space (a reload replacing the source waits for this).
  bool settled() const noexcept;
  /// The largest batch a source should build.
  std::uint32_t max_batch_events() const noexcept { return max_batch_events_; }
  std::uint64_t last_seq() const noexcept { return seq_; }
  std::uint64_t safe_seq() const noexcept { return safe_seq_; }
  /// Puts numbered and not yet reported safe (the safety ring's length).
  std::size_t unsafe_puts() const noexcept { return ring_size_; }
  /// Puts that failed other than by a full channel refusing them inside put(): errors (retried
  /// after a pause, with backoff) and back-pressure answered after the channel took the put
  /// (retried when the channel has space again). Every such put is retried, in sequence order.
  std::uint64_t put_errors() const noexcept { return put_errors_; }
  /// Exports sluice_source_put_errors_total{reason} with `labels` (the source's component and
  /// type). reason: `no_space` for back-pressure answered after the channel took the put (disk or
  /// map full), else the error code's name (`io`, ...).
  void set_metrics(MetricsRegistry& metrics, Labels labels);
  /// Non-empty while puts fail (since the last failure, no put has been stored): for /healthz.
  std::string health_problem() const;

 private:
  struct Slot {
    Batch batch;
    Batch side;  // events for the dead-letter channel
    std::string position;
    std::string key;
    std::uint64_t seq = 0;
    std::size_t next_channel = 0;
    bool busy = false;
    bool waiting = false;      // blocked on wait_for_space or the retry timer
    bool in_put = false;       // inside Channel::put (done may run synchronously)
    bool done_inline = false;  // done ran inside put
    Status inline_status;
  };

  void advance(Slot& slot);
  std::size_t targets() const noexcept { return channels_.size() + (dead_letter_ ? 1 : 0); }
  Channel* target(std::size_t i) const noexcept {
    return i < channels_.size() ? channels_[i] : dead_letter_;
  }
  Batch& batch_for(Slot& slot, std::size_t i) noexcept {
    return i < channels_.size() ? slot.batch : slot.side;
  }
  void pop_safe();
  static void pop_safe_task(void* self, std::uint64_t);
  void defer_pop_safe();
  static constexpr std::size_t kMaxAbandonedPerCall = 64;
  Slot* slot_for(std::uint64_t seq) noexcept;
  void finish(Slot& slot);
  bool accepted(Slot& slot, Status st, bool inline_answer);
  void count_error(const Status& st, bool inline_answer);
  void resume_waiting();
  void on_put_done(std::uint64_t seq, Status status) noexcept override;
  void on_space() noexcept override;
  void on_safe_in_channel(std::uint64_t seq) noexcept override;

  Loop& loop_;
  std::vector<Channel*> channels_;
  Channel* dead_letter_;
  std::string source_name_;
  std::vector<Slot> slots_;
  Batch scratch_, kept_;
  OutputListener* listener_ = nullptr;
  std::uint32_t max_batch_events_;
  std::size_t pending_ = 0;
  std::size_t waiting_ = 0;
  mutable bool told_blocked_ = false;
  std::uint64_t seq_ = 0;
  std::uint64_t put_errors_ = 0;
  // Safety: remaining channel acknowledgements per unsafe seq, as a ring indexed from safe_seq_+1.
  std::vector<std::uint32_t> remaining_;
  std::size_t ring_head_ = 0;
  std::size_t ring_size_ = 0;
  bool pop_safe_deferred_ = false;
  std::uint64_t safe_seq_ = 0;
  std::vector<std::uint64_t> dropped_seqs_;  // forgotten by drop_waiting(): never safe
  Timer retry_timer_;
  Duration retry_delay_;
  bool resuming_ = false;
  std::vector<std::uint64_t> resume_seqs_;
  // Failures since the last stored put, for health_problem().
  bool failing_ = false;
  std::string last_error_;
  MetricsRegistry* metrics_ = nullptr;
  Labels labels_;
  std::vector<std::pair<std::string, Counter*>> error_counters_;
};

}  // namespace sluice

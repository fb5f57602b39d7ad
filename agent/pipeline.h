#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/pipeline_config.h"
#include "lib/core/channel.h"
#include "lib/core/context.h"
#include "lib/core/loop.h"
#include "lib/core/metrics.h"
#include "lib/core/source_output.h"
#include "sql/engine.h"

namespace sluice {

/// One running [pipelines.NAME]: reads the events of its FROM source, folds them into the SQL
/// engine's windows and puts one row per closed window and group into its target channel.
///
/// Where the pipeline taps its source, and why: it reads the source's durable (lmdb) channel
/// through a cursor of its own ("pipeline:NAME"), like one more sink group. So it sees exactly
/// the events that channel durably accepted, in order, after the parse step, and the source's
/// position is stored in the same transaction as those events (DESIGN.md). The pipeline keeps
/// the leases it took until it checkpoints; a checkpoint commits them and stores the engine's
/// state (serialize_state) under "pipeline:NAME/state" in one LMDB transaction
/// (Channel::commit_with_checkpoint). After a crash the cursor is therefore past an event
/// exactly when the stored state counts it: no event is counted twice or lost. A checkpoint is
/// taken only once every row emitted before it is safe in the target channel (and every late event
/// in the late channel); a crash before that re-reads the uncommitted events from the restored
/// state and emits the same rows again (a row may be delivered twice, with the same values).
/// A tee at the source's put (SourceOutput) could not do this: the source's position and the
/// pipeline's state would be stored in different transactions, so a crash between them would
/// either skip or re-count a batch.
///
/// A memory input: the pipeline reads it through a cursor of its own too (the channel frees an
/// event once the sink groups and every pipeline committed it) but it has nowhere to checkpoint,
/// so it commits each lease once its events are folded into the windows and stores no state. A
/// kill -9 loses the open windows as it loses the channel's events; a clean stop with on_stop =
/// "emit" reads what the channel holds and emits every window ("keep" is a configuration error).
///
/// Rows go through a SourceOutput into the target channel: a full channel pauses the pipeline
/// (it stops taking; its input channel then fills and pauses the source), nothing is dropped.
/// Loop thread only.
class Pipeline final : private DataListener, private CommitListener, private EventReader {
 public:
  /// `input` is the source's lmdb or memory channel; `late` may be null (late events dropped,
  /// counted).
  Pipeline(const PipelineSpec& spec, Loop& loop, MetricsRegistry& metrics, Channel& input,
           Channel& target, Channel* late, std::size_t max_pending_puts);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  /// Opens the cursor (before any sink group can delete what it has not read) and restores the
  /// checkpointed state.
  Status open();
  /// Starts reading.
  void start();
  /// Shutdown, after the sources stopped: on_stop = "emit" reads what the input still holds and
  /// closes every open window; "keep" stops reading. `done` runs once every row is in its channel.
  void stop(std::function<void()> done);
  /// After the sink groups drained: stores the last checkpoint once every row is safe; `done`
  /// runs once it is stored (or at once if it cannot be).
  void final_checkpoint(std::function<void()> done);

  const std::string& name() const noexcept { return spec_.name; }
  const PipelineSpec& spec() const noexcept { return spec_; }
  std::uint64_t events_in() const noexcept { return events_in_n_; }
  std::uint64_t rows_out() const noexcept { return rows_out_n_; }
  std::uint64_t late_events() const noexcept { return late_n_; }
  std::size_t state_bytes() const noexcept { return runner_ ? runner_->state_bytes() : 0; }
  std::size_t open_windows() const noexcept { return runner_ ? runner_->open_windows() : 0; }
  std::int64_t watermark() const noexcept { return runner_ ? runner_->watermark() : INT64_MIN; }
  const char* state_name() const noexcept;

 private:
  struct NoCommitListener final : CommitListener {
    void on_committed(std::uint64_t, Status) noexcept override {}
  };
  struct OutListener final : OutputListener {
    Pipeline* self = nullptr;
    void on_safe(std::uint64_t) noexcept override { self->on_output_safe(); }
    void on_writable() noexcept override { self->schedule_pump(); }
  };
  enum class State : std::uint8_t { created, running, draining, stopped };

  void on_data() noexcept override;
  void on_committed(std::uint64_t token, Status status) noexcept override;
  void on_output_safe();
  void schedule_pump();
  void pump();
  /// Folds events [begin, end) of `batch` into the windows (the input's events, read in place).
  void on_events(const Batch& batch, std::size_t begin, std::size_t end) override;
  bool put_pending();
  bool put_from(Batch& pending, std::size_t& offset, SourceOutput& out);
  bool outputs_safe() const;
  void maybe_checkpoint(bool force);
  /// Moves closed windows' rows from the engine to rows_ (bounded); returns how many.
  std::size_t emit_closed();
  void release_row_buffers();
  void on_idle();
  void restart_idle_timer();
  void on_tick();
  void finish_stop();
  void update_gauges();
  std::int64_t watermark_delay_ns() const;

  PipelineSpec spec_;
  Loop& loop_;
  Channel& input_;
  CursorId cursor_ = 0;
  bool cursor_open_ = false;
  std::string key_;
  std::unique_ptr<sql::WindowRunner> runner_;
  OutListener rows_listener_, late_listener_;
  SourceOutput rows_out_;
  std::unique_ptr<SourceOutput> late_out_;
  Batch in_, rows_, chunk_;
  std::size_t rows_offset_ = 0;
  std::vector<Batch> late_;  // late events waiting for the late channel, by common headers
  std::size_t late_offset_ = 0;
  std::vector<Lease> held_;
  NoCommitListener input_commits_;  // a memory input's commits (they cannot fail)
  State state_ = State::created;
  bool pump_scheduled_ = false;
  bool pacing_ = false;  // rows were put this loop turn: the next batch waits for the next
  bool waiting_data_ = false;
  bool commit_in_flight_ = false;
  bool dirty_ = false;    // state changed since the last checkpoint
  bool flushed_ = false;  // on_stop = "emit" closed every window
  int empty_takes_ = 0;   // while draining: consecutive empty takes, one loop turn apart
  std::chrono::steady_clock::time_point last_checkpoint_;
  // Idle: the watermark follows the wall clock from the newest event time seen (idle_base_ns_)
  // since the last input (last_input_).
  std::int64_t idle_base_ns_ = INT64_MIN;
  std::chrono::steady_clock::time_point last_input_;
  Timer checkpoint_timer_, idle_timer_, tick_timer_, retry_timer_;
  std::function<void()> stop_done_, final_done_;
  std::uint64_t events_in_n_ = 0, rows_out_n_ = 0, late_n_ = 0;
  std::uint64_t rows_since_trim_ = 0;  // rows put since release_row_buffers()
  sql::RunnerStats seen_{};            // the runner's counters already added to the metrics

  Counter& events_in_;
  Counter& rows_total_;
  Counter& late_sent_;
  Counter& late_dropped_;
  Counter& no_time_;
  Counter& filtered_;
  Counter& closed_early_;
  Counter& eval_errors_;
  Counter& blocked_;
  Counter& checkpoints_;
  Counter& restore_failures_;
  // MERGE (issue 14): rows whose PARTIAL state did not decode, and re-sent states that replaced.
  Counter& bad_states_;
  Counter& partials_replaced_;
  bool bad_state_logged_ = false;
  Gauge& state_bytes_;
  Gauge& open_windows_;
  Gauge& watermark_lag_ms_;
};

}  // namespace sluice

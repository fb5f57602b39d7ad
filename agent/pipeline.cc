#include "agent/pipeline.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "lib/core/clock.h"
#include "sql/plan.h"

namespace sluice {
namespace {

// A checkpoint: magic, the plan's fingerprint, then the runner's own encoding.
constexpr std::string_view kStateMagic = "SQLP1";
// Leases held between checkpoints; past this the pipeline checkpoints before taking more.
constexpr std::size_t kMaxHeldLeases = 4096;
constexpr TakeLimits kTakeLimits{.max_events = 4096, .max_bytes = 8u << 20};
// Rows taken from the engine and not yet put, and rows put per loop turn: the rest of a large
// window's rows stay in the engine (and in its checkpoints) until these are in the channel, so
// memory stays bounded. Each row (~550 bytes at issue 13's query) is held in the pending batch,
// the chunk put and the target channel meanwhile: measured at 100k keys per window (memory input),
// 8,192 rows a turn peaked at 49.6 MB RSS, 1,024 at 44.0 MB, 256 at 41.3 MB, 128 at 41.2 MB.
constexpr std::size_t kMaxPendingRows = 256;
// After this many rows put, once no more are pending, the row buffers are released.
constexpr std::size_t kTrimAfterRows = 8192;

Labels pipeline_labels(const std::string& name) { return {{"component", name}, {"type", "sql"}}; }

Labels with(Labels l, const char* k, const char* v) {
  l.emplace_back(k, v);
  return l;
}

}  // namespace

Pipeline::Pipeline(const PipelineSpec& spec, Loop& loop, MetricsRegistry& metrics, Channel& input,
                   Channel& target, Channel* late, std::size_t max_pending_puts)
    : spec_(spec),
      loop_(loop),
      input_(input),
      key_("pipeline:" + spec.name + "/state"),
      rows_out_(loop, {&target}, max_pending_puts),
      checkpoint_timer_(loop),
      idle_timer_(loop),
      tick_timer_(loop),
      retry_timer_(loop),
      events_in_(metrics.counter("sluice_pipeline_events_total",
                                 "Events the pipeline read from its source.",
                                 pipeline_labels(spec.name))),
      rows_total_(metrics.counter("sluice_pipeline_rows_total",
                                  "Rows (one per closed window and group) put into the target.",
                                  pipeline_labels(spec.name))),
      late_sent_(
          metrics.counter("sluice_pipeline_late_events_total",
                          "Events that came after their windows closed, by what happened to them.",
                          with(pipeline_labels(spec.name), "outcome", "sent"))),
      late_dropped_(
          metrics.counter("sluice_pipeline_late_events_total",
                          "Events that came after their windows closed, by what happened to them.",
                          with(pipeline_labels(spec.name), "outcome", "dropped"))),
      no_time_(metrics.counter("sluice_pipeline_events_without_time_total",
                               "Events whose event-time field was missing or did not parse "
                               "(dropped).",
                               pipeline_labels(spec.name))),
      filtered_(metrics.counter("sluice_pipeline_events_filtered_total",
                                "Events the WHERE clause left out.", pipeline_labels(spec.name))),
      closed_early_(metrics.counter("sluice_pipeline_windows_closed_early_total",
                                    "Windows closed before the watermark passed them, because the "
                                    "state reached max_state_bytes.",
                                    pipeline_labels(spec.name))),
      eval_errors_(metrics.counter("sluice_pipeline_eval_errors_total",
                                   "Expressions that failed on an event (the value became NULL).",
                                   pipeline_labels(spec.name))),
      blocked_(metrics.counter("sluice_pipeline_output_blocked_total",
                               "Times rows waited for room in a full output channel (they are "
                               "kept and put when there is room).",
                               pipeline_labels(spec.name))),
      checkpoints_(metrics.counter("sluice_pipeline_checkpoints_total",
                                   "State checkpoints stored with the input cursor.",
                                   pipeline_labels(spec.name))),
      restore_failures_(metrics.counter("sluice_pipeline_restore_failures_total",
                                        "Checkpointed states that could not be restored (the "
                                        "query changed, or damage): the pipeline started empty.",
                                        pipeline_labels(spec.name))),
      bad_states_(metrics.counter("sluice_pipeline_bad_states_total",
                                  "MERGE: rows whose PARTIAL state was missing, damaged or of "
                                  "another aggregate (sent to the late channel, else dropped).",
                                  pipeline_labels(spec.name))),
      partials_replaced_(metrics.counter(
          "sluice_pipeline_partials_replaced_total",
          "MERGE: PARTIAL states that replaced an earlier one of the same agent, window and key "
          "(a re-sent partial, not counted twice).",
          pipeline_labels(spec.name))),
      state_bytes_(metrics.gauge("sluice_pipeline_state_bytes",
                                 "Bytes of window state held (bounded by max_state_bytes).",
                                 pipeline_labels(spec.name))),
      open_windows_(metrics.gauge("sluice_pipeline_open_windows", "Windows open (per group).",
                                  pipeline_labels(spec.name))),
      watermark_lag_ms_(metrics.gauge("sluice_pipeline_watermark_lag_ms",
                                      "Wall-clock time minus the watermark, in milliseconds.",
                                      pipeline_labels(spec.name))) {
  rows_listener_.self = this;
  late_listener_.self = this;
  rows_out_.set_listener(&rows_listener_);
  rows_out_.set_source_name("pipeline:" + spec.name);
  rows_out_.set_metrics(metrics, pipeline_labels(spec.name));
  if (late != nullptr) {
    late_out_ = std::make_unique<SourceOutput>(loop, std::vector<Channel*>{late}, max_pending_puts);
    late_out_->set_listener(&late_listener_);
    late_out_->set_source_name("pipeline:" + spec.name + ":late");
  }
  last_checkpoint_ = std::chrono::steady_clock::now();
}

Pipeline::~Pipeline() {
  loop_.cancel_deferred(this);
  // A memory input would keep every later event for a reader that is gone (an lmdb input keeps
  // the cursor: a restart or a reload reads on from its stored position).
  if (cursor_open_ && !input_.durable()) input_.close_cursor(cursor_);
}

const char* Pipeline::state_name() const noexcept {
  switch (state_) {
    case State::created:
      return "starting";
    case State::running:
      return "running";
    case State::draining:
      return "stopping";
    case State::stopped:
      return "stopped";
  }
  return "unknown";
}

std::int64_t Pipeline::watermark_delay_ns() const {
  if (spec_.watermark_delay_set) return spec_.watermark_delay.count();
  return spec_.query->watermark_delay_ns().value_or(0);
}

Status Pipeline::open() {
  auto runner = sql::WindowRunner::create(*spec_.query, runner_options(spec_));
  if (!runner) return runner.error();
  runner_ = std::move(*runner);
  auto cursor = input_.open_cursor("pipeline:" + spec_.name);
  if (!cursor) return cursor.error();
  cursor_ = *cursor;
  cursor_open_ = true;
  for (const auto& [k, v] : input_.load_checkpoints("pipeline:" + spec_.name + "/")) {
    if (k != key_) continue;
    std::string_view data(v);
    std::uint64_t fingerprint = 0;
    if (data.size() < kStateMagic.size() + 8 || data.substr(0, kStateMagic.size()) != kStateMagic) {
      restore_failures_.inc();
      spdlog::error("pipeline {}: the checkpointed state is damaged; starting empty", spec_.name);
      continue;
    }
    std::memcpy(&fingerprint, data.data() + kStateMagic.size(), 8);
    data.remove_prefix(kStateMagic.size() + 8);
    if (fingerprint != spec_.query->fingerprint()) {
      restore_failures_.inc();
      spdlog::warn(
          "pipeline {}: the query changed since its state was checkpointed; its open windows are "
          "dropped and it starts empty (from where it had read)",
          spec_.name);
      continue;
    }
    if (Status st = runner_->restore_state(data); !st.ok()) {
      restore_failures_.inc();
      spdlog::error("pipeline {}: cannot restore its state ({}); starting empty", spec_.name,
                    st.message());
      auto fresh = sql::WindowRunner::create(*spec_.query, runner_options(spec_));
      if (!fresh) return fresh.error();
      runner_ = std::move(*fresh);
      continue;
    }
    seen_ = runner_->stats();
    spdlog::info("pipeline {}: restored {} open windows ({} bytes of state)", spec_.name,
                 runner_->open_windows(), runner_->state_bytes());
  }
  update_gauges();
  return {};
}

void Pipeline::start() {
  state_ = State::running;
  if (spec_.query->plan().has_partial && spec_.on_stop == OnStop::emit) {
    // A window cut at a stop and continued after the restart would be sent as two partials of
    // the same (agent, window, key), and the collector keeps only the latest.
    spdlog::warn(
        "pipeline {}: it emits PARTIAL states with on_stop = \"emit\"; use \"keep\" so "
        "that a restart does not send a window in two parts",
        spec_.name);
  }
  if (spec_.query->plan().has_partial && spec_.agent_name_is_host) {
    // The collector tells agents apart by this name: a host name that changes (a container
    // recreated on the same data directory) makes re-sent windows count twice.
    spdlog::warn(
        "pipeline {}: its PARTIAL states carry the host name '{}' as the agent's name; set "
        "[agent] name to a name that stays the same across restarts",
        spec_.name, spec_.agent_name);
  }
  if (spec_.processing_time) {
    // Processing time: windows close as the wall clock passes them, events or not.
    const auto& w = spec_.query->window();
    const std::int64_t step = w.kind == sql::WindowKind::session ? w.size_ns : w.slide_ns;
    const auto every =
        std::chrono::nanoseconds(std::clamp<std::int64_t>(step / 10, 50'000'000, 1'000'000'000));
    tick_timer_.start(
        every, [this] { on_tick(); }, every);
  }
  last_input_ = std::chrono::steady_clock::now();
  restart_idle_timer();
  pump();
}

void Pipeline::restart_idle_timer() {
  if (spec_.idle_timeout.count() <= 0) return;
  const auto repeat = std::min<Duration>(spec_.idle_timeout, std::chrono::milliseconds(250));
  idle_timer_.start(
      spec_.idle_timeout, [this] { on_idle(); }, repeat);
}

void Pipeline::on_data() noexcept {
  waiting_data_ = false;
  pump();
}

void Pipeline::schedule_pump() {
  if (pump_scheduled_) return;
  pump_scheduled_ = true;
  loop_.defer(
      [](void* self, std::uint64_t) {
        auto* p = static_cast<Pipeline*>(self);
        p->pump_scheduled_ = false;
        p->pacing_ = false;
        p->pump();
      },
      this, 0);
}

void Pipeline::pump() {
  if (state_ == State::created || state_ == State::stopped) return;
  const std::uint64_t rows_before = rows_out_n_;
  while (put_pending()) {
    if (runner_->has_pending_rows()) {
      // At most a batch of a large window's rows per loop turn (pacing_ holds until the deferred
      // pump, so that other pumps of the turn do not add theirs): the target's sinks take it
      // before the next is put, so a roomy target channel does not fill with every row of the
      // window in one turn (100k rows of ~550 bytes held at once).
      if (pacing_ || rows_out_n_ - rows_before >= kMaxPendingRows) {
        pacing_ = true;
        schedule_pump();
        break;
      }
      if (emit_closed() > 0) continue;
    }
    // Draining with on_stop = "emit": read what the input holds before the windows are flushed.
    const bool taking = state_ == State::running ||
                        (state_ == State::draining && spec_.on_stop == OnStop::emit && stop_done_);
    if (!taking || held_.size() >= kMaxHeldLeases) break;
    auto lease = input_.take_in_place(cursor_, in_, kTakeLimits, *this);  // on_events()
    if (!lease) {
      spdlog::error("pipeline {}: reading its input failed: {}; retrying", spec_.name,
                    lease.error().message());
      if (!retry_timer_.active())
        retry_timer_.start(std::chrono::milliseconds(200), [this] { pump(); });
      break;
    }
    if (lease->events() == 0) {
      if (state_ == State::draining) {
        // take() answers empty past its per-turn budget too: drained only when empty twice,
        // one loop turn apart.
        if (++empty_takes_ >= 2) {
          finish_stop();
          return;
        }
        schedule_pump();
      } else if (!waiting_data_) {
        waiting_data_ = true;
        input_.wait_for_data(cursor_, *this);
      }
      break;
    }
    empty_takes_ = 0;
    if (input_.durable()) {
      held_.push_back(std::move(*lease));  // committed with the next checkpoint
    } else {
      // A memory input keeps no position to checkpoint with: the events are freed as soon as they
      // are counted (a crash loses the channel's events and the open windows alike).
      input_.commit(std::move(*lease), input_commits_);
    }
    last_input_ = std::chrono::steady_clock::now();
    idle_base_ns_ = INT64_MIN;
    restart_idle_timer();
  }
  update_gauges();
  maybe_checkpoint(false);
  if (state_ == State::draining && spec_.on_stop == OnStop::keep) finish_stop();
}

void Pipeline::on_events(const Batch& batch, std::size_t begin, std::size_t end) {
  for (std::size_t i = begin; i < end; ++i) {
    const sql::EventOutcome outcome = runner_->on_event(batch[i]);
    if (outcome == sql::EventOutcome::bad_state) {
      bad_states_.inc();
      if (!bad_state_logged_) {  // once: a damaged stream would flood the log
        bad_state_logged_ = true;
        spdlog::error(
            "pipeline {}: a row's PARTIAL state is unusable ({}); such rows go to {} "
            "and are counted in sluice_pipeline_bad_states_total",
            spec_.name, runner_->last_bad_state(),
            late_out_ ? "the late channel" : "nowhere (no late channel: dropped)");
      }
    }
    if (outcome == sql::EventOutcome::late || outcome == sql::EventOutcome::bad_state) {
      if (outcome == sql::EventOutcome::late) ++late_n_;
      if (late_out_) {
        if (late_.empty() || !late_.back().same_common_headers(batch)) late_.emplace_back();
        late_.back().append_range(batch, i, i + 1);
        if (outcome == sql::EventOutcome::late) late_sent_.inc();
      } else if (outcome == sql::EventOutcome::late) {
        late_dropped_.inc();
      }
    } else if (outcome == sql::EventOutcome::no_time) {
      no_time_.inc();
    }
  }
  events_in_n_ += end - begin;
  events_in_.inc(end - begin);
  dirty_ = true;
  emit_closed();
}

std::size_t Pipeline::emit_closed() {
  const std::size_t waiting = rows_.size() - rows_offset_;
  const std::size_t n =
      waiting >= kMaxPendingRows ? 0 : runner_->emit_closed(rows_, kMaxPendingRows - waiting);
  if (n > 0) dirty_ = true;
  const sql::RunnerStats& s = runner_->stats();
  closed_early_.inc(s.windows_closed_early -
                    std::min(s.windows_closed_early, seen_.windows_closed_early));
  eval_errors_.inc(s.eval_errors - std::min(s.eval_errors, seen_.eval_errors));
  filtered_.inc(s.events_filtered - std::min(s.events_filtered, seen_.events_filtered));
  partials_replaced_.inc(s.partials_replaced -
                         std::min(s.partials_replaced, seen_.partials_replaced));
  seen_ = s;
  return n;
}

// Puts what waits for the output channels, in chunks the channels take; false while some of it
// waits for room.
bool Pipeline::put_pending() {
  if (!put_from(rows_, rows_offset_, rows_out_)) return false;
  if (rows_since_trim_ >= kTrimAfterRows && !runner_->has_pending_rows()) release_row_buffers();
  while (!late_.empty() && late_out_) {
    if (!put_from(late_.front(), late_offset_, *late_out_)) return false;
    late_.erase(late_.begin());
  }
  return true;
}

bool Pipeline::put_from(Batch& pending, std::size_t& offset, SourceOutput& out) {
  while (offset < pending.size()) {
    if (!out.writable()) {
      blocked_.inc();
      return false;  // on_writable() pumps again
    }
    const std::size_t n = std::min<std::size_t>(out.max_batch_events(), pending.size() - offset);
    chunk_.clear();
    chunk_.append_range(pending, offset, offset + n);
    if (&out == &rows_out_) {
      rows_since_trim_ += n;
      rows_out_n_ += n;
      rows_total_.inc(n);
    }
    out.put(chunk_, "");
    offset += n;
  }
  pending.clear();
  offset = 0;
  return true;
}

// A large window's rows are out: their buffers (rows_ and chunk_ grown to kMaxPendingRows rows, a
// few MB) are not kept for the next window, minutes away, and the heap pages the burst freed go
// back to the system (without this the agent kept ~10 MB more after each large window). It runs
// at most once per kTrimAfterRows rows, ~1-4 ms each (malloc_trim walks the arenas).
void Pipeline::release_row_buffers() {
  rows_since_trim_ = 0;
  rows_.release();
  chunk_.release();
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

bool Pipeline::outputs_safe() const {
  if (rows_offset_ < rows_.size() || !late_.empty()) return false;
  if (rows_out_.safe_seq() < rows_out_.last_seq()) return false;
  return !late_out_ || late_out_->safe_seq() >= late_out_->last_seq();
}

void Pipeline::on_output_safe() {
  maybe_checkpoint(false);
  if (final_done_) maybe_checkpoint(true);
}

// Commits the held leases with the state, once every row emitted so far is safe. Between
// checkpoints (checkpoint_interval) the leases are held: a crash re-reads them from the state
// before them.
void Pipeline::maybe_checkpoint(bool force) {
  if (!input_.durable()) return;  // nowhere to store state: on_stop = "emit" is the only way out
  if (commit_in_flight_ || (held_.empty() && !dirty_)) return;
  if (!outputs_safe()) return;  // on_output_safe() comes back
  const auto now = std::chrono::steady_clock::now();
  const bool due = force || final_done_ || held_.size() >= kMaxHeldLeases ||
                   now - last_checkpoint_ >= spec_.checkpoint_interval;
  if (!due) {
    if (!checkpoint_timer_.active()) {
      checkpoint_timer_.start(std::chrono::duration_cast<Duration>(spec_.checkpoint_interval -
                                                                   (now - last_checkpoint_)),
                              [this] { maybe_checkpoint(false); });
    }
    return;
  }
  std::string state(kStateMagic);
  const std::uint64_t fingerprint = spec_.query->fingerprint();
  state.append(reinterpret_cast<const char*>(&fingerprint), 8);
  runner_->serialize_state(state);
  commit_in_flight_ = true;
  dirty_ = false;
  last_checkpoint_ = now;
  if (!input_.commit_with_checkpoint(cursor_, held_, key_, std::move(state), *this)) {
    commit_in_flight_ = false;  // cannot happen: the input is durable (checked by the config)
    spdlog::error("pipeline {}: its input channel cannot store checkpoints", spec_.name);
  }
}

void Pipeline::on_committed(std::uint64_t, Status status) noexcept {
  commit_in_flight_ = false;
  if (!status.ok()) {
    spdlog::error("pipeline {}: storing its checkpoint failed: {}", spec_.name, status.message());
  } else {
    checkpoints_.inc();
  }
  if (final_done_) {
    if (held_.empty() && !dirty_) {
      state_ = State::stopped;
      std::exchange(final_done_, nullptr)();
      return;
    }
    maybe_checkpoint(true);
    return;
  }
  pump();
}

void Pipeline::on_idle() {
  // The source sent nothing for idle_timeout: from then on event time is taken to follow the wall
  // clock from the newest event seen (no older event is expected any more, so the delay no longer
  // holds the watermark back), and the last windows close as that time passes their ends.
  if (state_ != State::running) return;
  if (!waiting_data_) {
    // Not waiting for the source but held back (a full output, leases waiting for a checkpoint,
    // a failed read): what the input holds is not read yet, so the source is not idle. The idle
    // time counts from when the pipeline waits for data again.
    last_input_ = std::chrono::steady_clock::now();
    idle_base_ns_ = INT64_MIN;
    restart_idle_timer();
    return;
  }
  if (idle_base_ns_ == INT64_MIN) {
    const std::int64_t wm = runner_->watermark();
    if (wm == INT64_MIN) return;
    idle_base_ns_ = wm + watermark_delay_ns();
  }
  const auto idle = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::steady_clock::now() - last_input_);
  runner_->advance_watermark(idle_base_ns_ + idle.count());
  emit_closed();
  pump();
}

void Pipeline::on_tick() {
  if (state_ != State::running) return;
  runner_->advance_watermark(wall_clock_ns() - watermark_delay_ns());
  emit_closed();
  pump();
}

void Pipeline::stop(std::function<void()> done) {
  stop_done_ = std::move(done);
  tick_timer_.stop();
  idle_timer_.stop();
  checkpoint_timer_.stop();
  if (state_ == State::created) {
    state_ = State::stopped;
    std::exchange(stop_done_, nullptr)();
    return;
  }
  state_ = State::draining;
  empty_takes_ = 0;
  pump();
}

void Pipeline::finish_stop() {
  if (!stop_done_) return;
  if (spec_.on_stop == OnStop::emit && !flushed_) {
    flushed_ = true;
    const std::size_t open = runner_->open_windows();
    const std::size_t waiting = rows_.size() - rows_offset_;
    runner_->flush(rows_, waiting >= kMaxPendingRows ? 0 : kMaxPendingRows - waiting);
    dirty_ = true;
    spdlog::info("pipeline {}: on_stop = \"emit\": {} open windows closed", spec_.name, open);
  }
  for (;;) {
    if (!put_pending()) return;  // on_writable() pumps, which calls back here
    if (!runner_->has_pending_rows() || emit_closed() == 0) break;
  }
  std::exchange(stop_done_, nullptr)();
}

void Pipeline::final_checkpoint(std::function<void()> done) {
  final_done_ = std::move(done);
  if (state_ == State::created || !runner_ || !input_.durable()) {
    if (state_ != State::created) state_ = State::stopped;
    std::exchange(final_done_, nullptr)();
    return;
  }
  if (!commit_in_flight_ && held_.empty() && !dirty_) {
    state_ = State::stopped;
    std::exchange(final_done_, nullptr)();
    return;
  }
  maybe_checkpoint(true);
  if (!commit_in_flight_ && final_done_) {
    spdlog::warn("pipeline {}: rows are not yet safe; the last checkpoint waits for them",
                 spec_.name);
  }
}

void Pipeline::update_gauges() {
  if (!runner_) return;
  state_bytes_.set(static_cast<std::int64_t>(runner_->state_bytes()));
  open_windows_.set(static_cast<std::int64_t>(runner_->open_windows()));
  const std::int64_t wm = runner_->watermark();
  if (wm != INT64_MIN) watermark_lag_ms_.set((wall_clock_ns() - wm) / 1'000'000);
}

}  // namespace sluice

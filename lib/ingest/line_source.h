#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lib/core/batch.h"
#include "lib/core/clock.h"
#include "lib/core/context.h"
#include "lib/core/metrics.h"
#include "lib/core/source_metrics.h"
#include "lib/core/source_output.h"
#include "lib/ingest/line_splitter.h"

namespace sluice::sources {
/// How long a line source parses before it lets the loop serve other work (health checks,
/// other sources); parsing continues on the next turn.
inline constexpr Duration kParseSlice = std::chrono::milliseconds(5);

/// Runs `fn` on a later loop turn, after the loop has polled for I/O: a uv_idle handle, because
/// a 0 ms timer re-armed from its own callback runs again in the same turn (libuv 1.44) and would
/// starve everything else. Re-arming from `fn` is fine. Destroying it cancels it.
class NextTurn {
 public:
  NextTurn(Loop& loop, std::function<void()> fn);
  ~NextTurn();
  NextTurn(const NextTurn&) = delete;
  NextTurn& operator=(const NextTurn&) = delete;
  void arm();
  void cancel();
  bool armed() const noexcept { return armed_; }

 private:
  uv_idle_t* idle_;
  std::function<void()> fn_;
  bool armed_ = false;
};

/// Where a sealed batch leaves its input: the stream (a file, for taildir) and the position a
/// restart may resume from once the batch and every earlier one are safe.
struct LineCheckpoint {
  std::uint64_t stream = 0;
  std::uint64_t generation = 0;  // the stream's generation (bumped when a file is truncated)
  std::uint64_t end = 0;         // byte offset (or line number) after the last record it completes
  /// What a durable channel stores with the batch; empty: nothing (the host's on_sealed sets it).
  std::string position;
  std::string key;
};

/// What a line reader needs from the source that owns the input.
class LineReaderHost {
 public:
  /// The output is saturated: stop reading until resume_reading().
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  /// Every batch up to `seq` is safe (see OutputListener::on_safe).
  virtual void on_safe(std::uint64_t seq) { (void)seq; }
  /// The checkpoint hook, for inputs that can be read again: a batch was sealed with `cp`; set
  /// `cp.position` and `cp.key` for a durable channel to store with it. Called once per batch, and
  /// again if its end moves forward before it is put (records dropped by the pipeline after it).
  virtual void on_sealed(LineCheckpoint& cp) { (void)cp; }
  /// The batch sealed with `cp` was put under sequence `seq`; on_safe(seq) tells when it is safe.
  virtual void on_put(std::uint64_t seq, const LineCheckpoint& cp) {
    (void)seq;
    (void)cp;
  }
  /// The output can take more (after resume_reading(), if the host was paused).
  virtual void on_output_writable() {}

 protected:
  ~LineReaderHost() = default;
};

/// The shared half of a line source: collects the events of its streams into batches of at most
/// the output's transaction size, each from one stream, with that stream's common headers and a
/// checkpoint per batch; puts them, and pauses its host while the output is saturated. Takes the
/// output's listener. Loop thread only.
class LineBatcher final : private OutputListener {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;
  /// `count_at_put`: count events and batch bytes in `metrics` when put (else events when sealed,
  /// and the host counts bytes read).
  LineBatcher(SourceContext& ctx, LineReaderHost& host, SourceMetrics& metrics, bool count_at_put);

  /// The events that follow come from `stream`: seals the batch of another stream or generation.
  /// `headers` (may be null; must stay valid until the next begin) go on each batch as common
  /// headers.
  void begin(std::uint64_t stream, std::uint64_t generation, const Headers* headers);
  /// The batch to add the next event to; a full one is sealed first. The last event added stays
  /// in it until the next call, so its end can still be moved (set_last_end).
  Batch& next();
  /// The event just added completes its input up to `end`.
  void ended(std::uint64_t end) { ends_.push_back(end); }
  /// The last event added completes its input up to `end` after all (the last piece of a line).
  void set_last_end(std::uint64_t end) { ends_.back() = end; }
  /// A record was processed (kept or dropped) up to `end`: the checkpoint moves even if the
  /// pipeline dropped it.
  void processed(std::uint64_t end) {
    if (!has_processed_ || end > processed_) processed_ = end;
    has_processed_ = true;
  }
  std::size_t current_size() const noexcept { return current_.size(); }
  /// The batch being built becomes ready to put.
  void seal();
  /// Puts ready batches while the output takes them; pauses the host when it does not.
  void flush();
  /// True while sealed batches wait for the output: the host must not read.
  bool blocked() const noexcept { return ready_count_ > 0; }
  /// True when nothing waits here and no put is outstanding.
  bool idle() const noexcept { return ready_count_ == 0 && current_.empty() && output_.idle(); }
  /// At stop: forgets the sealed batches not put yet (their input is read again). Returns how many.
  std::size_t drop_ready();

 private:
  struct Ready {
    Batch batch;
    LineCheckpoint cp;
  };
  void seal_into_ready();
  void on_safe(std::uint64_t seq) noexcept override { host_.on_safe(seq); }
  void on_writable() noexcept override;

  SourceOutput& output_;
  LineReaderHost& host_;
  SourceMetrics& metrics_;
  bool count_at_put_;
  std::uint32_t max_batch_;
  Batch current_;
  std::vector<std::uint64_t> ends_;  // per event of current_: the position it completes
  std::uint64_t stream_ = 0, generation_ = 0;
  const Headers* headers_ = nullptr;
  bool fresh_ = true;  // current_ has no headers yet
  std::uint64_t processed_ = 0;
  bool has_processed_ = false;
  std::vector<Ready> ready_;  // ring of sealed batches waiting for the output, oldest first
  std::size_t ready_head_ = 0, ready_count_ = 0;
  bool paused_ = false;
};

/// The per-stream half of a line source: splits one input stream into lines, joins multiline
/// records, runs the pipeline, and adds the events to a LineBatcher with the position each one
/// completes. Positions are byte offsets into the stream (for files: a checkpoint resumes exactly
/// after the last complete line) or line numbers.
class LineStream {
 public:
  enum class Positions : std::uint8_t { lines, bytes };
  /// `pipeline` is shared by the source's streams (null for raw lines) and outlives this. Event
  /// ids mix `id_base` with each record's start position; `start` is where reading begins.
  LineStream(const LineConfig& config, parse::EventPipeline* pipeline, Positions positions,
             std::uint64_t id_base, std::uint64_t start);
  /// Which batches this stream's events go to: `stream` and `generation` tell a source's streams
  /// apart, `headers` (may be null; kept by reference) go on each of its batches.
  void bind(std::uint64_t stream, std::uint64_t generation, const LineBatcher::Headers* headers) {
    stream_ = stream;
    generation_ = generation;
    headers_ = headers;
  }

  /// Adds the lines of `data` (the stream's next bytes) to `out`, whose current stream must be
  /// this one. Bytes after the last newline wait for the next call. With a pipeline, stops
  /// between two lines once `deadline` has passed, so that parsing never holds the loop for long:
  /// returns the bytes consumed, and the caller feeds the rest on a later loop turn.
  std::size_t feed(std::string_view data, LineBatcher& out, std::int64_t now_ns,
                   TimePoint deadline = TimePoint::max());
  /// End of input: the unterminated last line, and what multiline holds back, become events.
  void finish(LineBatcher& out, std::int64_t now_ns);
  /// Multiline: emits the records held back longer than the timeout (or all of them).
  void flush_multiline(LineBatcher& out, std::int64_t now_ns, bool due_only);
  bool holding() const noexcept { return assembler_ && assembler_->holding(); }
  /// The name parse errors are logged with (the file's path).
  void set_origin(std::string origin) { origin_ = std::move(origin); }
  /// Bytes mode: the offset just after the last complete line seen.
  std::uint64_t line_end() const noexcept { return line_end_; }
  /// Lines ended so far (newlines seen), and overflows not yet taken by the caller's metric.
  std::uint64_t lines() const noexcept { return lines_; }
  std::uint64_t take_overflows() noexcept;

 private:
  void deliver(const parse::Record& r, std::uint64_t checkpoint_end, LineBatcher& out,
               std::int64_t now_ns);
  void deliver_all(const std::vector<parse::Record>& records, LineBatcher& out,
                   std::int64_t now_ns);
  void add_line(std::string_view line, std::uint64_t start, std::uint64_t end,
                std::uint64_t raw_end, LineBatcher& out, std::int64_t now_ns);
  void begin(LineBatcher& out) const { out.begin(stream_, generation_, headers_); }

  LineSplitter splitter_;
  parse::EventPipeline* pipeline_;
  std::uint64_t stream_ = 0, generation_ = 0;
  const LineBatcher::Headers* headers_ = nullptr;
  std::optional<parse::LineAssembler> assembler_;
  Positions positions_;
  std::uint64_t id_base_;
  std::uint64_t offset_;    // bytes: offset of the next byte fed
  std::uint64_t line_end_;  // bytes: offset after the last newline; lines: lines seen
  std::uint64_t lines_ = 0;
  std::uint64_t raw_added_ = 0;  // raw events added, to tell whether a segment added any
  std::uint64_t overflows_seen_ = 0;
  std::string origin_;
};

/// A line source's reader for one stream that is not read again (exec, stdin): a LineStream that
/// numbers lines, into its own LineBatcher. Events are stamped with the current time.
class LineReader final : private LineReaderHost {
 public:
  LineReader(SourceContext& ctx, const LineConfig& config, LineReaderHost& host,
             std::unique_ptr<parse::EventPipeline> pipeline);
  /// The pipeline a source passes to its LineReader (fails only on what `check` reports too).
  static Result<std::unique_ptr<parse::EventPipeline>> make_pipeline(const LineConfig& config,
                                                                     const SourceContext& ctx);

  /// Splits `data` (one read) into events stamped with the current time, and puts them.
  void on_bytes(std::string_view data);
  /// End of input: the unterminated last line becomes an event too.
  void on_eof();
  /// True while batches wait for the output: the host must not read.
  bool blocked() const noexcept { return batcher_.blocked() || !backlog_.empty(); }
  /// True when nothing waits here and no put is outstanding.
  bool idle() const noexcept { return batcher_.idle() && !stream_.holding() && backlog_.empty(); }

 private:
  void after_input();
  void on_multiline_timer();
  void parse_backlog();
  void pause_reading() override { host_.pause_reading(); }
  void resume_reading() override {
    if (backlog_.empty()) host_.resume_reading();  // else once the backlog is parsed
  }
  void on_safe(std::uint64_t seq) override { host_.on_safe(seq); }

  LineReaderHost& host_;
  std::unique_ptr<parse::EventPipeline> pipeline_;
  SourceMetrics metrics_;
  LineBatcher batcher_;
  LineStream stream_;
  Timer multiline_timer_;
  // A read whose parsing took longer than a slice: the rest, parsed on later loop turns while
  // the host does not read.
  std::string backlog_;
  std::size_t backlog_used_ = 0;
  NextTurn backlog_turn_;
};

/// A stable 64-bit id: a mix of a source's name hash and a position or sequence.
std::uint64_t event_id(std::uint64_t source_hash, std::uint64_t position) noexcept;
std::uint64_t hash_name(std::string_view name) noexcept;
/// The id base of a source whose sequence restarts with the process (exec, stdin, network
/// sources): the name's hash mixed with a random epoch drawn once per process start and a count of
/// the bases handed out, so that no run (and no rebuilt source) repeats the ids of another. File
/// sources do not use it: their ids name the same bytes across restarts.
std::uint64_t run_id_base(std::string_view name) noexcept;

}  // namespace sluice::sources

#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/core/batch.h"
#include "lib/core/context.h"
#include "lib/core/metrics.h"
#include "lib/core/source_metrics.h"
#include "lib/core/source_output.h"
#include "lib/ingest/line_splitter.h"

namespace sluice::sources {

/// What a LineReader needs from the source that owns the input.
class LineReaderHost {
 public:
  /// The output is saturated: stop reading until resume_reading().
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  /// Every batch up to `seq` is safe (see OutputListener::on_safe).
  virtual void on_safe(std::uint64_t seq) { (void)seq; }

 protected:
  ~LineReaderHost() = default;
};

/// Turns bytes read by a source into line events, batches of at most the output's transaction
/// size, and puts; pauses its host when the output is saturated. Shared by every line source.
class LineReader final : private OutputListener {
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
  bool blocked() const noexcept { return ready_count_ > 0; }
  /// True when nothing waits here and no put is outstanding.
  bool idle() const noexcept {
    return ready_count_ == 0 && current_.empty() && output_.idle() &&
           (!assembler_ || !assembler_->holding());
  }

 private:
  void add_line(std::string_view line);
  void add_records(const std::vector<parse::Record>& records);
  void on_multiline_timer();
  void seal_current();
  void flush_ready();
  void on_safe(std::uint64_t seq) noexcept override { host_.on_safe(seq); }
  void on_writable() noexcept override;

  SourceOutput& output_;
  LineReaderHost& host_;
  LineSplitter splitter_;
  std::uint64_t id_base_;
  std::uint64_t line_seq_ = 0;
  std::int64_t now_ns_ = 0;
  std::uint32_t max_batch_;
  Batch current_;
  std::unique_ptr<parse::EventPipeline> pipeline_;
  std::optional<parse::LineAssembler> assembler_;
  Timer multiline_timer_;
  std::vector<Batch> ready_;  // sealed batches waiting for the output, oldest first
  std::size_t ready_head_ = 0, ready_count_ = 0;
  bool paused_ = false;
  std::uint64_t overflows_seen_ = 0;

  SourceMetrics metrics_;
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

#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/context.h"
#include "lib/core/log.h"
#include "lib/core/result.h"
#include "lib/core/source.h"
#include "lib/core/stop_waiter.h"
#include "lib/ingest/line_source.h"
#include "sources/exec/pipe_holders.h"

namespace sluice::sources {

struct ExecConfig {
  std::vector<std::string> command;  // argv; with shell = true, {"/bin/sh", "-c", TEXT}
  bool shell = false;
  bool restart = false;
  std::chrono::nanoseconds restart_throttle = std::chrono::seconds(10);
  std::chrono::nanoseconds kill_timeout = std::chrono::seconds(5);
  LineConfig lines;
  static std::optional<ExecConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// Runs a command and turns each line of its stdout into an event. stderr lines are logged at
/// warn (rate-limited). With restart = true the command is started again restart_throttle after it
/// exits. Under back-pressure stdout is not read, so the child blocks on its writes.
///
/// The command runs in a process group of its own. A child can outlive the command and keep its
/// output open (`sleep 1000 &`, or a `setsid` daemon): the source reads it until it closes, and
/// reports each such process (log with pid, gauge). On stop, the group and every process that
/// holds the output, in the group or not, get SIGTERM; whatever still holds it after kill_timeout
/// gets SIGKILL, and the output is closed shortly after even if something survived (counted), so
/// that no child can hold the shutdown up. A child that left the group and closed its output is
/// found by a mark in its environment (unless it cleared it) and gets SIGTERM at stop too, but the
/// stop does not wait for it.
class ExecSource final : public Source, private LineReaderHost {
 public:
  ExecSource(const ExecConfig& config, SourceContext& ctx,
             std::unique_ptr<parse::EventPipeline> pipeline = nullptr);
  ~ExecSource() override;
  static Result<std::unique_ptr<ExecSource>> create(const ExecConfig& config, SourceContext& ctx);

  Status start() override;
  void stop(StopCallback on_stopped) override;
  bool finished() const noexcept override { return finished_; }

 private:
  Status spawn();
  void on_child_exit(std::int64_t exit_status, int term_signal);
  void maybe_done();
  /// The processes, other than sluice, that hold the command's open output pipes or carry the mark
  /// of its current run in their environment.
  std::vector<PipeHolder> holders() const;
  std::string describe(const PipeHolder& h) const;
  std::string describe_all(const std::vector<PipeHolder>& processes) const;
  /// Sends `sig` to the command's process group while it can still be ours (the command runs, or a
  /// holder of its output is in it: a group id is not reused while a member lives) and to every
  /// holder outside it; logs each target at `level`.
  void signal_children(int sig, const std::vector<PipeHolder>& targets,
                       spdlog::level::level_enum level);
  void report_leftovers();
  void on_kill_timeout();
  void abandon_output();
  void pause_reading() override;
  void resume_reading() override;
  static void on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* b);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* b);

  ExecConfig config_;
  SourceContext& ctx_;
  LineReader reader_;
  LineSplitter stderr_lines_;
  RateLimiter stderr_limiter_;
  uv_process_t* process_ = nullptr;
  uv_pipe_t* out_ = nullptr;
  uv_pipe_t* err_ = nullptr;
  bool out_open_ = false, err_open_ = false, running_ = false;
  bool reading_paused_ = false;
  bool stopping_ = false, finished_ = false;
  Timer restart_timer_;
  Timer kill_timer_;
  Timer abandon_timer_;
  Timer report_timer_;
  std::uint64_t mark_base_;
  std::uint64_t spawns_ = 0;
  std::string mark_;  // "SLUICE_EXEC_MARK=...", in the environment of the running command
  pid_t pgid_ = 0;
  std::uint64_t started_ = 0;  // the command's start, in /proc's ticks
  ino_t out_ino_ = 0, err_ino_ = 0;
  StopWaiter stop_waiter_;
  char buf_[64 * 1024];
  char err_buf_[4096];
  Counter& restarts_;
  Counter& stderr_lines_total_;
  Gauge& leftover_;
  Counter& killed_;
  Counter& abandoned_;
};

}  // namespace sluice::sources

#include "sources/exec/exec_source.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>

namespace sluice::sources {
namespace {

// After SIGKILL, how long the output may stay open before the source closes it.
constexpr Duration kAbandonGrace = std::chrono::milliseconds(250);
// After the command exits, when to look for what it left running.
constexpr Duration kReportDelay = std::chrono::milliseconds(100);
// The environment variable that marks the processes of one run of a command.
constexpr std::string_view kMarkVariable = "SLUICE_EXEC_MARK";

}  // namespace

std::optional<ExecConfig> ExecConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  ExecConfig c;
  node.optional("shell", c.shell, errors);
  node.mark_known("command");
  if (!node.has("command")) {
    node.error(errors, "missing required key 'command'");
  } else if (c.shell) {
    std::string text;
    if (node.required("command", text, errors)) c.command = {"/bin/sh", "-c", text};
  } else if (node.table().get("command")->is_string()) {
    node.error_at(
        "command", errors,
        "expected an array of strings (argv); set shell = true to run a string through /bin/sh");
  } else if (node.required("command", c.command, errors) && c.command.empty()) {
    node.error_at("command", errors, "must not be empty");
  }
  node.optional("restart", c.restart, errors);
  node.optional(
      "restart_throttle", c.restart_throttle, errors,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(10), std::chrono::hours(24)});
  node.optional(
      "kill_timeout", c.kill_timeout, errors,
      InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(0), std::chrono::minutes(10)});
  LineConfig::parse(node, errors, c.lines);
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{std::move(c)} : std::nullopt;
}

ExecSource::ExecSource(const ExecConfig& config, SourceContext& ctx,
                       std::unique_ptr<parse::EventPipeline> pipeline)
    : config_(config),
      ctx_(ctx),
      reader_(ctx, config.lines, *this, std::move(pipeline)),
      stderr_lines_(config.lines),
      restart_timer_(ctx.loop),
      kill_timer_(ctx.loop),
      abandon_timer_(ctx.loop),
      report_timer_(ctx.loop),
      mark_base_(run_id_base(ctx.name)),
      stop_waiter_(ctx.loop),
      restarts_(ctx.metrics.counter("sluice_source_restarts_total",
                                    "Times the exec command was started again.", ctx.labels())),
      stderr_lines_total_(ctx.metrics.counter("sluice_source_stderr_lines_total",
                                              "Lines the exec command wrote to stderr.",
                                              ctx.labels())),
      leftover_(ctx.metrics.gauge(
          "sluice_source_exec_leftover_processes",
          "Processes the exec command started that still ran after it exited, as last seen.",
          ctx.labels())),
      killed_(ctx.metrics.counter(
          "sluice_source_exec_killed_processes_total",
          "Processes of the exec command that were still running after kill_timeout (SIGKILL).",
          ctx.labels())),
      abandoned_(ctx.metrics.counter(
          "sluice_source_exec_abandoned_outputs_total",
          "Times the command's output was closed while a process still held it after SIGKILL.",
          ctx.labels())) {}

ExecSource::~ExecSource() {
  if (running_ || out_open_ || err_open_) signal_children(SIGKILL, holders(), spdlog::level::warn);
  close_and_delete(process_);
  close_and_delete(out_);
  close_and_delete(err_);
}

Result<std::unique_ptr<ExecSource>> ExecSource::create(const ExecConfig& config,
                                                       SourceContext& ctx) {
  auto pipeline = LineReader::make_pipeline(config.lines, ctx);
  if (!pipeline) return pipeline.error();
  return std::make_unique<ExecSource>(config, ctx, std::move(*pipeline));
}

Status ExecSource::start() { return spawn(); }

Status ExecSource::spawn() {
  close_and_delete(process_);
  close_and_delete(out_);
  close_and_delete(err_);
  process_ = new uv_process_t{};
  out_ = new uv_pipe_t{};
  err_ = new uv_pipe_t{};
  uv_pipe_init(ctx_.loop.uv(), out_, 0);
  uv_pipe_init(ctx_.loop.uv(), err_, 0);
  out_->data = this;
  err_->data = this;
  process_->data = this;

  std::vector<char*> argv;
  for (auto& a : config_.command) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Our environment plus a mark that only this run of the command and its descendants carry, by
  // which holders() finds a daemon that left the group and closed the output.
  mark_ = fmt::format("{}={:016x}.{}", kMarkVariable, mark_base_, ++spawns_);
  std::vector<char*> envp;
  const std::string_view mark_prefix(mark_.data(), kMarkVariable.size() + 1);  // "NAME="
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).substr(0, mark_prefix.size()) != mark_prefix) envp.push_back(*e);
  }
  envp.push_back(mark_.data());
  envp.push_back(nullptr);
  // Plain pipes of our own rather than libuv's socketpairs: both ends of a pipe share one inode,
  // which is how holders() finds every process that still has the command's output open.
  int out_fds[2], err_fds[2];
  if (::pipe2(out_fds, O_CLOEXEC) != 0) {
    return Status::from_uv(-errno, fmt::format("exec {}: pipe", ctx_.name));
  }
  if (::pipe2(err_fds, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(out_fds[0]);
    ::close(out_fds[1]);
    return Status::from_uv(-err, fmt::format("exec {}: pipe", ctx_.name));
  }
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = out_fds[1];
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = err_fds[1];
  uv_process_options_t opts{};
  opts.file = argv[0];
  opts.args = argv.data();
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.env = envp.data();
  // Its own process group, so that stop() reaches the whole pipeline the command started (a shell's
  // children keep the pipe open otherwise) and a terminal's Ctrl-C reaches only sluice.
  opts.flags = UV_PROCESS_DETACHED;
  opts.exit_cb = [](uv_process_t* p, std::int64_t status, int sig) {
    static_cast<ExecSource*>(p->data)->on_child_exit(status, sig);
  };
  const int rc = uv_spawn(ctx_.loop.uv(), process_, &opts);
  ::close(out_fds[1]);  // the child has its copies
  ::close(err_fds[1]);
  if (rc != 0) {
    ::close(out_fds[0]);
    ::close(err_fds[0]);
    Status st =
        Status::from_uv(rc, fmt::format("exec {}: cannot run '{}'", ctx_.name, config_.command[0]));
    // A failed spawn leaves the handle initialised; it must still be closed.
    return st;
  }
  running_ = true;
  out_open_ = err_open_ = true;
  pgid_ = process_->pid;  // UV_PROCESS_DETACHED: setsid(), so the pid is the group (and session) id
  // The command cannot be gone yet: it is reaped on a later loop turn at the earliest.
  started_ = process_start_ticks(pgid_);
  out_ino_ = pipe_inode(out_fds[0]);
  err_ino_ = pipe_inode(err_fds[0]);
  uv_pipe_open(out_, out_fds[0]);
  uv_pipe_open(err_, err_fds[0]);
  spdlog::info("exec {}: started '{}' (pid {})", ctx_.name, fmt::join(config_.command, " "),
               process_->pid);

  auto alloc_err = [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
    auto* self = static_cast<ExecSource*>(h->data);
    *b = uv_buf_init(self->err_buf_, sizeof self->err_buf_);
  };
  uv_read_start(reinterpret_cast<uv_stream_t*>(out_), &ExecSource::on_alloc, &ExecSource::on_read);
  uv_read_start(reinterpret_cast<uv_stream_t*>(err_), alloc_err,
                [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
                  auto* self = static_cast<ExecSource*>(s->data);
                  auto log_line = [self](std::string_view line) {
                    self->stderr_lines_total_.inc();
                    SLUICE_WARN_LIMITED(self->stderr_limiter_, "exec {}: stderr: {}",
                                        self->ctx_.name, log_excerpt(line, 1024));
                  };
                  if (n > 0) {
                    self->stderr_lines_.feed({b->base, static_cast<std::size_t>(n)}, log_line);
                  } else if (n < 0) {
                    uv_read_stop(s);
                    self->stderr_lines_.finish(log_line);
                    self->err_open_ = false;
                    self->maybe_done();
                  }
                });
  reading_paused_ = false;
  if (reader_.blocked()) pause_reading();
  return {};
}

void ExecSource::on_child_exit(std::int64_t exit_status, int term_signal) {
  running_ = false;
  if (term_signal != 0) {
    spdlog::log(stopping_ ? spdlog::level::info : spdlog::level::warn,
                "exec {}: command killed by signal {}", ctx_.name, term_signal);
  } else {
    spdlog::log(exit_status == 0 || stopping_ ? spdlog::level::info : spdlog::level::warn,
                "exec {}: command exited with status {}", ctx_.name, exit_status);
  }
  // Look a little later (the end of the output usually follows the exit) for what the command
  // left behind: the source, a restart and a stop wait for whatever still holds the output.
  report_timer_.start(kReportDelay, [this] { report_leftovers(); });
  maybe_done();
}

void ExecSource::report_leftovers() {
  if (running_) return;  // restarted meanwhile
  const auto left = holders();
  leftover_.set(static_cast<std::int64_t>(left.size()));
  if (left.empty()) return;
  spdlog::warn("exec {}: the command exited, and these processes it started still run: {}",
               ctx_.name, describe_all(left));
}

std::vector<PipeHolder> ExecSource::holders() const {
  std::vector<ino_t> pipes;
  if (out_open_ && out_ino_ != 0) pipes.push_back(out_ino_);
  if (err_open_ && err_ino_ != 0) pipes.push_back(err_ino_);
  return find_command_processes(pipes, mark_, started_);
}

std::string ExecSource::describe(const PipeHolder& h) const {
  return fmt::format("pid {} ({}, {}{})", h.pid, log_excerpt(h.comm, 32),
                     h.pgid == pgid_ ? "in its process group" : "left its process group",
                     h.holds_output ? "" : ", not holding the output");
}

std::string ExecSource::describe_all(const std::vector<PipeHolder>& processes) const {
  std::string names;
  for (const auto& h : processes) names += (names.empty() ? "" : ", ") + describe(h);
  return names;
}

void ExecSource::signal_children(int sig, const std::vector<PipeHolder>& targets,
                                 spdlog::level::level_enum level) {
  const char* name = sig == SIGKILL ? "SIGKILL" : "SIGTERM";
  const bool group_alive =
      running_ || std::any_of(targets.begin(), targets.end(),
                              [&](const PipeHolder& h) { return h.pgid == pgid_; });
  if (group_alive && pgid_ > 0) {
    spdlog::log(level, "exec {}: sending {} to process group {}", ctx_.name, name, pgid_);
    ::kill(-pgid_, sig);
  }
  for (const auto& h : targets) {
    if (h.pgid == pgid_) continue;
    spdlog::log(level, "exec {}: sending {} to {}", ctx_.name, name, describe(h));
    ::kill(h.pid, sig);
  }
}

// Called when the child exited or a pipe closed: once all three happened, restart or finish.
void ExecSource::maybe_done() {
  if (running_ || out_open_ || err_open_) return;
  // What held the output has let go of it; see what still runs.
  if (leftover_.value() > 0) leftover_.set(static_cast<std::int64_t>(holders().size()));
  kill_timer_.stop();
  abandon_timer_.stop();
  if (stopping_) return stop_waiter_.check();
  if (!config_.restart) {
    finished_ = true;
    return;
  }
  restart_timer_.start(config_.restart_throttle, [this] {
    if (stopping_) return;
    restarts_.inc();
    Status st = spawn();
    if (!st.ok()) {
      spdlog::error("exec {}: {}", ctx_.name, st.message());
      running_ = out_open_ = err_open_ = false;
      maybe_done();
    }
  });
}

void ExecSource::pause_reading() {
  reading_paused_ = true;
  if (out_open_) uv_read_stop(reinterpret_cast<uv_stream_t*>(out_));
}

void ExecSource::resume_reading() {
  reading_paused_ = false;
  if (!out_open_) return;
  uv_read_start(reinterpret_cast<uv_stream_t*>(out_), &ExecSource::on_alloc, &ExecSource::on_read);
}

void ExecSource::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* b) {
  auto* self = static_cast<ExecSource*>(h->data);
  *b = uv_buf_init(self->buf_, sizeof self->buf_);
}

void ExecSource::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
  auto* self = static_cast<ExecSource*>(s->data);
  if (n > 0) {
    self->reader_.on_bytes({b->base, static_cast<std::size_t>(n)});
  } else if (n < 0) {
    uv_read_stop(s);
    self->reader_.on_eof();
    self->out_open_ = false;
    self->maybe_done();
  }
}

void ExecSource::stop(StopCallback on_stopped) {
  stopping_ = true;
  restart_timer_.stop();
  report_timer_.stop();
  // Also once the command has exited: a child that holds its output would make the stop wait
  // for it forever, and one that left (setsid, output closed) is still the command's.
  if (pgid_ > 0) {
    const auto targets = holders();
    leftover_.set(static_cast<std::int64_t>(targets.size()));
    if (running_ || !targets.empty()) signal_children(SIGTERM, targets, spdlog::level::info);
  }
  if (running_ || out_open_ || err_open_) {
    kill_timer_.start(config_.kill_timeout, [this] { on_kill_timeout(); });
  }
  // Stopped once the child is gone, its output read to the end, and every put answered.
  stop_waiter_.wait([this] { return !running_ && !out_open_ && !err_open_ && reader_.idle(); },
                    std::move(on_stopped));
}

void ExecSource::on_kill_timeout() {
  if (!running_ && !out_open_ && !err_open_) return;
  const auto left = holders();
  std::string names = describe_all(left);
  if (running_ &&
      std::none_of(left.begin(), left.end(), [&](const PipeHolder& h) { return h.pid == pgid_; })) {
    names = fmt::format("pid {} (the command){}{}", pgid_, names.empty() ? "" : ", ", names);
  }
  spdlog::warn("exec {}: still running after kill_timeout ({}), sending SIGKILL: {}", ctx_.name,
               format_duration(config_.kill_timeout), names.empty() ? "nothing found" : names);
  killed_.inc(std::max<std::size_t>(left.size(), running_ ? 1 : 0));
  signal_children(SIGKILL, left, spdlog::level::debug);
  // SIGKILL ends a process at once, and its end of the pipe with it; what survives it (another
  // user's setuid program, a process stuck in the kernel) must not hold the shutdown up.
  abandon_timer_.start(kAbandonGrace, [this] { abandon_output(); });
}

void ExecSource::abandon_output() {
  if (!out_open_ && !err_open_) return;
  const std::string names = describe_all(holders());
  spdlog::error("exec {}: closing the command's output, still held after SIGKILL by: {}", ctx_.name,
                names.empty() ? "a process sluice cannot see" : names);
  abandoned_.inc();
  if (out_open_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(out_));
    reader_.on_eof();
    out_open_ = false;
  }
  if (err_open_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(err_));
    stderr_lines_.finish([this](std::string_view line) {
      stderr_lines_total_.inc();
      SLUICE_WARN_LIMITED(stderr_limiter_, "exec {}: stderr: {}", ctx_.name,
                          log_excerpt(line, 1024));
    });
    err_open_ = false;
  }
  maybe_done();
}

}  // namespace sluice::sources

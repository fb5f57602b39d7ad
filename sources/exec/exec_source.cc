#include "sources/exec/exec_source.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <csignal>

namespace sluice::sources {

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
      stop_waiter_(ctx.loop),
      restarts_(ctx.metrics.counter("sluice_source_restarts_total",
                                    "Times the exec command was started again.", ctx.labels())),
      stderr_lines_total_(ctx.metrics.counter("sluice_source_stderr_lines_total",
                                              "Lines the exec command wrote to stderr.",
                                              ctx.labels())) {}

ExecSource::~ExecSource() {
  if (process_ != nullptr && running_) ::kill(-process_->pid, SIGKILL);
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
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(out_);
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(err_);
  uv_process_options_t opts{};
  opts.file = argv[0];
  opts.args = argv.data();
  opts.stdio = stdio;
  opts.stdio_count = 3;
  // Its own process group, so that stop() reaches the whole pipeline the command started (a shell's
  // children keep the pipe open otherwise) and a terminal's Ctrl-C reaches only sluice.
  opts.flags = UV_PROCESS_DETACHED;
  opts.exit_cb = [](uv_process_t* p, std::int64_t status, int sig) {
    static_cast<ExecSource*>(p->data)->on_child_exit(status, sig);
  };
  const int rc = uv_spawn(ctx_.loop.uv(), process_, &opts);
  if (rc != 0) {
    Status st =
        Status::from_uv(rc, fmt::format("exec {}: cannot run '{}'", ctx_.name, config_.command[0]));
    // A failed spawn leaves the handle initialised; it must still be closed.
    return st;
  }
  running_ = true;
  out_open_ = err_open_ = true;
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
                                        self->ctx_.name, line);
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
  kill_timer_.stop();
  if (term_signal != 0) {
    spdlog::log(stopping_ ? spdlog::level::info : spdlog::level::warn,
                "exec {}: command killed by signal {}", ctx_.name, term_signal);
  } else {
    spdlog::log(exit_status == 0 || stopping_ ? spdlog::level::info : spdlog::level::warn,
                "exec {}: command exited with status {}", ctx_.name, exit_status);
  }
  maybe_done();
}

// Called when the child exited or a pipe closed: once all three happened, restart or finish.
void ExecSource::maybe_done() {
  if (running_ || out_open_ || err_open_) return;
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
  if (running_) {
    ::kill(-process_->pid, SIGTERM);
    kill_timer_.start(config_.kill_timeout, [this] {
      if (running_) {
        spdlog::warn("exec {}: command did not exit within {}, sending SIGKILL", ctx_.name,
                     format_duration(config_.kill_timeout));
        ::kill(-process_->pid, SIGKILL);
      }
    });
  }
  // Stopped once the child is gone, its output read to the end, and every put answered.
  stop_waiter_.wait([this] { return !running_ && !out_open_ && !err_open_ && reader_.idle(); },
                    std::move(on_stopped));
}

}  // namespace sluice::sources

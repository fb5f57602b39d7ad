#include "sources/stdin/stdin_source.h"

#include <spdlog/spdlog.h>

namespace sluice::sources {

std::optional<StdinConfig> StdinConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  StdinConfig c;
  node.optional("exit_on_eof", c.exit_on_eof, errors);
  LineConfig::parse(node, errors, c.lines);
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{c} : std::nullopt;
}

StdinSource::StdinSource(const StdinConfig& config, SourceContext& ctx,
                         std::unique_ptr<parse::EventPipeline> pipeline)
    : config_(config),
      ctx_(ctx),
      reader_(ctx, config.lines, *this, std::move(pipeline)),
      stop_waiter_(ctx.loop),
      buf_(256 * 1024) {}

StdinSource::~StdinSource() {
  if (file_read_pending_) uv_cancel(reinterpret_cast<uv_req_t*>(&file_req_));
  if (stream_ != nullptr) {
    if (stream_->type == UV_TTY) {
      close_and_delete(reinterpret_cast<uv_tty_t*>(stream_));
    } else {
      close_and_delete(reinterpret_cast<uv_pipe_t*>(stream_));
    }
  }
}

Result<std::unique_ptr<StdinSource>> StdinSource::create(const StdinConfig& config,
                                                         SourceContext& ctx) {
  auto pipeline = LineReader::make_pipeline(config.lines, ctx);
  if (!pipeline) return pipeline.error();
  return std::make_unique<StdinSource>(config, ctx, std::move(*pipeline));
}

Status StdinSource::start() {
  const uv_handle_type kind = uv_guess_handle(0);
  if (kind == UV_FILE) {
    is_file_ = true;
    file_req_.data = this;
    read_file();
    return {};
  }
  if (kind == UV_TTY) {
    auto* tty = new uv_tty_t{};
    const int rc = uv_tty_init(ctx_.loop.uv(), tty, 0, 1);
    if (rc != 0) {
      delete tty;
      return Status::from_uv(rc, "stdin: uv_tty_init");
    }
    stream_ = reinterpret_cast<uv_stream_t*>(tty);
  } else {
    auto* pipe = new uv_pipe_t{};
    uv_pipe_init(ctx_.loop.uv(), pipe, 0);
    const int rc = uv_pipe_open(pipe, 0);
    if (rc != 0) {
      close_and_delete(pipe);
      return Status::from_uv(rc, "stdin: uv_pipe_open");
    }
    stream_ = reinterpret_cast<uv_stream_t*>(pipe);
  }
  stream_->data = this;
  resume_reading();
  return {};
}

void StdinSource::read_file() {
  if (paused_ || eof_ || file_read_pending_) return;
  file_read_pending_ = true;
  uv_buf_t b = uv_buf_init(buf_.data(), static_cast<unsigned>(buf_.size()));
  uv_fs_read(ctx_.loop.uv(), &file_req_, 0, &b, 1, -1, [](uv_fs_t* req) {
    auto* self = static_cast<StdinSource*>(req->data);
    const ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    self->file_read_pending_ = false;
    if (n == UV_ECANCELED) return;
    if (n > 0) {
      self->reader_.on_bytes({self->buf_.data(), static_cast<std::size_t>(n)});
      self->read_file();
      return;
    }
    if (n < 0) spdlog::error("stdin: read failed: {}", uv_strerror(static_cast<int>(n)));
    self->on_eof();
  });
}

void StdinSource::on_eof() {
  reader_.on_eof();
  eof_ = true;
  spdlog::info("stdin {}: end of input", ctx_.name);
  if (config_.exit_on_eof && ctx_.request_shutdown) ctx_.request_shutdown();
  stop_waiter_.check();
}

void StdinSource::pause_reading() {
  paused_ = true;
  if (stream_ != nullptr && !eof_) uv_read_stop(stream_);
}

void StdinSource::resume_reading() {
  paused_ = false;
  if (eof_ || stopping_) return;
  if (is_file_) return read_file();
  uv_read_start(
      stream_,
      [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
        auto* self = static_cast<StdinSource*>(h->data);
        *b = uv_buf_init(self->buf_.data(), static_cast<unsigned>(self->buf_.size()));
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
        auto* self = static_cast<StdinSource*>(s->data);
        if (n > 0) {
          self->reader_.on_bytes({b->base, static_cast<std::size_t>(n)});
        } else if (n < 0) {
          uv_read_stop(s);
          if (n != UV_EOF)
            spdlog::error("stdin: read failed: {}", uv_strerror(static_cast<int>(n)));
          self->on_eof();
        }
      });
}

void StdinSource::stop(StopCallback on_stopped) {
  stopping_ = true;
  // Input not yet read stays unread: the agent stops accepting new input at shutdown.
  if (stream_ != nullptr && !eof_) uv_read_stop(stream_);
  paused_ = true;
  stop_waiter_.wait([this] { return reader_.idle() && !file_read_pending_; },
                    std::move(on_stopped));
}

}  // namespace sluice::sources

#include "lib/deliver/writer_sink.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include "lib/core/assert.h"

namespace sluice::sinks {

Status write_all(int fd, std::string_view data, std::string_view what) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n >= 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1000);
      continue;
    }
    return Status::from_errno(errno, what);
  }
  return {};
}

WriterSink::WriterSink(SinkContext& ctx, OutputFormat format)
    : ctx_(ctx),
      format_(format),
      jobs_(8),
      write_errors_(ctx.metrics.counter("sluice_sink_write_errors_total",
                                        "Failed writes (retried).", ctx.labels())) {
  work_.data = this;
}

WriterSink::~WriterSink() {
  SLUICE_ASSERT(!working_);
  ctx_.loop.cancel_deferred(this);
}

void WriterSink::deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) {
  if (count_ == jobs_.size()) {
    std::vector<Job> bigger(jobs_.size() * 2);
    for (std::size_t i = 0; i < count_; ++i)
      bigger[i] = std::move(jobs_[(head_ + i) % jobs_.size()]);
    jobs_.swap(bigger);
    head_ = 0;
  }
  Job& job = jobs_[(head_ + count_) % jobs_.size()];
  ++count_;
  job.data.clear();
  codec::encode_batch(batch, format_, job.data);
  job.id = id;
  job.done = &done;
  if (!working_) start_next();
}

void WriterSink::start_next() {
  if (count_ == 0) {
    if (on_stopped_) ctx_.loop.defer(&WriterSink::stopped_task, this, 0);
    return;
  }
  working_ = true;
  // The worker owns writing_ and write_result_ until after_cb; deliver() may grow jobs_ meanwhile.
  writing_.swap(jobs_[head_].data);
  write_result_ = Status();
  uv_queue_work(ctx_.loop.uv(), &work_, &WriterSink::work_cb, &WriterSink::after_cb);
}

void WriterSink::work_cb(uv_work_t* req) {
  auto* self = static_cast<WriterSink*>(req->data);
  self->write_result_ = self->write_blocking(self->writing_);
}

void WriterSink::after_cb(uv_work_t* req, int) {
  auto* self = static_cast<WriterSink*>(req->data);
  self->working_ = false;
  Job& job = self->jobs_[self->head_];
  job.data.swap(self->writing_);  // give the buffer's capacity back to the job slot
  self->head_ = (self->head_ + 1) % self->jobs_.size();
  --self->count_;
  DeliveryListener* done = job.done;
  const DeliveryId id = job.id;
  if (self->write_result_.ok()) {
    done->on_delivered(id, DeliveryResult::ok());
  } else {
    self->write_errors_.inc();
    done->on_delivered(id, DeliveryResult::retry(self->write_result_.message()));
  }
  if (!self->working_) self->start_next();
}

void WriterSink::stop(StopCallback on_stopped) {
  on_stopped_ = std::move(on_stopped);
  if (!working_ && count_ == 0) ctx_.loop.defer(&WriterSink::stopped_task, this, 0);
}

void WriterSink::stopped_task(void* self, std::uint64_t) {
  auto* s = static_cast<WriterSink*>(self);
  if (!s->on_stopped_ || s->working_ || s->count_ > 0) return;
  s->close_output();
  auto cb = std::move(s->on_stopped_);
  s->on_stopped_ = nullptr;
  cb();
}

}  // namespace sluice::sinks

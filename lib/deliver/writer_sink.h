#pragma once

#include <uv.h>

#include <string>
#include <vector>

#include "lib/codec/json.h"
#include "lib/core/context.h"
#include "lib/core/sink.h"
#include "lib/core/status.h"

namespace sluice::sinks {

using codec::OutputFormat;

/// A sink that encodes batches on the loop thread and writes them, one at a time and in order, on
/// libuv's threadpool, so that blocking writes and fsync never stall the loop. A failed write
/// answers Retry, so the batch stays in the channel.
class WriterSink : public Sink {
 public:
  WriterSink(SinkContext& ctx, OutputFormat format);
  ~WriterSink() override;
  void deliver(const Batch& batch, DeliveryId id, DeliveryListener& done) override;
  void stop(StopCallback on_stopped) override;

 protected:
  /// Writes `data` (whole lines) durably as configured. Runs on a threadpool thread, never two
  /// at once. Returns a Status that explains a failure.
  virtual Status write_blocking(std::string_view data) = 0;
  /// Runs on the loop thread once every queued write finished, before on_stopped.
  virtual void close_output() {}
  SinkContext& ctx_;

 private:
  struct Job {
    std::string data;
    DeliveryId id;
    DeliveryListener* done = nullptr;
  };
  void start_next();
  static void work_cb(uv_work_t* req);
  static void after_cb(uv_work_t* req, int status);
  static void stopped_task(void* self, std::uint64_t);

  OutputFormat format_;
  std::vector<Job> jobs_;  // ring of queued writes, oldest at head_
  std::size_t head_ = 0, count_ = 0;
  uv_work_t work_{};
  std::string writing_;  // the batch being written on the threadpool
  Status write_result_;
  bool working_ = false;
  StopCallback on_stopped_;
  Counter& write_errors_;
};

/// Writes all of `data` to `fd`, waiting (poll) if the descriptor is non-blocking and full.
Status write_all(int fd, std::string_view data, std::string_view what);

}  // namespace sluice::sinks

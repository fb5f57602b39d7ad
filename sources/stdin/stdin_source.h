#pragma once

#include <uv.h>

#include <memory>
#include <optional>
#include <vector>

#include "lib/config/config_node.h"
#include "lib/core/context.h"
#include "lib/core/result.h"
#include "lib/core/source.h"
#include "lib/core/stop_waiter.h"
#include "lib/ingest/line_source.h"

namespace sluice::sources {

struct StdinConfig {
  /// Shut the agent down gracefully (drain, exit 0) once stdin is closed and read to its end.
  bool exit_on_eof = true;
  LineConfig lines;
  static std::optional<StdinConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// Reads the agent's standard input as lines: a pipe or terminal through a libuv stream, a
/// regular file (`sluice run < file`) through asynchronous file reads.
class StdinSource final : public Source, private LineReaderHost {
 public:
  StdinSource(const StdinConfig& config, SourceContext& ctx,
              std::unique_ptr<parse::EventPipeline> pipeline = nullptr);
  ~StdinSource() override;
  static Result<std::unique_ptr<StdinSource>> create(const StdinConfig& config, SourceContext& ctx);

  Status start() override;
  void stop(StopCallback on_stopped) override;
  bool finished() const noexcept override { return eof_; }

 private:
  void pause_reading() override;
  void resume_reading() override;
  void read_file();
  void on_eof();

  StdinConfig config_;
  SourceContext& ctx_;
  LineReader reader_;
  uv_stream_t* stream_ = nullptr;  // pipe or tty
  uv_fs_t file_req_{};
  bool is_file_ = false, file_read_pending_ = false;
  bool paused_ = false, eof_ = false, stopping_ = false;
  StopWaiter stop_waiter_;
  std::vector<char> buf_;
};

}  // namespace sluice::sources

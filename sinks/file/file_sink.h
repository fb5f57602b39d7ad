#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "lib/config/config_node.h"
#include "lib/core/result.h"
#include "lib/deliver/writer_sink.h"

namespace sluice::sinks {

enum class FsyncPolicy : std::uint8_t { none, batch, roll };

struct FileConfig {
  std::string path;
  OutputFormat format = OutputFormat::body;
  std::optional<ByteSize> roll_bytes;
  std::optional<std::chrono::nanoseconds> roll_interval;
  FsyncPolicy fsync = FsyncPolicy::none;
  static std::optional<FileConfig> parse(const ConfigNode& node, ConfigErrors& errors);
};

/// Appends events to a file, one per line. Rolls (renames the file to PATH.YYYYmmddTHHMMSS[.N]
/// and opens a new one) before a write that would pass roll_bytes, or once roll_interval has passed
/// since the file was opened. fsync: "none", "batch" (before each batch is acknowledged) or "roll".
class FileSink final : public WriterSink {
 public:
  FileSink(const FileConfig& config, SinkContext& ctx, int fd, std::uint64_t size);
  ~FileSink() override;
  static Result<std::unique_ptr<FileSink>> create(const FileConfig& config, SinkContext& ctx);

 private:
  Status write_blocking(std::string_view data) override;
  void close_output() override;
  Status roll();

  FileConfig config_;
  int fd_;
  std::uint64_t size_;
  bool reopen_ = false;  // a roll renamed the file but could not open the new one yet
  std::chrono::steady_clock::time_point opened_;
  Counter& rolls_;
};

}  // namespace sluice::sinks

#include "sinks/file/file_sink.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace sluice::sinks {

std::optional<FileConfig> FileConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  FileConfig c;
  if (node.required("path", c.path, errors) && c.path.empty()) {
    node.error_at("path", errors, "must not be empty");
  }
  node.optional_enum("format", c.format, errors,
                     {{"body", OutputFormat::body}, {"json", OutputFormat::json}});
  ByteSize roll_bytes;
  if (node.has("roll_bytes") &&
      node.optional("roll_bytes", roll_bytes, errors, InRange<ByteSize>{{1024}, {1ULL << 50}})) {
    c.roll_bytes = roll_bytes;
  }
  std::chrono::nanoseconds roll_interval{};
  if (node.has("roll_interval") &&
      node.optional("roll_interval", roll_interval, errors,
                    InRange<std::chrono::nanoseconds>{std::chrono::milliseconds(10),
                                                      std::chrono::hours(24 * 366)})) {
    c.roll_interval = roll_interval;
  }
  node.optional_enum(
      "fsync", c.fsync, errors,
      {{"none", FsyncPolicy::none}, {"batch", FsyncPolicy::batch}, {"roll", FsyncPolicy::roll}});
  node.mark_known("roll_bytes");
  node.mark_known("roll_interval");
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{std::move(c)} : std::nullopt;
}

namespace {
Result<int> open_append(const std::string& path, std::uint64_t& size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return Status::from_errno(errno, fmt::format("cannot open {}", path));
  struct stat st {};
  size = ::fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
  return fd;
}
}  // namespace

FileSink::FileSink(const FileConfig& config, SinkContext& ctx, int fd, std::uint64_t size)
    : WriterSink(ctx, config.format),
      config_(config),
      fd_(fd),
      size_(size),
      opened_(std::chrono::steady_clock::now()),
      rolls_(ctx.metrics.counter("sluice_sink_file_rolls_total", "Files rolled.", ctx.labels())) {}

FileSink::~FileSink() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<FileSink>> FileSink::create(const FileConfig& config, SinkContext& ctx) {
  std::uint64_t size = 0;
  Result<int> fd = open_append(config.path, size);
  if (!fd) return Status(Errc::io, fmt::format("sinks.{}: {}", ctx.name, fd.error().message()));
  return std::make_unique<FileSink>(config, ctx, *fd, size);
}

Status FileSink::roll() {
  if (reopen_) {
    // The rename is done: only the new file is missing.
    std::uint64_t size = 0;
    Result<int> fd = open_append(config_.path, size);
    if (!fd) return fd.error();
    ::close(fd_);
    fd_ = *fd;
    size_ = size;
    opened_ = std::chrono::steady_clock::now();
    reopen_ = false;
    rolls_.inc();
    return {};
  }
  if (config_.fsync != FsyncPolicy::none && ::fsync(fd_) != 0) {
    return Status::from_errno(errno, fmt::format("fsync {}", config_.path));
  }
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
  std::string target = fmt::format("{}.{}", config_.path, stamp);
  for (int n = 1; ::access(target.c_str(), F_OK) == 0; ++n) {
    target = fmt::format("{}.{}.{}", config_.path, stamp, n);
  }
  if (::rename(config_.path.c_str(), target.c_str()) != 0) {
    return Status::from_errno(errno, fmt::format("rename {} to {}", config_.path, target));
  }
  reopen_ = true;
  return roll();
}

Status FileSink::write_blocking(std::string_view data) {
  const bool by_size =
      config_.roll_bytes && size_ > 0 && size_ + data.size() > config_.roll_bytes->bytes;
  const bool by_time = config_.roll_interval && size_ > 0 &&
                       std::chrono::steady_clock::now() - opened_ >= *config_.roll_interval;
  if (by_size || by_time || reopen_) {
    Status st = roll();
    if (!st.ok()) return st;
  }
  // A write or sync that fails part-way (a full disk) takes back what it wrote: the batch is
  // written again whole on retry, so the file holds no torn line and no lines twice. Where the
  // batch began is read from the file (O_APPEND writes at its end), not from size_, which a file
  // truncated by someone else makes too large: cutting to it would pad the file with zeros.
  const off_t began = ::lseek(fd_, 0, SEEK_END);
  auto take_back = [&](Status st) {
    struct stat now {};
    if (began < 0 || ::fstat(fd_, &now) != 0 || now.st_size <= began) return st;
    if (::ftruncate(fd_, began) != 0) {
      return Status(st.code(), fmt::format("{}; and cutting the part written failed: {}",
                                           st.message(), std::strerror(errno)));
    }
    return st;
  };
  Status st = write_all(fd_, data, fmt::format("write {}", config_.path));
  if (!st.ok()) return take_back(st);
  if (config_.fsync == FsyncPolicy::batch && ::fdatasync(fd_) != 0) {
    return take_back(Status::from_errno(errno, fmt::format("fsync {}", config_.path)));
  }
  size_ += data.size();
  return {};
}

void FileSink::close_output() {
  if (fd_ >= 0 && config_.fsync != FsyncPolicy::none) ::fsync(fd_);
}

}  // namespace sluice::sinks

#include "sources/taildir/tail_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace sluice::sources {

TailFile::TailFile(std::uint64_t key_, std::string path_, std::size_t group_,
                   const FileIdentity& id_, std::uint64_t start, std::uint64_t id_base_)
    : key(key_),
      path(std::move(path_)),
      group(group_),
      id(id_),
      read_offset(start),
      safe_offset(start),
      last_activity(std::chrono::steady_clock::now()),
      id_base(id_base_) {}

TailFile::~TailFile() { close(); }

void TailFile::start_reading(const LineConfig& config, parse::EventPipeline* pipeline,
                             std::uint64_t start) {
  stream =
      std::make_unique<LineStream>(config, pipeline, LineStream::Positions::bytes, id_base, start);
  stream->bind(key, generation, &headers);
  stream->set_origin(path);
}

void TailFile::restart(const FileIdentity& new_id, const LineConfig& config,
                       parse::EventPipeline* pipeline, std::string_view first_bytes) {
  read_offset = safe_offset = 0;
  id = new_id;
  head.assign(first_bytes);
  ++generation;
  start_reading(config, pipeline, 0);
}

void TailFile::learn_head(std::string_view data, std::uint32_t fp_bytes) {
  head.assign(data.substr(0, fp_bytes));
  if (head.empty()) return;
  // What was just read is the content, whatever an earlier scan saw (it may have been replaced
  // between the scan and this read): the fingerprint follows it.
  id.fp_len = static_cast<std::uint32_t>(head.size());
  id.fp_hash = hash_name(head);
}

bool TailFile::same_head(std::string_view prefix, std::uint32_t fp_bytes) {
  if (prefix.size() < head.size() || prefix.compare(0, head.size(), head) != 0) return false;
  if (id.fp_len > 0 &&
      (prefix.size() < id.fp_len || hash_name(prefix.substr(0, id.fp_len)) != id.fp_hash)) {
    return false;
  }
  // The same content: bytes once written to an append-only file stay, so the longer prefix is
  // as much this file's as the part compared.
  prefix = prefix.substr(0, fp_bytes);
  if (prefix.size() > head.size()) head.assign(prefix);
  if (head.size() > id.fp_len) {
    id.fp_len = static_cast<std::uint32_t>(head.size());
    id.fp_hash = hash_name(head);
  }
  return true;
}

void TailFile::set_headers(const std::string& file_header,
                           const std::vector<std::pair<std::string, std::string>>& extra) {
  headers.clear();
  if (!file_header.empty()) headers.emplace_back(file_header, path);
  for (const auto& kv : extra) headers.push_back(kv);
  if (stream) stream->set_origin(path);
}

bool TailFile::open_by_name(int& err) {
  const int f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f < 0) {
    err = errno;
    return false;
  }
  struct stat st {};
  if (::fstat(f, &st) != 0 || st.st_dev != id.dev || st.st_ino != id.ino) {
    ::close(f);  // the name now holds another file; the next scan sorts it out
    err = 0;
    return false;
  }
  fd = f;
  closed_for_limit = false;
  return true;
}

void TailFile::close() noexcept {
  if (fd < 0) return;
  ::close(fd);
  fd = -1;
}

bool TailFile::refresh() {
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) return false;
  removed = st.st_nlink == 0;
  size = static_cast<std::uint64_t>(st.st_size);
  return true;
}

std::size_t TailFile::consume(std::string_view data, LineBatcher& out, std::int64_t now_ns,
                              TimePoint deadline, std::uint64_t& lines) {
  const std::uint64_t before = stream->lines();
  const std::size_t used = stream->feed(data, out, now_ns, deadline);
  read_offset += used;
  lines += stream->lines() - before;
  return used;
}

}  // namespace sluice::sources

#include <fcntl.h>
#include <fmt/format.h>
#include <simdjson.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "lib/codec/json.h"
#include "sources/taildir/taildir_source.h"

namespace sluice::sources {

Status save_positions(const std::string& path, const std::vector<SavedPosition>& positions) {
  std::string out = "[\n";
  for (std::size_t i = 0; i < positions.size(); ++i) {
    const auto& p = positions[i];
    out += "{\"path\":\"";
    codec::append_json_string(out, p.path);
    out += fmt::format("\",\"dev\":{},\"ino\":{},\"fp_len\":{},\"fp_hash\":{},\"offset\":{}}}{}\n",
                       static_cast<std::uint64_t>(p.id.dev), static_cast<std::uint64_t>(p.id.ino),
                       p.id.fp_len, p.id.fp_hash, p.offset, i + 1 < positions.size() ? "," : "");
  }
  out += "]\n";
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return Status::from_errno(errno, "open " + tmp);
  std::size_t off = 0;
  while (off < out.size()) {
    const ssize_t n = ::write(fd, out.data() + off, out.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return Status::from_errno(err, "write " + tmp);
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::from_errno(err, "fsync " + tmp);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Status::from_errno(errno, "rename " + tmp);
  // Make the rename itself durable.
  const auto slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

Result<std::vector<SavedPosition>> load_positions(const std::string& path) {
  std::vector<SavedPosition> out;
  if (::access(path.c_str(), F_OK) != 0) return out;  // first start
  simdjson::padded_string json;
  if (simdjson::padded_string::load(path).get(json) != simdjson::SUCCESS) {
    return Status(Errc::io, fmt::format("cannot read positions file {}", path));
  }
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  auto bad = [&](std::string_view why) {
    return Status(
        Errc::invalid_data,
        fmt::format("positions file {} is malformed ({}); move it away to start over", path, why));
  };
  if (parser.iterate(json).get(doc) != simdjson::SUCCESS) return bad("not JSON");
  simdjson::ondemand::array arr;
  if (doc.get_array().get(arr) != simdjson::SUCCESS) return bad("not an array");
  for (auto item : arr) {
    simdjson::ondemand::object obj;
    if (item.get_object().get(obj) != simdjson::SUCCESS) return bad("an entry is not an object");
    SavedPosition p;
    std::string_view file_path;
    std::uint64_t dev = 0, ino = 0, fp_len = 0, fp_hash = 0, offset = 0;
    if (obj["path"].get_string().get(file_path) != simdjson::SUCCESS ||
        obj["dev"].get_uint64().get(dev) != simdjson::SUCCESS ||
        obj["ino"].get_uint64().get(ino) != simdjson::SUCCESS ||
        obj["fp_len"].get_uint64().get(fp_len) != simdjson::SUCCESS ||
        obj["fp_hash"].get_uint64().get(fp_hash) != simdjson::SUCCESS ||
        obj["offset"].get_uint64().get(offset) != simdjson::SUCCESS) {
      return bad("an entry lacks path, dev, ino, fp_len, fp_hash or offset");
    }
    p.path = std::string(file_path);
    p.id = FileIdentity{static_cast<dev_t>(dev), static_cast<ino_t>(ino),
                        static_cast<std::uint32_t>(fp_len), fp_hash};
    p.offset = offset;
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace sluice::sources

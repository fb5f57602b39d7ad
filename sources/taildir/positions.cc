#include "sources/taildir/positions.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <simdjson.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "lib/codec/atomic_file.h"
#include "lib/codec/json.h"

namespace sluice::sources {

std::string encode_positions(const std::vector<SavedPosition>& positions) {
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
  return out;
}

Result<std::vector<SavedPosition>> decode_positions(std::string_view text,
                                                    const std::string& name) {
  std::vector<SavedPosition> out;
  const simdjson::padded_string json(text);
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  auto bad = [&](std::string_view why) {
    return Status(
        Errc::invalid_data,
        fmt::format("positions file {} is malformed ({}); move it away to start over", name, why));
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

Status save_positions(const std::string& path, const std::vector<SavedPosition>& positions) {
  return codec::write_file_atomic(path, encode_positions(positions));
}

Result<std::vector<SavedPosition>> load_positions(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0) return std::vector<SavedPosition>{};  // first start
  simdjson::padded_string json;
  if (simdjson::padded_string::load(path).get(json) != simdjson::SUCCESS) {
    return Status(Errc::io, fmt::format("cannot read positions file {}", path));
  }
  return decode_positions(std::string_view(json.data(), json.size()), path);
}

std::string channel_position_key(const FileIdentity& id) {
  return fmt::format("{}:{}", static_cast<std::uint64_t>(id.dev),
                     static_cast<std::uint64_t>(id.ino));
}

std::string encode_channel_position(const SavedPosition& p) {
  return fmt::format("{} {} {} {} {} ", static_cast<std::uint64_t>(p.id.dev),
                     static_cast<std::uint64_t>(p.id.ino), p.id.fp_len, p.id.fp_hash, p.offset) +
         p.path;
}

std::optional<SavedPosition> decode_channel_position(std::string_view value) {
  const std::string v(value);  // sscanf needs a terminated string
  unsigned long long dev = 0, ino = 0, fp_hash = 0, offset = 0;
  unsigned fp_len = 0;
  int consumed = 0;
  if (std::sscanf(v.c_str(), "%llu %llu %u %llu %llu %n", &dev, &ino, &fp_len, &fp_hash, &offset,
                  &consumed) < 5) {
    return std::nullopt;
  }
  SavedPosition p;
  p.path = v.substr(static_cast<std::size_t>(consumed));
  p.id = FileIdentity{static_cast<dev_t>(dev), static_cast<ino_t>(ino), fp_len, fp_hash};
  p.offset = offset;
  return p;
}

std::vector<SavedPosition> merge_positions(
    std::vector<SavedPosition> from_file,
    const std::vector<std::pair<std::string, std::string>>& from_channel,
    std::vector<std::pair<std::string, std::string>>& malformed) {
  for (const auto& [key, value] : from_channel) {
    auto p = decode_channel_position(value);
    if (!p) {
      malformed.emplace_back(key, value);
      continue;
    }
    std::erase_if(from_file, [&](const SavedPosition& s) {
      return s.id.dev == p->id.dev && s.id.ino == p->id.ino;
    });
    from_file.push_back(std::move(*p));
  }
  return from_file;
}

}  // namespace sluice::sources

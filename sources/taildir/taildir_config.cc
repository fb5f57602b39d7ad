#include "sources/taildir/taildir_config.h"

#include <fmt/format.h>

namespace sluice::sources {

std::optional<TaildirConfig> TaildirConfig::parse(const ConfigNode& node, ConfigErrors& errors) {
  const std::size_t before = errors.size();
  TaildirConfig c;
  auto check_paths = [&](const ConfigNode& n, const std::vector<std::string>& paths) {
    for (const auto& p : paths) {
      if (p.empty() || p.front() != '/') {
        n.error_at("paths", errors, fmt::format("\"{}\" is not an absolute path", p));
      }
    }
  };
  TaildirGroup main;
  main.name = "default";
  if (node.has("paths")) {
    node.optional("paths", main.paths, errors);
    check_paths(node, main.paths);
    if (main.paths.empty()) node.error_at("paths", errors, "must name at least one glob");
  } else {
    node.mark_known("paths");
  }
  if (!main.paths.empty()) c.groups.push_back(std::move(main));
  if (auto groups = node.child("groups", errors)) {
    for (const auto& [k, v] : groups->table()) {
      const std::string name(k.str());
      groups->mark_known(name);
      auto g = groups->child(name, errors);
      if (!g) continue;
      TaildirGroup group;
      group.name = name;
      if (g->required("paths", group.paths, errors)) check_paths(*g, group.paths);
      if (auto headers = g->child("headers", errors)) {
        for (const auto& [hk, hv] : headers->table()) {
          std::string value;
          if (headers->required(hk.str(), value, errors))
            group.headers.emplace_back(std::string(hk.str()), value);
        }
      }
      g->reject_unknown_keys(errors);
      c.groups.push_back(std::move(group));
    }
  }
  if (c.groups.empty() && errors.size() == before) {
    node.error(errors, "missing required key 'paths' (or [groups.NAME] tables with paths)");
  }
  node.optional("exclude", c.exclude, errors);
  std::chrono::nanoseconds older{};
  if (node.has("ignore_older") &&
      node.optional("ignore_older", older, errors,
                    InRange<std::chrono::nanoseconds>{std::chrono::seconds(1),
                                                      std::chrono::hours(24 * 3650)})) {
    c.ignore_older = older;
  }
  node.mark_known("ignore_older");
  node.optional_enum("read_from", c.read_from_tail, errors, {{"head", false}, {"tail", true}});
  node.optional("file_header", c.file_header, errors);
  using std::chrono::milliseconds;
  using ns = std::chrono::nanoseconds;
  node.optional("rescan_interval", c.rescan_interval, errors,
                InRange<ns>{milliseconds(10), std::chrono::hours(1)});
  node.optional("poll_interval", c.poll_interval, errors,
                InRange<ns>{milliseconds(10), std::chrono::minutes(10)});
  node.optional("close_removed_after", c.close_removed_after, errors,
                InRange<ns>{milliseconds(0), std::chrono::hours(24)});
  node.optional("checkpoint_interval", c.checkpoint_interval, errors,
                InRange<ns>{milliseconds(10), std::chrono::minutes(10)});
  node.optional("checkpoint_bytes", c.checkpoint_bytes, errors,
                InRange<ByteSize>{{64ULL << 10}, {1ULL << 40}});
  node.optional("max_open_files", c.max_open_files, errors, InRange<std::uint32_t>{1, 1'000'000});
  node.optional("follow_symlinks", c.follow_symlinks, errors);
  node.optional("fingerprint_bytes", c.fingerprint_bytes, errors,
                InRange<std::uint32_t>{16, 65536});
  node.optional("read_buffer", c.read_buffer, errors, InRange<ByteSize>{{4096}, {64ULL << 20}});
  node.optional("positions_file", c.positions_file, errors);
  LineConfig::parse(node, errors, c.lines);
  node.reject_unknown_keys(errors);
  return errors.size() == before ? std::optional{std::move(c)} : std::nullopt;
}

}  // namespace sluice::sources

#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::sources {

/// Matches an absolute `path` against a glob `pattern`: `*`, `?` and `[...]` within one path
/// segment, and `**` as a whole segment for zero or more segments.
bool glob_match(std::string_view pattern, std::string_view path);

/// The longest leading directory of `pattern` without wildcards ("/var/log" for "/var/log/*.log").
std::string glob_root(std::string_view pattern);

/// True if `pattern` has a wildcard.
bool has_wildcard(std::string_view pattern);

struct WalkLimits {
  bool follow_symlinks = true;
  int max_depth = 16;
};

/// Walks the directories under each pattern's root and calls `found(path, st)` for every regular
/// file (after symlinks, when followed) that matches a pattern and no exclude pattern. Directories
/// that cannot be read are reported once each through `unreadable(path, errno)`, and every
/// directory that was read (the ones a new match can appear in) through `dir_read(path, st)`.
/// Blocking: call it on the threadpool.
void glob_walk(const std::vector<std::string>& patterns, const std::vector<std::string>& excludes,
               const WalkLimits& limits,
               const std::function<void(const std::string&, const struct stat&)>& found,
               const std::function<void(const std::string&, int)>& unreadable,
               const std::function<void(const std::string&, const struct stat&)>& dir_read = {});

/// The nearest existing ancestor of `path` (a glob root that does not exist yet): "/" at worst.
/// Blocking (stat): call it on the threadpool.
std::string existing_ancestor(const std::string& path);

}  // namespace sluice::sources

#include "sources/taildir/glob.h"

#include <dirent.h>
#include <fnmatch.h>

#include <cerrno>
#include <set>

namespace sluice::sources {
namespace {

std::vector<std::string_view> segments(std::string_view p) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < p.size()) {
    while (i < p.size() && p[i] == '/') ++i;
    const std::size_t j = p.find('/', i);
    const std::size_t end = j == std::string_view::npos ? p.size() : j;
    if (end > i) out.push_back(p.substr(i, end - i));
    i = end;
  }
  return out;
}

bool match_segment(std::string_view pattern, std::string_view name) {
  const std::string pat(pattern), str(name);
  return fnmatch(pat.c_str(), str.c_str(), FNM_PERIOD) == 0;
}

bool match(const std::vector<std::string_view>& pat, std::size_t pi,
           const std::vector<std::string_view>& path, std::size_t si) {
  while (pi < pat.size()) {
    if (pat[pi] == "**") {
      // Zero or more segments.
      for (std::size_t k = si; k <= path.size(); ++k) {
        if (match(pat, pi + 1, path, k)) return true;
      }
      return false;
    }
    if (si >= path.size() || !match_segment(pat[pi], path[si])) return false;
    ++pi;
    ++si;
  }
  return si == path.size();
}

}  // namespace

bool has_wildcard(std::string_view pattern) {
  return pattern.find_first_of("*?[") != std::string_view::npos;
}

bool glob_match(std::string_view pattern, std::string_view path) {
  return match(segments(pattern), 0, segments(path), 0);
}

std::string glob_root(std::string_view pattern) {
  std::string root;
  for (auto seg : segments(pattern)) {
    if (has_wildcard(seg)) break;
    root += '/';
    root += seg;
  }
  // A pattern without wildcards names a file: its root is the parent directory.
  if (!has_wildcard(pattern)) {
    const auto slash = root.rfind('/');
    root = slash == 0 || slash == std::string::npos ? "/" : root.substr(0, slash);
  }
  return root.empty() ? "/" : root;
}

void glob_walk(const std::vector<std::string>& patterns, const std::vector<std::string>& excludes,
               const WalkLimits& limits,
               const std::function<void(const std::string&, const struct stat&)>& found,
               const std::function<void(const std::string&, int)>& unreadable,
               const std::function<void(const std::string&, const struct stat&)>& dir_read) {
  std::set<std::string> seen_files;
  auto excluded = [&](const std::string& path) {
    for (const auto& e : excludes) {
      if (glob_match(e, path)) return true;
      // An exclude without a slash matches the file name anywhere ("*.gz").
      if (e.find('/') == std::string::npos) {
        const auto slash = path.rfind('/');
        if (match_segment(e, std::string_view(path).substr(slash + 1))) return true;
      }
    }
    return false;
  };
  for (const auto& pattern : patterns) {
    const auto pat = segments(pattern);
    const bool recursive = pattern.find("**") != std::string::npos;
    const std::string root = glob_root(pattern);
    const std::size_t root_depth = segments(root).size();
    std::set<std::pair<dev_t, ino_t>> seen_dirs;  // symlink loops
    // Depth-first over directories below the root, pruned by the pattern when it has no **.
    std::function<void(const std::string&, std::size_t)> walk = [&](const std::string& dir,
                                                                    std::size_t depth) {
      if (static_cast<int>(depth - root_depth) > limits.max_depth) return;
      DIR* d = opendir(dir.c_str());
      if (d == nullptr) {
        if (errno != ENOENT) unreadable(dir, errno);
        return;
      }
      struct stat dst {};
      if (dir_read && fstat(dirfd(d), &dst) == 0) dir_read(dir, dst);
      std::vector<std::string> subdirs;
      while (dirent* e = readdir(d)) {
        const std::string_view name = e->d_name;
        if (name == "." || name == "..") continue;
        const std::string path = (dir == "/" ? "" : dir) + "/" + std::string(name);
        struct stat st {};
        struct stat lst {};
        if (lstat(path.c_str(), &lst) != 0) continue;
        if (S_ISLNK(lst.st_mode)) {
          if (!limits.follow_symlinks || stat(path.c_str(), &st) != 0) continue;
        } else {
          st = lst;
        }
        if (S_ISDIR(st.st_mode)) {
          if (recursive || (depth + 1 < pat.size() && match_segment(pat[depth], name))) {
            if (seen_dirs.insert({st.st_dev, st.st_ino}).second) subdirs.push_back(path);
          }
          continue;
        }
        if (!S_ISREG(st.st_mode)) continue;
        if (!glob_match(pattern, path) || excluded(path)) continue;
        if (seen_files.insert(path).second) found(path, st);
      }
      closedir(d);
      for (const auto& s : subdirs) walk(s, depth + 1);
    };
    walk(root, root_depth);
  }
}

std::string existing_ancestor(const std::string& path) {
  std::string p = path;
  while (p.size() > 1) {
    const auto slash = p.rfind('/');
    p = slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
    struct stat st {};
    if (stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return p;
  }
  return "/";
}

}  // namespace sluice::sources

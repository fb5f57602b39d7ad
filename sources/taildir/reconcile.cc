#include "sources/taildir/reconcile.h"

#include <algorithm>
#include <set>

namespace sluice::sources {

std::vector<ScanAction> reconcile(const std::vector<Candidate>& found,
                                  const std::vector<KnownFile>& known,
                                  const std::map<std::pair<dev_t, ino_t>, SavedPosition>& saved,
                                  const ReconcileOptions& options, std::uint64_t& next_key) {
  using Kind = ScanAction::Kind;
  std::vector<ScanAction> out;
  // The followed files as this scan leaves them: updated by each action, so that a later found
  // file with the same inode sees what an earlier one did.
  std::vector<KnownFile> files = known;
  std::map<std::pair<dev_t, ino_t>, std::size_t> by_inode;
  for (std::size_t i = 0; i < files.size(); ++i) by_inode[{files[i].id.dev, files[i].id.ino}] = i;
  std::set<std::uint64_t> seen;
  std::set<std::pair<dev_t, ino_t>> used_saved;
  std::set<std::string_view, std::less<>> saved_paths;  // filled at the first new file
  for (std::size_t ci = 0; ci < found.size(); ++ci) {
    const Candidate& c = found[ci];
    const std::pair<dev_t, ino_t> inode{c.id.dev, c.id.ino};
    auto it = by_inode.find(inode);
    if (it != by_inode.end()) {
      KnownFile& f = files[it->second];
      seen.insert(f.key);
      ScanAction a;
      a.key = f.key;
      a.candidate = ci;
      const bool same = f.id.fp_len == 0 || (c.known_hash_valid && c.known_hash == f.id.fp_hash);
      if (same) {
        a.kind = Kind::follow;
        a.renamed = f.path != c.path;
        a.longer_fingerprint = f.id.fp_len < c.id.fp_len && f.id.fp_len < options.fingerprint_bytes;
        if (a.longer_fingerprint) f.id = c.id;
      } else {
        a.kind = Kind::replaced;
        f.id = c.id;
      }
      f.path = c.path;
      out.push_back(a);
      continue;
    }
    if (c.binary) {
      out.push_back({.kind = Kind::skip_binary, .candidate = ci});
      continue;
    }
    std::uint64_t start = 0;
    auto s = used_saved.count(inode) == 0 ? saved.find(inode) : saved.end();
    const bool has_saved =
        s != saved.end() &&
        (s->second.id.fp_len == 0 || (c.known_hash_valid && c.known_hash == s->second.id.fp_hash));
    if (s != saved.end()) used_saved.insert(inode);  // it now holds this file, or another one
    // A file at an inode or under a path the agent was following when it stopped replaced that
    // file while it was stopped: all of it is new, so neither read_from nor ignore_older apply.
    if (saved_paths.empty() && !saved.empty()) {
      for (const auto& [inode_key, pos] : saved) saved_paths.insert(pos.path);
    }
    const bool replaced_saved =
        !has_saved && (s != saved.end() || saved_paths.count(std::string_view(c.path)) > 0);
    if (has_saved) {
      start = s->second.offset <= c.size ? s->second.offset : 0;  // a saved position always wins
    } else if (!replaced_saved) {
      if (options.ignore_older) {
        const auto mtime = std::chrono::system_clock::from_time_t(static_cast<time_t>(c.mtime_s));
        if (options.now - mtime > *options.ignore_older) continue;
      }
      if (options.first_scan && options.read_from_tail) start = c.size;
    }
    ScanAction a{.kind = Kind::open, .key = ++next_key, .candidate = ci, .start = start};
    a.from_saved = has_saved;
    seen.insert(a.key);
    by_inode[inode] = files.size();
    files.push_back({a.key, c.path, c.id});
    out.push_back(a);
  }
  for (const auto& f : known) {
    if (seen.count(f.key) == 0) out.push_back({.kind = Kind::gone, .key = f.key});
  }
  return out;
}

}  // namespace sluice::sources

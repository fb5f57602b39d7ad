#include "channels/lmdb/salvage.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <unordered_set>

#include "channels/lmdb/record_codec.h"
#include "lib/core/batch.h"

namespace sluice::channels {
namespace {

// LMDB 0.9's on-disk layout (lmdb/mdb.c), 64-bit build: a page starts with
//   pgno u64 | pad u16 | flags u16 | lower u16 | upper u16   (overflow pages: pages u32)
// then, on branch and leaf pages, u16 offsets of its nodes up to `lower`. A node is
//   lo u16 | hi u16 | flags u16 | ksize u16 | key | data
// with the data size (leaf) or child page number (branch, flags holding bits 32-47) in lo/hi.
constexpr std::size_t kPageHeader = 16;
constexpr std::size_t kNodeHeader = 8;
constexpr std::uint16_t kBranch = 0x01, kLeaf = 0x02, kOverflow = 0x04, kMeta = 0x08, kLeaf2 = 0x20,
                        kSubPage = 0x40;
constexpr std::uint16_t kBigData = 0x01, kSubData = 0x02, kDupData = 0x04;
constexpr std::uint32_t kMagic = 0xBEEFC0DE;
constexpr std::size_t kDbSize = 48;        // MDB_db
constexpr std::size_t kDbRootOffset = 40;  // md_root inside MDB_db
constexpr int kMaxDepth = 32;

template <class T>
T load(std::string_view image, std::size_t at) {
  T v{};
  std::memcpy(&v, image.data() + at, sizeof(T));
  return v;
}

struct Meta {
  std::uint64_t txnid = 0, main_root = 0;
  std::uint32_t page_size = 0;
  bool ok = false;
};

Meta read_meta(std::string_view image, std::size_t at) {
  Meta m;
  // magic u32 | version u32 | address u64 | mapsize u64 | dbs[2] (48 bytes each) | last_pg | txnid
  const std::size_t body = at + kPageHeader;
  if (image.size() < body + 8 + 8 + 8 + 2 * kDbSize + 16) return m;
  if ((load<std::uint16_t>(image, at + 10) & kMeta) == 0) return m;
  if (load<std::uint32_t>(image, body) != kMagic || load<std::uint32_t>(image, body + 4) != 1) {
    return m;
  }
  m.page_size = load<std::uint32_t>(image, body + 24);  // dbs[FREE].md_pad
  m.main_root = load<std::uint64_t>(image, body + 24 + kDbSize + kDbRootOffset);
  m.txnid = load<std::uint64_t>(image, body + 24 + 2 * kDbSize + 8);
  m.ok = m.page_size >= 512 && m.page_size <= 65536 && (m.page_size & (m.page_size - 1)) == 0;
  return m;
}

struct Entry {
  std::string_view key, value;
};

class Reader {
 public:
  // The last page may be cut short (a truncated file): its nodes that are whole still count.
  Reader(std::string_view image, std::size_t page_size)
      : image_(image),
        psize_(page_size),
        pages_(image.size() / page_size + (image.size() % page_size >= kPageHeader ? 1 : 0)) {}

  std::uint64_t pages() const noexcept { return pages_; }

  // A branch or leaf page whose header is consistent; an empty view otherwise.
  std::string_view page(std::uint64_t pgno, std::uint16_t& flags) const {
    if (pgno < 2 || pgno >= pages_) return {};
    const std::string_view p = image_.substr(pgno * psize_, psize_);
    if (load<std::uint64_t>(p, 0) != pgno) return {};
    flags = load<std::uint16_t>(p, 10);
    if ((flags & (kLeaf2 | kSubPage | kMeta | kOverflow)) != 0) return {};
    if (((flags & kBranch) != 0) == ((flags & kLeaf) != 0)) return {};
    const auto lower = load<std::uint16_t>(p, 12), upper = load<std::uint16_t>(p, 14);
    if (lower < kPageHeader || lower > upper || upper > psize_ || (lower - kPageHeader) % 2 != 0) {
      return {};
    }
    return p;
  }

  // Calls fn(node flags, key, data) for each well-formed node of a page; data of a big value is
  // followed to its overflow pages (and skipped if they do not hold it).
  template <class Fn>
  void nodes(std::string_view p, bool leaf, Fn&& fn) const {
    const auto lower = load<std::uint16_t>(p, 12);
    for (std::size_t i = kPageHeader; i + 2 <= lower && i + 2 <= p.size(); i += 2) {
      const auto off = load<std::uint16_t>(p, i);
      if (off < lower || off + kNodeHeader > p.size()) continue;
      const auto lo = load<std::uint16_t>(p, off), hi = load<std::uint16_t>(p, off + 2);
      const auto nflags = load<std::uint16_t>(p, off + 4);
      const auto ksize = load<std::uint16_t>(p, off + 6);
      const std::size_t key_at = off + kNodeHeader;
      if (key_at + ksize > p.size()) continue;
      const std::string_view key = p.substr(key_at, ksize);
      const std::size_t data_at = key_at + ksize;
      if (!leaf) {
        const std::uint64_t child = lo | (static_cast<std::uint64_t>(hi) << 16) |
                                    (static_cast<std::uint64_t>(nflags) << 32);
        fn(std::uint16_t{0}, key, std::string_view{}, child);
        continue;
      }
      const std::size_t dsize = lo | (static_cast<std::size_t>(hi) << 16);
      if ((nflags & kDupData) != 0) continue;  // sluice opens no DUPSORT database
      std::string_view data;
      if ((nflags & kBigData) != 0) {
        if (data_at + 8 > p.size()) continue;
        data = overflow(load<std::uint64_t>(p, data_at), dsize);
        if (data.data() == nullptr) continue;
      } else {
        if (data_at + dsize > p.size()) continue;
        data = p.substr(data_at, dsize);
      }
      fn(nflags, key, data, std::uint64_t{0});
    }
  }

 private:
  std::string_view overflow(std::uint64_t pgno, std::size_t dsize) const {
    if (pgno < 2 || pgno >= pages_) return {};
    const std::size_t at = pgno * psize_;
    if (load<std::uint64_t>(image_, at) != pgno) return {};
    if ((load<std::uint16_t>(image_, at + 10) & kOverflow) == 0) return {};
    const std::uint64_t n = load<std::uint32_t>(image_, at + 12);
    if (n == 0 || n > pages_ - pgno || kPageHeader + dsize > n * psize_) return {};
    if (dsize > image_.size() - at - kPageHeader) return {};  // cut short
    return image_.substr(at + kPageHeader, dsize);
  }

  std::string_view image_;
  std::size_t psize_;
  std::uint64_t pages_;
};

// Walks the tree under `root`, calling leaf(key, data, node flags) for each leaf node; marks
// every page it reads in `seen` (shared by all walks: a page belongs to one tree).
template <class Fn>
void walk(const Reader& r, std::uint64_t root, std::unordered_set<std::uint64_t>& seen, Fn&& leaf,
          int depth = 0) {
  if (depth > kMaxDepth || !seen.insert(root).second) return;
  std::uint16_t flags = 0;
  const std::string_view p = r.page(root, flags);
  if (p.empty()) return;
  const bool is_leaf = (flags & kLeaf) != 0;
  std::vector<std::uint64_t> children;
  r.nodes(
      p, is_leaf,
      [&](std::uint16_t nflags, std::string_view key, std::string_view data, std::uint64_t child) {
        if (is_leaf) {
          leaf(key, data, nflags);
        } else {
          children.push_back(child);
        }
      });
  for (std::uint64_t c : children) walk(r, c, seen, leaf, depth + 1);
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

}  // namespace

std::string Salvage::summary() const {
  std::uint64_t records = 0, events = 0, below = 0;
  std::string names;
  for (const auto& [name, ch] : channels) {
    records += ch.records.size();
    events += ch.events;
    below += ch.below_cursor;
    if (!ch.records.empty()) names += (names.empty() ? "" : ", ") + name;
  }
  if (!meta_found) return "no LMDB meta page found: nothing could be salvaged";
  return fmt::format(
      "salvaged {} records ({} events{}{}) and {} source checkpoints from {} pages ({} in its "
      "newest tree); {} damaged copies and {} records of no known channel left behind, {} "
      "already delivered skipped",
      records, events, names.empty() ? "" : " of ", names, checkpoints.size(), pages, tree_pages,
      damaged, unattributed, below);
}

Salvage salvage_image(std::string_view image) {
  Salvage out;
  // Page 0 tells the page size; page 1 (its twin) is read at that size, or at the usual ones if
  // page 0 is damaged.
  Meta best = read_meta(image, 0);
  std::vector<std::uint32_t> sizes;
  if (best.ok) sizes.push_back(best.page_size);
  for (std::uint32_t s : {4096u, 8192u, 16384u, 65536u}) {
    if (std::find(sizes.begin(), sizes.end(), s) == sizes.end()) sizes.push_back(s);
  }
  Meta other;
  for (std::uint32_t s : sizes) {
    other = read_meta(image, s);
    if (other.ok && other.page_size == s) break;
    other = {};
  }
  if (!best.ok && !other.ok) return out;
  out.meta_found = true;
  const std::size_t psize = best.ok ? best.page_size : other.page_size;
  if (other.ok && other.page_size != psize) other = {};
  std::vector<Meta> metas;
  if (best.ok) metas.push_back(best);
  if (other.ok) metas.push_back(other);
  std::sort(metas.begin(), metas.end(),
            [](const Meta& a, const Meta& b) { return a.txnid > b.txnid; });
  out.page_size = psize;
  const Reader r(image, psize);
  out.pages = r.pages();

  // 1. The newest tree whose main database is readable.
  std::unordered_set<std::uint64_t> seen;
  std::vector<std::pair<std::string, std::uint64_t>> dbs;  // named databases: name, root
  for (const Meta& m : metas) {
    std::uint16_t flags = 0;
    if (r.page(m.main_root, flags).empty()) continue;
    walk(r, m.main_root, seen, [&](std::string_view key, std::string_view data, std::uint16_t nf) {
      if ((nf & kSubData) != 0 && data.size() == kDbSize) {
        dbs.emplace_back(std::string(key), load<std::uint64_t>(data, kDbRootOffset));
      }
    });
    break;
  }
  std::set<std::string> names;  // channels: databases "c:NAME"
  auto channel_of_db = [](std::string_view db) -> std::string {
    return starts_with(db, "c:") ? std::string(db.substr(2)) : std::string();
  };
  std::vector<Entry> meta_entries;  // trusted: from the newest tree
  std::map<std::string, std::vector<Entry>> tree_records;
  for (const auto& named : dbs) {
    const std::string& db = named.first;  // not a structured binding: the lambda below uses it
    const std::string ch = channel_of_db(db);
    if (!ch.empty()) names.insert(ch);
    // Every named database is walked, so that its pages (quarantined records, pipeline state)
    // are not taken for loose ones below; only the channels' and "meta" are kept.
    walk(r, named.second, seen, [&](std::string_view key, std::string_view data, std::uint16_t) {
      if (db == "meta") {
        meta_entries.push_back({key, data});
      } else if (!ch.empty()) {
        tree_records[ch].push_back({key, data});
      }
    });
  }
  out.tree_pages = seen.size();

  // 2. Every other leaf page: stale copies, and pages of trees cut off from the newest root.
  std::vector<Entry> loose_records, loose_meta;
  for (std::uint64_t pgno = 2; pgno < r.pages(); ++pgno) {
    if (seen.count(pgno) != 0) continue;
    std::uint16_t flags = 0;
    const std::string_view p = r.page(pgno, flags);
    if (p.empty() || (flags & kLeaf) == 0) continue;
    r.nodes(p, true,
            [&](std::uint16_t nf, std::string_view key, std::string_view data, std::uint64_t) {
              if ((nf & kSubData) != 0) {
                const std::string ch = channel_of_db(key);
                if (!ch.empty() && data.size() == kDbSize) names.insert(ch);
              } else if (key.size() == 8 && starts_with(data, "SLR1")) {
                loose_records.push_back({key, data});
              } else if (starts_with(key, "c:") && data.size() == 8) {
                loose_meta.push_back({key, data});
              }
            });
  }

  // 3. Records whose check passes, by channel; a copy found again is skipped.
  Batch scratch_batch;
  std::string scratch;
  struct Found {
    std::string_view record;
    std::uint64_t events;
  };
  std::map<std::string, std::map<std::uint64_t, Found>> found;
  auto verify = [&](const std::string& ch, const Entry& e) {
    auto& mine = found[ch];
    if (e.key.size() != 8 || mine.count(record_seq(e.key)) != 0) return;
    if (!decode_record(e.value, scratch_batch, scratch).ok()) {
      ++out.damaged;
      return;
    }
    mine.emplace(record_seq(e.key), Found{e.value, scratch_batch.size()});
  };
  for (const auto& [ch, entries] : tree_records) {
    for (const Entry& e : entries) verify(ch, e);
  }
  for (const Entry& e : loose_records) {
    if (names.size() == 1) {
      verify(*names.begin(), e);
    } else if (decode_record(e.value, scratch_batch, scratch).ok()) {
      ++out.unattributed;
    } else {
      ++out.damaged;
    }
  }

  // 4. Positions (cursors, next): as the newest tree has them; a key it lacks takes the largest
  // value of the stale copies (positions only grow), ignoring any past the channel's last record
  // (a damaged value must not hide records behind a cursor).
  std::map<std::string, std::map<std::string, std::uint64_t>> trusted, loose;
  auto position = [&](const Entry& e,
                      std::map<std::string, std::map<std::string, std::uint64_t>>& into) {
    for (const std::string& n : names) {
      const std::string prefix = "c:" + n + ":";
      if (!starts_with(e.key, prefix) || e.value.size() != 8) continue;
      const std::string_view what = e.key.substr(prefix.size());
      if (what != "next" && !starts_with(what, "cursor:")) continue;
      const std::uint64_t v = load<std::uint64_t>(e.value, 0);
      const auto& mine = found[n];
      const std::uint64_t last = mine.empty() ? 0 : mine.rbegin()->first;
      if (&into == &loose && v > last + 1) return;
      auto& slot = into[n][std::string(e.key)];
      slot = std::max(slot, v);
      return;
    }
  };
  for (const Entry& e : meta_entries) {
    position(e, trusted);
    if (starts_with(e.key, "src:")) {
      out.checkpoints.emplace_back(std::string(e.key), std::string(e.value));
    }
  }
  for (const Entry& e : loose_meta) position(e, loose);
  for (auto& [n, keys] : loose) {
    for (auto& [key, v] : keys) trusted[n].emplace(key, v);  // only where the tree has none
  }

  // 5. Kept: the records some cursor of their channel has not passed.
  for (auto& [ch, records] : found) {
    SalvagedChannel& c = out.channels[ch];
    c.positions = trusted[ch];
    std::uint64_t low = UINT64_MAX;
    for (const auto& [key, v] : c.positions) {
      if (starts_with(std::string_view(key).substr(ch.size() + 3), "cursor:")) {
        low = std::min(low, v);
      }
    }
    for (const auto& [seq, f] : records) {
      if (low != UINT64_MAX && seq < low) {
        ++c.below_cursor;
        continue;
      }
      c.records.emplace(seq, f.record);
      c.events += f.events;
    }
  }
  return out;
}

int restore_salvage(MDB_env* env, const Salvage& salvage) {
  std::uint64_t bytes = 0;
  for (const auto& [name, ch] : salvage.channels) {
    for (const auto& [seq, rec] : ch.records) bytes += rec.size() + 64;
  }
  MDB_envinfo info{};
  mdb_env_info(env, &info);
  const std::uint64_t want = bytes * 2 + (64ULL << 20);
  if (info.me_mapsize < want) {
    if (const int rc = mdb_env_set_mapsize(env, want); rc != 0) return rc;
  }
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env, nullptr, 0, &txn);
  if (rc != 0) return rc;
  std::uint64_t in_txn = 0;
  // A transaction holds at most a few hundred MiB of dirty pages: commit every 64 MiB.
  auto maybe_commit = [&](std::size_t added) {
    in_txn += added;
    if (in_txn < (64u << 20)) return 0;
    in_txn = 0;
    int r = mdb_txn_commit(txn);
    txn = nullptr;
    if (r == 0) r = mdb_txn_begin(env, nullptr, 0, &txn);
    return r;
  };
  auto put = [&](MDB_dbi dbi, std::string_view k, std::string_view v, unsigned flags) {
    MDB_val key{k.size(), const_cast<char*>(k.data())}, val{v.size(), const_cast<char*>(v.data())};
    return mdb_put(txn, dbi, &key, &val, flags);
  };
  MDB_dbi meta = 0;
  rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta);
  for (const auto& [name, ch] : salvage.channels) {
    if (rc != 0) break;
    MDB_dbi records = 0;
    rc = mdb_dbi_open(txn, ("c:" + name).c_str(), MDB_CREATE, &records);
    std::uint64_t stats[2] = {0, 0};
    for (const auto& [seq, rec] : ch.records) {
      if (rc != 0) break;
      const std::string key = record_key(seq);
      RecordInfo ri;
      peek_record(rec, ri);
      stats[0] += ri.events;
      stats[1] += rec.size();
      rc = put(records, key, rec, MDB_APPEND);
      if (rc == 0) rc = maybe_commit(rec.size());
    }
    for (const auto& [key, v] : ch.positions) {
      if (rc != 0) break;
      rc = put(meta, key, std::string_view(reinterpret_cast<const char*>(&v), 8), 0);
    }
    if (rc == 0) {
      rc = put(meta, "c:" + name + ":stats",
               std::string_view(reinterpret_cast<const char*>(stats), sizeof stats), 0);
    }
  }
  for (const auto& [key, v] : salvage.checkpoints) {
    if (rc != 0) break;
    rc = put(meta, key, v, 0);
  }
  if (rc == 0)
    rc = mdb_txn_commit(txn);
  else if (txn != nullptr)
    mdb_txn_abort(txn);
  // The environment is opened without syncs (its writer thread syncs its rounds): what was
  // salvaged is on disk before anything else happens, since a crash now would find a sound,
  // empty environment and never salvage again.
  if (rc == 0) rc = mdb_env_sync(env, 1);
  return rc;
}

}  // namespace sluice::channels

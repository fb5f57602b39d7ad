#pragma once

#include <bit>
#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "lib/core/batch.h"
#include "sql/aggregates.h"
#include "sql/big_alloc.h"
#include "sql/engine.h"
#include "sql/eval.h"
#include "sql/plan.h"
#include "sql/value.h"

namespace sluice::sql {

/// Open addressing from key bytes to an index, comparing keys in place (no std::string per
/// lookup). The caller keeps the key bytes; the table keeps, per slot, the index and 32 bits of
/// the key's hash, so a lookup reads one slot per probe and the key bytes only on a 32-bit match
/// (one cache miss for the table where a separate hash array made two).
class KeyIndex {
 public:
  /// The index of `key`, or -1.
  template <class GetKey>
  std::int64_t find(std::uint64_t hash, std::string_view key, const GetKey& get) const {
    if (slots_.empty()) return -1;
    const std::size_t mask = slots_.size() - 1;
    const std::uint32_t tag = tag_of(hash);
    for (std::size_t i = tag & mask;; i = (i + 1) & mask) {
      const std::uint64_t s = slots_[i];
      if (s == 0) return -1;
      if (static_cast<std::uint32_t>(s >> 32) == tag) {
        const std::uint32_t idx = static_cast<std::uint32_t>(s) - 1;
        if (get(idx) == key) return idx;
      }
    }
  }
  /// Records index `idx` (= size() before the call) under `hash`.
  void insert(std::uint64_t hash) {
    ++size_;
    if (size_ * 4 > slots_.size() * 3) rehash(size_);
    place(tag_of(hash), static_cast<std::uint32_t>(size_ - 1));
  }
  std::size_t size() const noexcept { return size_; }
  /// Room for `n` indexes without growing.
  void reserve(std::size_t n) {
    if (n * 4 > slots_.size() * 3) rehash(n);
  }
  void clear() noexcept {
    size_ = 0;
    std::fill(slots_.begin(), slots_.end(), std::uint64_t{0});
  }
  std::size_t bytes() const noexcept { return slots_.capacity() * 8; }

 private:
  static std::uint32_t tag_of(std::uint64_t hash) noexcept {
    return static_cast<std::uint32_t>(hash ^ (hash >> 32));
  }
  void place(std::uint32_t tag, std::uint32_t idx) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = tag & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = (std::uint64_t{tag} << 32) | (std::uint64_t{idx} + 1);
  }
  /// At least 16 slots, a power of two, at most 3/4 full with `n` indexes.
  void rehash(std::size_t n) {
    std::size_t cap = slots_.empty() ? 16 : slots_.size() * 2;
    while (n * 4 > cap * 3) cap *= 2;
    std::vector<std::uint64_t, BigAlloc<std::uint64_t>> old(cap, 0);
    old.swap(slots_);
    for (std::uint64_t s : old) {
      if (s != 0) place(static_cast<std::uint32_t>(s >> 32), static_cast<std::uint32_t>(s) - 1);
    }
  }
  std::vector<std::uint64_t, BigAlloc<std::uint64_t>> slots_;
  std::size_t size_ = 0;
};

/// Where a group's key bytes are in the key store's (or the session keys') key string.
struct KeyRef {
  std::uint32_t off;
  std::uint32_t len;
};

/// The group keys of every TUMBLE and HOP window, each stored once: an id per key (its bytes and
/// an index on them), which the windows' tables map to their rows. Windows in a row see mostly the
/// same keys (with a watermark delay two are full at once), and a key stored per window was about
/// a third of a high-cardinality window's memory (~45 of ~140 bytes a group). Keys no window holds
/// any more are dropped by compact().
class KeyStore {
 public:
  /// The id of `key`, added if new (`added`).
  std::uint32_t intern(std::uint64_t hash, std::string_view key, bool& added) {
    const std::int64_t idx = index_.find(
        hash, key, [&](std::size_t k) { return this->key(static_cast<std::uint32_t>(k)); });
    added = idx < 0;
    if (!added) return static_cast<std::uint32_t>(idx);
    refs_.push_back(
        {static_cast<std::uint32_t>(bytes_.size()), static_cast<std::uint32_t>(key.size())});
    bytes_.insert(bytes_.end(), key.begin(), key.end());
    index_.insert(hash);
    return static_cast<std::uint32_t>(refs_.size() - 1);
  }
  std::string_view key(std::uint32_t id) const {
    return {bytes_.data() + refs_[id].off, refs_[id].len};
  }
  std::size_t size() const noexcept { return refs_.size(); }
  std::size_t capacity() const noexcept { return refs_.capacity(); }
  /// What a key costs: its bytes, its ref and about two index slots (charged to a window).
  static std::size_t cost(std::size_t len) noexcept { return len + sizeof(KeyRef) + 16; }
  std::size_t bytes() const noexcept {
    return index_.bytes() + refs_.capacity() * sizeof(KeyRef) + bytes_.capacity();
  }
  /// Keeps the keys with live[id] set, renumbered in order; remap[old id] = new id (or UINT32_MAX).
  /// Gives back the capacity the dropped keys held once it is mostly unused.
  void compact(const std::vector<bool>& live, std::vector<std::uint32_t>& remap);
  void clear() {
    index_ = KeyIndex();
    refs_ = {};
    bytes_ = {};
  }

 private:
  KeyIndex index_;
  std::vector<KeyRef, BigAlloc<KeyRef>> refs_;
  std::vector<char, BigAlloc<char>> bytes_;
};

/// The cells of a window's groups, in blocks: growing never copies, never holds an old and a new
/// array at once, and leaves at most one block partly unused (a doubling vector leaves a quarter
/// of its capacity unused on average, and needs 1.5 times it while it copies). Blocks double from
/// 16 rows to kGroups, so a small window (and max_state_bytes) sees memory in small steps.
class CellBlocks {
 public:
  static constexpr std::size_t kFirst = 16;
  static constexpr std::size_t kGroups = 2048;  // = kFirst << 7

  CellBlocks() = default;
  CellBlocks(const CellBlocks&) = delete;
  CellBlocks& operator=(const CellBlocks&) = delete;
  ~CellBlocks() { release(); }

  /// Row `g` (n words); nullptr when rows have no cells (a query without aggregates).
  Row row(std::size_t g) noexcept {
    if (n_ == 0) return nullptr;
    const std::size_t b = block_of(g);
    return blocks_[b] + (g - block_start(b)) * n_;
  }
  ConstRow row(std::size_t g) const noexcept { return const_cast<CellBlocks*>(this)->row(g); }
  /// Appends a row of `n` zero words (n is the same for every row of a pane) and returns it.
  Row add(std::size_t n) {
    if (rows_ == 0 && n != n_) {
      release();
      n_ = n;
    }
    if (n_ == 0) {
      ++rows_;
      return nullptr;
    }
    if (rows_ == allocated_rows_) {
      const std::size_t rows = block_rows(blocks_.size());
      blocks_.push_back(BigAlloc<std::int64_t>().allocate(rows * n_));
      allocated_rows_ += rows;
    }
    Row r = row(rows_++);
    std::fill(r, r + n_, std::int64_t{0});
    return r;
  }
  std::size_t rows() const noexcept { return rows_; }
  /// Forgets the rows; keeps the blocks for reuse.
  void clear() noexcept { rows_ = 0; }
  std::size_t bytes() const noexcept {
    return allocated_rows_ * n_ * sizeof(std::int64_t) + blocks_.capacity() * sizeof(Row);
  }

 private:
  // Block b holds rows [block_start(b), block_start(b) + block_rows(b)): 16, 16, 32, ..., 1024
  // (2048 rows in blocks 0 to 7), then kGroups each.
  static std::size_t block_of(std::size_t g) noexcept {
    if (g >= kGroups) return 7 + g / kGroups;
    return g < kFirst ? 0 : static_cast<std::size_t>(std::bit_width(g / kFirst));
  }
  static std::size_t block_start(std::size_t b) noexcept {
    if (b == 0) return 0;
    return b <= 7 ? kFirst << (b - 1) : (b - 7) * kGroups;
  }
  static std::size_t block_rows(std::size_t b) noexcept {
    if (b == 0) return kFirst;
    return b <= 7 ? kFirst << (b - 1) : kGroups;
  }
  void release() noexcept {
    for (std::size_t b = 0; b < blocks_.size(); ++b) {
      BigAlloc<std::int64_t>().deallocate(blocks_[b], block_rows(b) * n_);
    }
    blocks_.clear();
    allocated_rows_ = 0;
  }
  std::vector<Row> blocks_;
  std::size_t n_ = 0;  // words per row
  std::size_t rows_ = 0;
  std::size_t allocated_rows_ = 0;
};

/// The groups of one window: per group a key id (the KeyStore's) and a row of cells, and per key
/// id the group's row (dense: 4 bytes per key of the store, where a table of its own with the
/// key bytes took ~45 per group).
struct Pane {
  std::int64_t start = 0;
  std::int64_t end = 0;
  bool closed = false;
  // Large for a high-cardinality GROUP BY: mapped on their own (BigAlloc), returned on close.
  std::vector<std::uint32_t, BigAlloc<std::uint32_t>> key_ids;  // per group
  std::vector<std::uint32_t, BigAlloc<std::uint32_t>> rows;     // per key id: group + 1, 0: none
  CellBlocks cells;                                             // a row of aggregates per group
  SideStore side;
  std::size_t side_bytes = 0;  // tracked growth of `side`
  // KeyStore::cost() of the keys whose newest window this is: each stored key is charged to one
  // window, so state_bytes() counts it once and closing the window (max_state_bytes) uncharges it.
  std::size_t key_bytes = 0;

  std::size_t groups() const noexcept { return key_ids.size(); }
  /// The group of key `id`, or -1.
  std::int64_t group_of(std::uint32_t id) const noexcept {
    return id < rows.size() ? static_cast<std::int64_t>(rows[id]) - 1 : -1;
  }
  std::size_t bytes() const noexcept {
    return sizeof(Pane) + key_ids.capacity() * sizeof(std::uint32_t) +
           rows.capacity() * sizeof(std::uint32_t) + cells.bytes() + side_bytes + key_bytes;
  }
  void reset() {
    key_ids.clear();
    rows.clear();
    cells.clear();
    side.reset();
    side_bytes = side.bytes();  // the capacity kept for reuse still counts
    key_bytes = 0;
    closed = false;
  }
};

/// The engine behind WindowRunner (see engine.h for the semantics).
class WindowOperator {
 public:
  WindowOperator(CompiledQuery query, RunnerOptions options);

  EventOutcome on_event(const EventView& ev);
  std::int64_t watermark() const noexcept { return wm_; }
  void advance_watermark(std::int64_t wm);
  std::size_t emit_closed(Batch& out, std::size_t max_rows);
  bool has_pending_rows() const noexcept {
    return !closed_.empty() || emit_pos_ < closed_sessions_.size();
  }
  std::size_t flush(Batch& out, std::size_t max_rows);
  std::size_t state_bytes() const noexcept {
    // The key store's bytes beyond what its keys are charged to windows (capacity, index slack).
    const std::size_t store = keys_.bytes();
    return open_bytes_ + closed_bytes_ + (store > key_charged_ ? store - key_charged_ : 0);
  }
  std::size_t open_windows() const noexcept;
  const RunnerStats& stats() const noexcept { return stats_; }
  const std::string& last_bad_state() const noexcept { return bad_state_; }
  void serialize_state(std::string& out) const;
  Status restore_state(std::string_view data);

 private:
  struct Session {
    std::int64_t start = 0, end = 0;  // end = last event time + gap
    std::uint32_t key = 0;            // index into session keys
    std::uint32_t version = 0;
    bool alive = false, closed = false;
    std::vector<std::int64_t> cells;  // a Row
    SideStore side;
    std::size_t side_bytes = 0;
    std::size_t bytes() const noexcept {
      return sizeof(Session) + cells.capacity() * sizeof(std::int64_t) + side_bytes;
    }
  };
  struct SessionKey {
    std::vector<std::uint32_t> open;  // open sessions of this key
  };
  struct HeapEntry {
    std::int64_t end;
    std::uint32_t id;
    std::uint32_t version;
    bool operator>(const HeapEntry& o) const noexcept { return end > o.end; }
  };

  bool load_slots(const EventView& ev);
  /// MERGE: decodes every MERGE argument into decoded_ and checks it fits window `start`;
  /// false (with bad_state_ set) if one does not.
  bool decode_partials(std::int64_t start, std::int64_t end);
  void learn_merge_kinds();
  std::optional<std::int64_t> event_time(const EventView& ev);
  void build_key();
  void eval_args();
  Pane* pane_for(std::int64_t start);
  /// Adds key key_id_ to `p` as a new group (its row initialised); returns the group.
  std::size_t add_group(Pane& p);
  /// Drops the keys no pane holds once they are most of the store.
  void maybe_compact_keys();
  std::string_view key_of(const Pane& p, std::size_t g) const { return keys_.key(p.key_ids[g]); }
  void reserve_like_last(Pane& p) const;
  void fold(Pane& p);
  bool on_session_event(std::int64_t t);
  void raise_watermark(std::int64_t wm);
  void close_ready();
  void enforce_bound();
  /// false when HAVING dropped the row.
  bool emit_row(ConstRow cells, const SideStore& side, std::string_view key, std::int64_t start,
                std::int64_t end, Batch& out);
  void decode_key(std::string_view key, Value* out) const;
  bool valid_key(std::string_view key) const;  // what build_key() makes, for plan_.keys
  std::uint32_t session_key_index(std::uint64_t hash);
  std::uint32_t new_session();
  void free_session(std::uint32_t id);
  void clear_state();
  void compact_session_keys();

  CompiledQuery query_;
  const QueryPlan& plan_;
  RunnerOptions options_;
  Aggregates aggs_;
  std::int64_t delay_ = 0;
  std::int64_t lateness_ = 0;
  int time_slot_ = -1;
  std::optional<parse::TimeFormat> time_format_;
  parse::TimeFormat::SecondCache time_cache_;  // for time_format_

  // Per-event scratch, reused (no allocation once warm).
  std::vector<Value> slots_;
  std::vector<std::string> slot_names_;  // the field each slot reads
  std::vector<FieldType> slot_raw_type_;
  std::vector<std::string_view> slot_raw_;
  std::vector<std::uint32_t> slot_hint_;
  std::vector<Value> key_values_;
  std::vector<Value> args_;
  std::vector<Value> agg_out_;
  std::string key_buf_;
  std::uint64_t key_hash_ = 0;
  std::int64_t event_time_ = 0;
  Arena arena_;
  // PARTIAL and MERGE.
  std::vector<DecodedPartial> decoded_;
  std::vector<std::uint8_t> merge_kind_;  // per aggregate: partial_code of its states, 0: none yet
  std::string partial_bytes_;
  std::string bad_state_;
  RowScratch scratch_;
  std::string body_;
  std::string text_;

  std::int64_t wm_ = INT64_MIN;
  std::int64_t max_time_ = INT64_MIN;
  RunnerStats stats_;
  std::size_t open_bytes_ = 0;
  std::size_t closed_bytes_ = 0;
  // The size of the last window closed: a fresh pane reserves for as many groups and key bytes,
  // so a high-cardinality window neither doubles its vectors (a copy, and half of the capacity
  // unused on average) nor holds the slack.
  std::size_t last_groups_ = 0;

  // TUMBLE and HOP: the group keys of every pane; key_charged_ = the sum of the panes' key_bytes.
  KeyStore keys_;
  std::size_t key_charged_ = 0;
  std::uint32_t key_id_ = 0;    // the current event's key
  bool key_added_ = false;      // ... new to the store with this event (until its first pane)
  std::vector<bool> key_live_;  // maybe_compact_keys() scratch
  std::vector<std::uint32_t> key_remap_;

  // TUMBLE and HOP: open panes by start, closed panes waiting for emit_closed, a pool.
  std::vector<std::unique_ptr<Pane>> open_;
  std::vector<std::unique_ptr<Pane>> closed_;
  std::vector<std::unique_ptr<Pane>> pool_;
  std::size_t emit_pos_ = 0;      // next group of closed_.front(), or next of closed_sessions_
  bool sessions_sorted_ = false;  // closed_sessions_[emit_pos_..] are in emission order

  // SESSION: keys (bytes + index), sessions in a slab, a min-heap of session ends.
  KeyIndex skey_index_;
  std::vector<KeyRef> skey_refs_;
  std::string skeys_;
  std::vector<SessionKey> skey_;
  std::vector<Session> sessions_;
  std::vector<std::uint32_t> free_sessions_;
  std::vector<std::uint32_t> closed_sessions_;
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<HeapEntry>> heap_;
  std::size_t open_sessions_ = 0;
};

}  // namespace sluice::sql

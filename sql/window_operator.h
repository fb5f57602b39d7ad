#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "lib/core/batch.h"
#include "sql/aggregates.h"
#include "sql/engine.h"
#include "sql/eval.h"
#include "sql/plan.h"
#include "sql/value.h"

namespace sluice::sql {

/// Open addressing from key bytes to an index, comparing keys in place (no std::string per
/// lookup). The caller keeps the key bytes; the table keeps hashes and indexes.
class KeyIndex {
 public:
  struct Entry {
    std::uint64_t hash;
    std::uint32_t off;
    std::uint32_t len;
  };
  /// The index of `key`, or -1.
  template <class GetKey>
  std::int64_t find(std::uint64_t hash, std::string_view key, const GetKey& get) const {
    if (slots_.empty()) return -1;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = hash & mask;; i = (i + 1) & mask) {
      const std::uint32_t s = slots_[i];
      if (s == 0) return -1;
      const std::uint32_t idx = s - 1;
      if (hashes_[idx] == hash && get(idx) == key) return idx;
    }
  }
  /// Records index `idx` (= size() before the call) under `hash`.
  void insert(std::uint64_t hash) {
    hashes_.push_back(hash);
    if ((hashes_.size()) * 4 > slots_.size() * 3) {
      grow();
    } else {
      place(hash, static_cast<std::uint32_t>(hashes_.size() - 1));
    }
  }
  std::size_t size() const noexcept { return hashes_.size(); }
  void clear() noexcept {
    hashes_.clear();
    std::fill(slots_.begin(), slots_.end(), 0u);
  }
  std::size_t bytes() const noexcept { return slots_.capacity() * 4 + hashes_.capacity() * 8; }
  std::uint64_t hash(std::size_t idx) const { return hashes_[idx]; }

 private:
  void place(std::uint64_t hash, std::uint32_t idx) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = hash & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = idx + 1;
  }
  void grow() {
    std::size_t n = slots_.empty() ? 16 : slots_.size() * 2;
    while (hashes_.size() * 4 > n * 3) n *= 2;
    slots_.assign(n, 0u);
    for (std::size_t i = 0; i < hashes_.size(); ++i)
      place(hashes_[i], static_cast<std::uint32_t>(i));
  }
  std::vector<std::uint32_t> slots_;
  std::vector<std::uint64_t> hashes_;
};

/// The groups of one window: key bytes, a key index and a row of cells per group.
struct Pane {
  std::int64_t start = 0;
  std::int64_t end = 0;
  bool closed = false;
  KeyIndex index;
  std::vector<std::uint32_t> key_off;  // per group; key bytes in `keys`
  std::vector<std::uint32_t> key_len;
  std::string keys;
  std::vector<Cell> cells;  // groups * aggregates
  SideStore side;
  std::size_t side_bytes = 0;  // tracked growth of `side`

  std::size_t groups() const noexcept { return key_off.size(); }
  std::string_view key(std::size_t g) const { return {keys.data() + key_off[g], key_len[g]}; }
  std::size_t bytes() const noexcept {
    return sizeof(Pane) + index.bytes() + key_off.capacity() * 8 + keys.capacity() +
           cells.capacity() * sizeof(Cell) + side_bytes;
  }
  void reset() {
    index.clear();
    key_off.clear();
    key_len.clear();
    keys.clear();
    cells.clear();
    side.reset();
    side_bytes = side.bytes();  // the capacity kept for reuse still counts
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
  std::size_t state_bytes() const noexcept { return open_bytes_ + closed_bytes_; }
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
    std::vector<Cell> cells;
    SideStore side;
    std::size_t side_bytes = 0;
    std::size_t bytes() const noexcept {
      return sizeof(Session) + cells.capacity() * sizeof(Cell) + side_bytes;
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
  void fold(Pane& p);
  bool on_session_event(std::int64_t t);
  void raise_watermark(std::int64_t wm);
  void close_ready();
  void enforce_bound();
  /// false when HAVING dropped the row.
  bool emit_row(const Cell* cells, const SideStore& side, std::string_view key, std::int64_t start,
                std::int64_t end, Batch& out);
  void decode_key(std::string_view key, Value* out) const;
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

  // Per-event scratch, reused (no allocation once warm).
  std::vector<Value> slots_;
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

  // TUMBLE and HOP: open panes by start, closed panes waiting for emit_closed, a pool.
  std::vector<std::unique_ptr<Pane>> open_;
  std::vector<std::unique_ptr<Pane>> closed_;
  std::vector<std::unique_ptr<Pane>> pool_;
  std::size_t emit_pos_ = 0;      // next group of closed_.front(), or next of closed_sessions_
  bool sessions_sorted_ = false;  // closed_sessions_[emit_pos_..] are in emission order

  // SESSION: keys (bytes + index), sessions in a slab, a min-heap of session ends.
  KeyIndex skey_index_;
  std::vector<std::uint32_t> skey_off_, skey_len_;
  std::string skeys_;
  std::vector<SessionKey> skey_;
  std::vector<Session> sessions_;
  std::vector<std::uint32_t> free_sessions_;
  std::vector<std::uint32_t> closed_sessions_;
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<HeapEntry>> heap_;
  std::size_t open_sessions_ = 0;
};

}  // namespace sluice::sql

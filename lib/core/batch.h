#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/core/assert.h"

namespace sluice {

struct Header {
  std::string_view key;
  std::string_view value;
};

/// `json`: an object or array kept as its JSON text.
enum class FieldType : std::uint8_t { string, integer, floating, boolean, null, json };

/// A parsed value; `text` is its textual form (a JSON number's digits, a string's unescaped bytes).
struct Field {
  std::string_view key;
  std::string_view text;
  FieldType type;
};

class Batch;

/// a == b, inline for the short keys and values of events (a call into memcmp costs more than
/// comparing them). Reads nothing outside either view.
inline bool same_bytes(std::string_view a, std::string_view b) noexcept {
  const std::size_t n = a.size();
  if (n != b.size()) return false;
  const char* p = a.data();
  const char* q = b.data();
  if (n > 16) return std::memcmp(p, q, n) == 0;
  if (n >= 8) {
    std::uint64_t x0, x1, y0, y1;
    std::memcpy(&x0, p, 8);
    std::memcpy(&y0, q, 8);
    std::memcpy(&x1, p + n - 8, 8);
    std::memcpy(&y1, q + n - 8, 8);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  if (n >= 4) {
    std::uint32_t x0, x1, y0, y1;
    std::memcpy(&x0, p, 4);
    std::memcpy(&y0, q, 4);
    std::memcpy(&x1, p + n - 4, 4);
    std::memcpy(&y1, q + n - 4, 4);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] != q[i]) return false;
  }
  return true;
}

/// A view of one event inside a Batch. Valid until the batch is cleared or appended to.
class EventView {
 public:
  EventView(const Batch* batch, std::size_t index) : batch_(batch), index_(index) {}
  std::string_view body() const;
  std::int64_t timestamp_ns() const;
  std::uint64_t id() const;
  std::uint8_t flags() const;
  /// Bytes this event holds, what it accounts for in channel bounds: its body, and the keys and
  /// values of its headers and fields except those that are parts of the body (add_event).
  std::uint32_t bytes() const;
  std::size_t header_count() const;
  Header header(std::size_t i) const;
  std::optional<std::string_view> header(std::string_view key) const;
  std::size_t field_count() const;
  Field field(std::size_t i) const;
  /// True, with field `i`'s text and type, if its key is `key`: a lookup's test without building
  /// a Field (returned through memory, whose wide reload of narrow stores stalls a hot loop).
  bool field_if(std::size_t i, std::string_view key, std::string_view& text, FieldType& type) const;

 private:
  const Batch* batch_;
  std::size_t index_;
};

/// Events in one byte arena plus an index. Events are appended and read, never edited in place;
/// clear() keeps capacity, so a warm Batch reused for the same traffic does not allocate.
class Batch {
 public:
  /// Appends an event; add_header()/add_field() then apply to this last event.
  void add(std::string_view body, std::int64_t timestamp_ns, std::uint64_t id) {
    Rec r{};
    r.arena_begin = static_cast<std::uint32_t>(arena_.size());
    r.body_off = r.arena_begin;
    r.body_len = static_cast<std::uint32_t>(body.size());
    r.kv_begin = static_cast<std::uint32_t>(kvs_.size());
    r.timestamp_ns = timestamp_ns;
    r.id = id;
    append_bytes(body);
    r.arena_end = static_cast<std::uint32_t>(arena_.size());
    recs_.push_back(r);
    bytes_ += body.size();
  }
  void add_header(std::string_view key, std::string_view value) { add_kv(key, value, kHeader); }
  /// Per-event routing marks, seen only inside the agent (channels do not store them).
  static constexpr std::uint8_t kDeadLetter = 1;
  void set_flags(std::uint8_t flags) {
    SLUICE_ASSERT(!recs_.empty());
    recs_.back().flags |= flags;
  }
  /// True if any event carries one of `flags`.
  bool any_flagged(std::uint8_t flags) const noexcept {
    for (const auto& r : recs_) {
      if ((r.flags & flags) != 0) return true;
    }
    return false;
  }
  /// A header that every event of this batch has (a source's file path, static headers): stored
  /// once, seen by EventView::header() after the event's own headers. A batch with common headers
  /// only takes events (append_range) from a batch with the same common headers, or when empty.
  void set_common_header(std::string_view key, std::string_view value);
  std::size_t common_header_count() const noexcept { return common_count_; }
  /// True if both batches carry the same common headers.
  bool same_common_headers(const Batch& other) const noexcept;
  void add_field(std::string_view key, std::string_view text, FieldType type) {
    add_kv(key, text, static_cast<std::uint8_t>(type));
  }
  /// add(), then add_header() for each header and add_field() for each field, with one size
  /// check of the buffers: what a parsing source does for every event. A field key or value
  /// that is a part of `body`, or of `body_copy` (a copy of the body, body.size() bytes, that a
  /// parser read), is not copied: it is kept as that range of the event's body.
  void add_event(std::string_view body, std::int64_t timestamp_ns, std::uint64_t id,
                 const Header* headers, std::size_t header_count, const Field* fields,
                 std::size_t field_count, const char* body_copy = nullptr);
  /// Copies events [begin, end) of `other` to the end of this batch: one copy of their bytes.
  void append_range(const Batch& other, std::size_t begin, std::size_t end);

  std::size_t size() const noexcept { return recs_.size(); }
  bool empty() const noexcept { return recs_.empty(); }
  /// Sum of EventView::bytes() over all events.
  std::uint64_t bytes() const noexcept { return bytes_; }
  /// Bytes of events [begin, end).
  std::uint64_t bytes(std::size_t begin, std::size_t end) const noexcept;
  EventView operator[](std::size_t i) const noexcept { return EventView(this, i); }
  void clear() noexcept {
    arena_.clear();
    recs_.clear();
    kvs_.clear();
    bytes_ = 0;
    common_count_ = 0;  // the strings keep their capacity
  }
  void swap(Batch& other) noexcept {
    arena_.swap(other.arena_);
    recs_.swap(other.recs_);
    kvs_.swap(other.kvs_);
    std::swap(bytes_, other.bytes_);
    common_.swap(other.common_);
    std::swap(common_count_, other.common_count_);
  }
  void reserve(std::size_t events, std::size_t bytes) {
    recs_.reserve(events);
    arena_.reserve(bytes);
  }
  /// Heap bytes held by the buffers (what clear() keeps for reuse).
  std::size_t capacity_bytes() const noexcept {
    return arena_.capacity() + recs_.capacity() * sizeof(Rec) + kvs_.capacity() * sizeof(Kv);
  }
  /// Empties the batch and frees its buffers: for a recycled batch that once held an unusually
  /// large request, so that its memory is not kept while traffic is small or idle.
  void release() noexcept {
    Bytes().swap(arena_);
    Records<Rec>().swap(recs_);
    Records<Kv>().swap(kvs_);
    bytes_ = 0;
    common_count_ = 0;
  }

 private:
  friend class EventView;
  static constexpr std::uint8_t kHeader = 0xff;
  struct Rec {
    std::uint32_t arena_begin, arena_end;  // every byte of this event lies in [begin, end)
    std::uint32_t body_off, body_len;
    std::uint32_t kv_begin;
    std::uint16_t header_count, field_count;
    std::uint8_t flags;
    std::int64_t timestamp_ns;
    std::uint64_t id;
  };
  struct Kv {
    std::uint32_t key_off, key_len, value_off, value_len;
    std::uint8_t kind;  // kHeader, or a FieldType
  };
  /// The arena: a byte vector that appends without zero-filling first and grows by doubling
  /// (std::vector<char>::insert of a range was a tenth of the cost of parsing a JSON line).
  class Bytes {
   public:
    Bytes() = default;
    Bytes(const Bytes& o) { append(o.data_, o.size_); }
    Bytes& operator=(const Bytes& o) {
      if (this != &o) {
        size_ = 0;
        append(o.data_, o.size_);
      }
      return *this;
    }
    Bytes(Bytes&& o) noexcept { swap(o); }
    Bytes& operator=(Bytes&& o) noexcept {
      Bytes(std::move(o)).swap(*this);
      return *this;
    }
    ~Bytes() { ::operator delete(data_); }
    void swap(Bytes& o) noexcept {
      std::swap(data_, o.data_);
      std::swap(size_, o.size_);
      std::swap(cap_, o.cap_);
    }
    std::size_t size() const noexcept { return size_; }
    std::size_t capacity() const noexcept { return cap_; }
    const char* data() const noexcept { return data_; }
    void clear() noexcept { size_ = 0; }
    void reserve(std::size_t n) {
      if (n > cap_) grow_to(n);
    }
    /// Room for `n` more bytes; the caller writes them with put().
    void make_room(std::size_t n) {
      if (cap_ - size_ < n) grow_to(std::max(size_ + n, cap_ * 2));
    }
    /// Appends `n` bytes that make_room() made room for.
    void put(const char* p, std::size_t n) noexcept {
      char* const dst = data_ + size_;
      size_ += n;
      // Keys and short values (most of an event's pieces): overlapping moves inline instead of a
      // call into memcpy. Nothing is read outside [p, p + n); p may be null when n is 0.
      if (n > 16) {
        std::memcpy(dst, p, n);
      } else if (n >= 8) {
        std::uint64_t a, b;
        std::memcpy(&a, p, 8);
        std::memcpy(&b, p + n - 8, 8);
        std::memcpy(dst, &a, 8);
        std::memcpy(dst + n - 8, &b, 8);
      } else if (n >= 4) {
        std::uint32_t a, b;
        std::memcpy(&a, p, 4);
        std::memcpy(&b, p + n - 4, 4);
        std::memcpy(dst, &a, 4);
        std::memcpy(dst + n - 4, &b, 4);
      } else if (n > 0) {
        dst[0] = p[0];
        dst[n / 2] = p[n / 2];
        dst[n - 1] = p[n - 1];
      }
    }
    void append(const char* p, std::size_t n) {
      make_room(n);
      put(p, n);
    }

   private:
    void grow_to(std::size_t cap) {
      cap = std::max<std::size_t>(cap, 256);
      char* next = static_cast<char*>(::operator new(cap));
      if (size_ != 0) std::memcpy(next, data_, size_);
      ::operator delete(data_);
      data_ = next;
      cap_ = cap;
    }
    char* data_ = nullptr;
    std::size_t size_ = 0, cap_ = 0;
  };

  void append_bytes(std::string_view s) { arena_.append(s.data(), s.size()); }
  void add_kv(std::string_view key, std::string_view value, std::uint8_t kind);
  std::string_view view(std::uint32_t off, std::uint32_t len) const noexcept {
    return {arena_.data() + off, len};
  }
  std::uint32_t rec_bytes(const Rec& r) const noexcept { return r.arena_end - r.arena_begin; }

  /// resize() and emplace_back() leave a Rec or Kv uninitialised (every caller writes all of
  /// it): value-initialising zero-filled each pair just before add_event() wrote it, out of line.
  template <typename T>
  struct NoZeroFill : std::allocator<T> {
    template <typename U>
    struct rebind {
      using other = NoZeroFill<U>;
    };
    NoZeroFill() = default;
    template <typename U>
    NoZeroFill(const NoZeroFill<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
    template <typename U>
    void construct(U* p) noexcept {
      ::new (static_cast<void*>(p)) U;
    }
    template <typename U, typename... A>
    void construct(U* p, A&&... a) {
      ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
    }
  };
  template <typename T>
  using Records = std::vector<T, NoZeroFill<T>>;

  Bytes arena_;
  Records<Rec> recs_;
  Records<Kv> kvs_;
  std::uint64_t bytes_ = 0;
  std::vector<std::pair<std::string, std::string>> common_;  // [0, common_count_) are in use
  std::size_t common_count_ = 0;
};

inline std::string_view EventView::body() const {
  const auto& r = batch_->recs_[index_];
  return batch_->view(r.body_off, r.body_len);
}
inline std::int64_t EventView::timestamp_ns() const { return batch_->recs_[index_].timestamp_ns; }
inline std::uint64_t EventView::id() const { return batch_->recs_[index_].id; }
inline std::uint8_t EventView::flags() const { return batch_->recs_[index_].flags; }
inline std::uint32_t EventView::bytes() const { return batch_->rec_bytes(batch_->recs_[index_]); }
inline std::size_t EventView::header_count() const {
  return batch_->recs_[index_].header_count + batch_->common_count_;
}
inline std::size_t EventView::field_count() const { return batch_->recs_[index_].field_count; }
inline Field EventView::field(std::size_t i) const {
  const auto& r = batch_->recs_[index_];
  SLUICE_ASSERT(i < r.field_count);
  const auto& kv = batch_->kvs_[r.kv_begin + r.header_count + i];
  return {batch_->view(kv.key_off, kv.key_len), batch_->view(kv.value_off, kv.value_len),
          static_cast<FieldType>(kv.kind)};
}
// Always inlined: called out of line, its outputs live in memory and their reload stalls.
[[gnu::always_inline]] inline bool EventView::field_if(std::size_t i, std::string_view key,
                                                       std::string_view& text,
                                                       FieldType& type) const {
  const auto& r = batch_->recs_[index_];
  SLUICE_ASSERT(i < r.field_count);
  const auto& kv = batch_->kvs_[r.kv_begin + r.header_count + i];
  if (!same_bytes(batch_->view(kv.key_off, kv.key_len), key)) return false;
  text = batch_->view(kv.value_off, kv.value_len);
  type = static_cast<FieldType>(kv.kind);
  return true;
}

}  // namespace sluice

#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "lib/core/batch.h"

namespace sluice::parse {

/// Bytes that live until reset(): chunks that never move, so views handed out stay valid. After
/// warm-up, reset() keeps the first chunk and copies allocate nothing.
class StringArena {
 public:
  std::string_view copy(std::string_view s) {
    if (s.empty()) return {};
    char* p = reserve(s.size());
    std::memcpy(p, s.data(), s.size());
    used_ += s.size();
    return {p, s.size()};
  }
  /// Room for `n` bytes at the current position; commit(n) after writing them.
  char* reserve(std::size_t n) {
    if (chunks_.empty() || used_ + n > size_) {
      size_ = std::max<std::size_t>(kChunk, n);
      chunks_.push_back(std::make_unique<char[]>(size_));
      used_ = 0;
    }
    return chunks_.back().get() + used_;
  }
  void commit(std::size_t n) { used_ += n; }
  void reset() {
    // After an event that needed more than one standard chunk, start over with a fresh one.
    if (chunks_.size() > 1 || size_ > kChunk) {
      chunks_.clear();
      size_ = 0;
    }
    used_ = 0;
  }

 private:
  static constexpr std::size_t kChunk = 16 * 1024;
  std::vector<std::unique_ptr<char[]>> chunks_;
  std::size_t used_ = 0, size_ = 0;
};

/// One event while a source's pipeline works on it: views of the record, of the parsers'
/// buffers, of the configuration and of the arena; copied into a Batch at the end.
struct Draft {
  std::string_view body;
  std::int64_t timestamp_ns = 0;
  std::uint64_t id = 0;
  std::vector<Header> headers;
  std::vector<Field> fields;
  StringArena arena;
  /// A copy of `body` the format parsed (body.size() bytes), or null: views into it stand for
  /// the same bytes of the body, which the batch then stores once (Batch::add_event).
  const char* body_copy = nullptr;

  void reset(std::string_view b, std::int64_t ts, std::uint64_t event_id) {
    body = b;
    body_copy = nullptr;
    timestamp_ns = ts;
    id = event_id;
    headers.clear();
    fields.clear();
    arena.reset();
  }
  Field* field(std::string_view key) noexcept {
    for (auto& f : fields) {
      if (f.key == key) return &f;
    }
    return nullptr;
  }
  const Header* header(std::string_view key) const noexcept {
    for (const auto& h : headers) {
      if (h.key == key) return &h;
    }
    return nullptr;
  }
  /// Sets a header; an existing one is replaced unless `keep_existing`.
  void set_header(std::string_view key, std::string_view value, bool keep_existing = false) {
    for (auto& h : headers) {
      if (h.key == key) {
        if (!keep_existing) h.value = value;
        return;
      }
    }
    headers.push_back({key, value});
  }
  void set_field(std::string_view key, std::string_view text, FieldType type) {
    if (Field* f = field(key)) {
      f->text = text;
      f->type = type;
      return;
    }
    fields.push_back({key, text, type});
  }
  /// Appends this event to `out`.
  void append_to(Batch& out) const {
    out.add_event(body, timestamp_ns, id, headers.data(), headers.size(), fields.data(),
                  fields.size(), body_copy);
  }
};

}  // namespace sluice::parse

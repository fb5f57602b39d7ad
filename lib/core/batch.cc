#include "lib/core/batch.h"

namespace sluice {

void Batch::add_kv(std::string_view key, std::string_view value, std::uint8_t kind) {
  SLUICE_ASSERT(!recs_.empty());
  Rec& r = recs_.back();
  Kv kv{};
  kv.key_off = static_cast<std::uint32_t>(arena_.size());
  kv.key_len = static_cast<std::uint32_t>(key.size());
  append_bytes(key);
  kv.value_off = static_cast<std::uint32_t>(arena_.size());
  kv.value_len = static_cast<std::uint32_t>(value.size());
  append_bytes(value);
  kv.kind = kind;
  // Headers come before fields in kvs_, so that both stay contiguous per event.
  if (kind == kHeader && r.field_count > 0) {
    kvs_.insert(kvs_.begin() + r.kv_begin + r.header_count, kv);
  } else {
    kvs_.push_back(kv);
  }
  if (kind == kHeader) {
    ++r.header_count;
  } else {
    ++r.field_count;
  }
  r.arena_end = static_cast<std::uint32_t>(arena_.size());
  bytes_ += key.size() + value.size();
}

void Batch::add_event(std::string_view body, std::int64_t timestamp_ns, std::uint64_t id,
                      const Header* headers, std::size_t header_count, const Field* fields,
                      std::size_t field_count, const char* body_copy) {
  if (header_count > UINT16_MAX || field_count > UINT16_MAX) [[unlikely]] {
    // The counts do not fit a Rec: the one-by-one path (which keeps what it always kept).
    add(body, timestamp_ns, id);
    for (std::size_t i = 0; i < header_count; ++i) add_header(headers[i].key, headers[i].value);
    for (std::size_t i = 0; i < field_count; ++i)
      add_field(fields[i].key, fields[i].text, fields[i].type);
    return;
  }
  // Room for everything copied (an upper bound: what lies inside the body is not copied).
  std::size_t total = body.size();
  for (std::size_t i = 0; i < header_count; ++i)
    total += headers[i].key.size() + headers[i].value.size();
  for (std::size_t i = 0; i < field_count; ++i)
    total += fields[i].key.size() + fields[i].text.size();
  arena_.make_room(total);
  const std::size_t kv_count = header_count + field_count;
  if (kvs_.capacity() - kvs_.size() < kv_count)
    kvs_.reserve(std::max(kvs_.size() + kv_count, kvs_.capacity() * 2));
  // Written in place (a Rec or Kv built aside and then copied stalls on the copy's wide loads).
  Rec& r = recs_.emplace_back();
  r.arena_begin = static_cast<std::uint32_t>(arena_.size());
  r.body_off = r.arena_begin;
  r.body_len = static_cast<std::uint32_t>(body.size());
  r.kv_begin = static_cast<std::uint32_t>(kvs_.size());
  r.header_count = static_cast<std::uint16_t>(header_count);
  r.field_count = static_cast<std::uint16_t>(field_count);
  r.flags = 0;
  r.timestamp_ns = timestamp_ns;
  r.id = id;
  arena_.put(body.data(), body.size());
  // Headers come before fields in kvs_, as add_kv() keeps them.
  auto copy = [&](std::string_view s) {
    const auto at = static_cast<std::uint32_t>(arena_.size());
    arena_.put(s.data(), s.size());
    return at;
  };
  // Grown once for all of them: emplace_back() per pair was an out-of-line call each time, a
  // fourteenth of parsing a JSON line into a batch.
  const std::size_t kv_at = kvs_.size();
  kvs_.resize(kv_at + kv_count);
  Kv* const kv_out = kvs_.data() + kv_at;
  for (std::size_t i = 0; i < header_count; ++i) {
    Kv& kv = kv_out[i];
    kv.key_off = copy(headers[i].key);
    kv.key_len = static_cast<std::uint32_t>(headers[i].key.size());
    kv.value_off = copy(headers[i].value);
    kv.value_len = static_cast<std::uint32_t>(headers[i].value.size());
    kv.kind = kHeader;
  }
  // A field key or value that is a part of the body (or of `body_copy`, a copy of it a parser
  // read) is not copied again: its offsets point into the event's body. Unsigned wrap-around
  // makes "before the body" fail the same test as "past its end".
  const auto body_at = reinterpret_cast<std::uintptr_t>(body.data());
  const auto copy_at = reinterpret_cast<std::uintptr_t>(body_copy);
  const std::size_t n = body.size();
  auto place = [&](std::string_view s) {
    const auto at = reinterpret_cast<std::uintptr_t>(s.data());
    if (s.size() <= n) {
      if (at - body_at <= n - s.size())
        return static_cast<std::uint32_t>(r.body_off + (at - body_at));
      if (body_copy != nullptr && at - copy_at <= n - s.size())
        return static_cast<std::uint32_t>(r.body_off + (at - copy_at));
    }
    return copy(s);
  };
  for (std::size_t i = 0; i < field_count; ++i) {
    Kv& kv = kv_out[header_count + i];
    kv.key_off = place(fields[i].key);
    kv.key_len = static_cast<std::uint32_t>(fields[i].key.size());
    kv.value_off = place(fields[i].text);
    kv.value_len = static_cast<std::uint32_t>(fields[i].text.size());
    kv.kind = static_cast<std::uint8_t>(fields[i].type);
  }
  r.arena_end = static_cast<std::uint32_t>(arena_.size());
  bytes_ += r.arena_end - r.arena_begin;
}

void Batch::set_common_header(std::string_view key, std::string_view value) {
  for (std::size_t i = 0; i < common_count_; ++i) {
    if (common_[i].first == key) {
      common_[i].second.assign(value);
      return;
    }
  }
  if (common_count_ == common_.size()) common_.emplace_back();
  common_[common_count_].first.assign(key);
  common_[common_count_].second.assign(value);
  ++common_count_;
}

bool Batch::same_common_headers(const Batch& other) const noexcept {
  if (common_count_ != other.common_count_) return false;
  for (std::size_t i = 0; i < common_count_; ++i) {
    if (common_[i] != other.common_[i]) return false;
  }
  return true;
}

void Batch::append_range(const Batch& other, std::size_t begin, std::size_t end) {
  SLUICE_ASSERT(begin <= end && end <= other.recs_.size());
  if (begin == end) return;
  if (recs_.empty()) {
    common_count_ = 0;
    for (std::size_t i = 0; i < other.common_count_; ++i)
      set_common_header(other.common_[i].first, other.common_[i].second);
  } else {
    SLUICE_ASSERT(same_common_headers(other));
  }
  const Rec& first = other.recs_[begin];
  const Rec& last = other.recs_[end - 1];
  const std::uint32_t src_begin = first.arena_begin;
  const std::uint32_t src_end = last.arena_end;
  const auto delta = static_cast<std::int64_t>(arena_.size()) - src_begin;
  arena_.append(other.arena_.data() + src_begin, src_end - src_begin);

  const auto kv_delta = static_cast<std::int64_t>(kvs_.size()) - first.kv_begin;
  const std::size_t kv_end = last.kv_begin + last.header_count + last.field_count;
  // Grown once (resize() grows geometrically) and written through pointers, each element read
  // into registers, moved and stored whole: emplace_back() per element stored the vector's end
  // each time and added the offsets in memory to what it had just stored.
  const std::size_t kv_at = kvs_.size(), kv_n = kv_end - first.kv_begin;
  kvs_.resize(kv_at + kv_n);
  const Kv* const kv_src = other.kvs_.data() + first.kv_begin;
  Kv* const kv_dst = kvs_.data() + kv_at;
  const auto off = static_cast<std::uint32_t>(delta);  // offsets wrap as uint32_t arithmetic
  for (std::size_t k = 0; k < kv_n; ++k) {
    Kv kv = kv_src[k];
    kv.key_off += off;
    kv.value_off += off;
    kv_dst[k] = kv;
  }
  const std::size_t rec_at = recs_.size();
  recs_.resize(rec_at + (end - begin));
  const Rec* const rec_src = other.recs_.data() + begin;
  Rec* const rec_dst = recs_.data() + rec_at;
  const auto kv_off = static_cast<std::uint32_t>(kv_delta);
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < end - begin; ++i) {
    Rec r = rec_src[i];
    r.arena_begin += off;
    r.arena_end += off;
    r.body_off += off;
    r.kv_begin += kv_off;
    bytes += rec_bytes(r);
    rec_dst[i] = r;
  }
  bytes_ += bytes;
}

std::uint64_t Batch::bytes(std::size_t begin, std::size_t end) const noexcept {
  if (begin == 0 && end == recs_.size()) return bytes_;
  std::uint64_t n = 0;
  for (std::size_t i = begin; i < end; ++i) n += rec_bytes(recs_[i]);
  return n;
}

Header EventView::header(std::size_t i) const {
  const auto& r = batch_->recs_[index_];
  if (i >= r.header_count) {
    SLUICE_ASSERT(i - r.header_count < batch_->common_count_);
    const auto& c = batch_->common_[i - r.header_count];
    return {c.first, c.second};
  }
  const auto& kv = batch_->kvs_[r.kv_begin + i];
  return {batch_->view(kv.key_off, kv.key_len), batch_->view(kv.value_off, kv.value_len)};
}

std::optional<std::string_view> EventView::header(std::string_view key) const {
  const auto& r = batch_->recs_[index_];
  for (std::size_t i = 0; i < r.header_count; ++i) {
    const auto& kv = batch_->kvs_[r.kv_begin + i];
    if (batch_->view(kv.key_off, kv.key_len) == key)
      return batch_->view(kv.value_off, kv.value_len);
  }
  for (std::size_t i = 0; i < batch_->common_count_; ++i) {
    if (batch_->common_[i].first == key) return std::string_view(batch_->common_[i].second);
  }
  return std::nullopt;
}

}  // namespace sluice

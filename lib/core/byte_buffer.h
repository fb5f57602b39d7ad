#pragma once

#include <cstddef>
#include <string_view>
#include <utility>

namespace sluice {

/// Bytes that arrive piece by piece (an Avro frame, an HTTP body), grown with realloc: past
/// glibc's mmap threshold realloc moves pages (mremap), not bytes, so growing to a 64 MiB body
/// does not copy it (std::string's doubling copied up to half of it into newly faulted pages in
/// one loop turn: 40-60 ms). Movable, so that a large one can be handed on without copying it.
class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&& o) noexcept : data_(o.data_), size_(o.size_), cap_(o.cap_) {
    o.data_ = nullptr;
    o.size_ = o.cap_ = 0;
  }
  ByteBuffer& operator=(ByteBuffer&& o) noexcept {
    if (this != &o) {
      release();
      std::swap(data_, o.data_);
      std::swap(size_, o.size_);
      std::swap(cap_, o.cap_);
    }
    return *this;
  }
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ~ByteBuffer() { release(); }
  void append(const char* p, std::size_t n);
  void append(std::string_view s) { append(s.data(), s.size()); }
  std::string_view view() const noexcept { return {data_, size_}; }
  const char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t capacity() const noexcept { return cap_; }
  /// Keeps the memory for the next use.
  void clear() noexcept { size_ = 0; }
  /// Frees the memory.
  void release() noexcept;

 private:
  char* data_ = nullptr;
  std::size_t size_ = 0, cap_ = 0;
};

}  // namespace sluice

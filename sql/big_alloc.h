#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>

namespace sluice::sql {

/// Bytes held by BigAlloc mappings now (all instances; for tests comparing state_bytes() with
/// what is really held).
inline std::atomic<std::size_t>& big_alloc_mapped_bytes() {
  static std::atomic<std::size_t> bytes{0};
  return bytes;
}

/// An allocator for the large arrays of a window (cells, key bytes, the key index): a block of
/// 128 KiB or more gets its own mapping, so that it goes back to the system when a window closes.
/// With malloc, glibc raises its mmap threshold after the first such block is freed, later ones
/// come from the heap, and the memory of closed windows stays resident between them (measured:
/// 71 MB peak RSS for 42 MB of state at 100k keys per window, 44 MB with mappings). 128 KiB
/// rather than 256 takes in the cell blocks of 2048 groups with 3 or more aggregates (2048 x 4 x
/// 24 = 192 KiB): 1.3 MB less peak RSS on the SQL bench's 100k-key line at the same CPU (a block's
/// page faults are ~50 per 2048 new groups). Smaller blocks come from malloc.
template <class T>
struct BigAlloc {
  using value_type = T;
  static constexpr std::size_t kMapFrom = std::size_t{128} << 10;

  BigAlloc() noexcept = default;
  template <class U>
  BigAlloc(const BigAlloc<U>&) noexcept {}  // NOLINT: converting, as allocators are

  static std::size_t mapped_size(std::size_t bytes) noexcept {
    constexpr std::size_t kPage = 4096;
    return (bytes + kPage - 1) / kPage * kPage;
  }

  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kMapFrom) {
      void* p = std::malloc(bytes == 0 ? 1 : bytes);
      if (p == nullptr) std::abort();  // out of memory, as operator new ends the process
      return static_cast<T*>(p);
    }
    void* p = ::mmap(nullptr, mapped_size(bytes), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    big_alloc_mapped_bytes() += mapped_size(bytes);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kMapFrom) {
      std::free(p);
      return;
    }
    ::munmap(p, mapped_size(bytes));
    big_alloc_mapped_bytes() -= mapped_size(bytes);
  }

  template <class U>
  friend bool operator==(const BigAlloc&, const BigAlloc<U>&) noexcept {
    return true;
  }
};

}  // namespace sluice::sql

// Replaces the global operator new of the test binary so that tests can assert that a warm hot
// path does not allocate. In sanitizer builds the sanitizer's allocator stays in place.
#include <malloc.h>

#include <cstdlib>
#include <new>

#include "tests/support/test_support.h"

namespace {
thread_local std::uint64_t g_allocations = 0;
thread_local std::int64_t g_live_bytes = 0;

#ifndef SLUICE_SANITIZED
void* counted(std::size_t n) {
  ++g_allocations;
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  g_live_bytes += static_cast<std::int64_t>(malloc_usable_size(p));
  return p;
}
void uncounted(void* p) noexcept {
  if (p == nullptr) return;
  g_live_bytes -= static_cast<std::int64_t>(malloc_usable_size(p));
  std::free(p);
}
#endif
}  // namespace

namespace sluice::test {
#ifdef SLUICE_SANITIZED
bool allocation_counting_available() { return false; }
#else
bool allocation_counting_available() { return true; }
#endif
AllocationCounter::AllocationCounter() : start_(g_allocations) {}
AllocationCounter::~AllocationCounter() = default;
std::uint64_t AllocationCounter::count() const { return g_allocations - start_; }
std::int64_t live_heap_bytes() { return g_live_bytes; }
}  // namespace sluice::test

#ifndef SLUICE_SANITIZED
void* operator new(std::size_t n) { return counted(n); }
void* operator new[](std::size_t n) { return counted(n); }
void operator delete(void* p) noexcept { uncounted(p); }
void operator delete[](void* p) noexcept { uncounted(p); }
void operator delete(void* p, std::size_t) noexcept { uncounted(p); }
void operator delete[](void* p, std::size_t) noexcept { uncounted(p); }
#endif

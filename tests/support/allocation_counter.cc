// Replaces the global operator new of the test binary so that tests can assert that a warm hot
// path does not allocate. In sanitizer builds the sanitizer's allocator stays in place.
#include <cstdlib>
#include <new>

#include "tests/support/test_support.h"

namespace {
thread_local std::uint64_t g_allocations = 0;
}

namespace sluice::test {
#ifdef SLUICE_SANITIZED
bool allocation_counting_available() { return false; }
#else
bool allocation_counting_available() { return true; }
#endif
AllocationCounter::AllocationCounter() : start_(g_allocations) {}
AllocationCounter::~AllocationCounter() = default;
std::uint64_t AllocationCounter::count() const { return g_allocations - start_; }
}  // namespace sluice::test

#ifndef SLUICE_SANITIZED
void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif

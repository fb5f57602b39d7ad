#pragma once

#include <catch2/catch.hpp>

#include "tests/support/test_support.h"

/// Starts an allocation test: in sanitizer builds (whose allocator cannot be replaced) it warns and
/// returns from the test; anywhere else it requires that the counter works, so that the test's
/// `CHECK(allocs.count() == 0)` proves something.
#ifdef SLUICE_SANITIZED
#define SLUICE_REQUIRE_ALLOCATION_COUNTING()                                      \
  do {                                                                            \
    WARN("skipped: sanitizer builds count allocations with their own allocator"); \
    return;                                                                       \
  } while (false)
#else
#define SLUICE_REQUIRE_ALLOCATION_COUNTING()                  \
  do {                                                        \
    REQUIRE(::sluice::test::allocation_counting_available()); \
    ::sluice::test::AllocationCounter probe_;                 \
    void* p_ = ::operator new(16); /* never elided */         \
    ::operator delete(p_);                                    \
    REQUIRE(probe_.count() == 1);                             \
  } while (false)
#endif

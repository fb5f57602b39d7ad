#pragma once

#include <cstdio>
#include <cstdlib>

/// Checks one of sluice's own invariants, in every build type; a failure is a bug and aborts.
#define SLUICE_ASSERT(cond)                                                                      \
  do {                                                                                           \
    if (!(cond)) [[unlikely]] {                                                                  \
      std::fprintf(stderr, "sluice: assertion failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                              \
    }                                                                                            \
  } while (0)

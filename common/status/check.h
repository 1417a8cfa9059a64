// CHECK for broken invariants only (a bug in Hansa, never bad input): prints and aborts.
// Anything a peer, a file or a user can cause is a Status instead.
#pragma once

#include <cstdio>
#include <cstdlib>

#define HANSA_CHECK(cond)                                                               \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

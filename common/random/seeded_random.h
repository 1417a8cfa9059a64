// A tiny pseudo-random generator whose output is fixed by its seed on every platform, for the
// things all sites must compute identically (data shards, initial weights, shuffling order).
// std:: distributions are unspecified across standard libraries, so they are not used for these.
// Header-only and dependency-free: the model layouts (initial weights), the data shards, the
// trainer and the partitioners (common/partition/random.h, on top of it) share it.
#pragma once

#include <cstdint>
#include <limits>

namespace hansa {

// SplitMix64 (Steele, Lea, Flood 2014). Not cryptographic. Not thread-safe: one per user.
class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  // Uniform in [0, bound) without modulo bias. REQUIRES: bound > 0.
  uint64_t Below(uint64_t bound) {
    const uint64_t max = std::numeric_limits<uint64_t>::max();
    const uint64_t limit = max - max % bound;
    uint64_t x;
    do {
      x = Next();
    } while (x >= limit);
    return x % bound;
  }

  // Uniform in [0, 1) with 24 random bits, exactly representable as a float.
  float UnitFloat() { return static_cast<float>(Next() >> 40) * (1.0f / 16777216.0f); }

 private:
  uint64_t state_;
};

}  // namespace hansa

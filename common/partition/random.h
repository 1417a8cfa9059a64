// Portable random draws for partitioning: uniform, normal, gamma and Dirichlet variates whose
// output is fixed by the seed on every platform and compiler. std:: distributions are not
// used because their output is unspecified across standard libraries, and a partition must be
// the same wherever an experiment is rerun. Not cryptographic. Not thread-safe: one per user.
#pragma once

#include <cstdint>
#include <vector>

#include "common/random/seeded_random.h"

namespace hansa {

class PortableRandom {
 public:
  explicit PortableRandom(uint64_t seed) : stream_(seed) {}

  // SplitMix64: the stream of common/random/seeded_random.h.
  uint64_t Next() { return stream_.Next(); }
  // Uniform in [0, bound) without modulo bias. REQUIRES: bound > 0.
  uint64_t Below(uint64_t bound) { return stream_.Below(bound); }
  // Uniform in [0, 1) with 53 random bits.
  double Uniform();
  // Standard normal (Marsaglia polar method; the spare value is kept for the next call).
  double Normal();
  // Gamma(shape, 1) by Marsaglia and Tsang (2000), with the U^(1/shape) boost below 1.
  // REQUIRES: shape > 0.
  double Gamma(double shape);
  // A draw from Dirichlet(alpha, ..., alpha) over `n` components (normalised gammas).
  std::vector<double> Dirichlet(int n, double alpha);
  // Fisher-Yates shuffle of `values` in place.
  void Shuffle(std::vector<int64_t>* values);

 private:
  SeededRandom stream_;
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace hansa

// Portable random draws for partitioning: uniform, normal, gamma and Dirichlet variates whose
// output is fixed by the seed on every platform and compiler. std:: distributions are not
// used because their output is unspecified across standard libraries, and a partition must be
// the same wherever an experiment is rerun. Not cryptographic. Not thread-safe: one per user.
#pragma once

#include <cstdint>
#include <vector>

namespace hansa {

class PortableRandom {
 public:
  explicit PortableRandom(uint64_t seed) : state_(seed) {}

  // SplitMix64 (Steele, Lea, Flood 2014), the same stream as common/model/seeded_random.h.
  uint64_t Next();
  // Uniform in [0, bound) without modulo bias. REQUIRES: bound > 0.
  uint64_t Below(uint64_t bound);
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
  uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace hansa

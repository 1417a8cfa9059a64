// Exact samplers for the discrete Gaussian and discrete Laplace distributions over Z, after
// Canonne, Kamath, Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020),
// Sec. 5: only integer and rational arithmetic, no floating point, so the output distribution
// is exactly N_Z(0, sigma^2): P[x] proportional to exp(-x^2 / (2 sigma^2)).
// Functions are pure apart from the UniformSource they are given; the sampler is immutable
// and may be shared across threads (each thread with its own source).
#pragma once

#include <cstdint>

#include "common/privacy/uniform_source.h"
#include "common/status/status.h"

namespace hansa {

// Bernoulli(exp(-num/den)), CKS 2020 Algorithm 1 (with the floor(gamma) decomposition for
// gamma > 1). REQUIRES: den > 0.
bool SampleBernoulliExpNeg(UniformSource& source, Uint128 num, Uint128 den);

// Discrete Laplace with scale t: P[x] proportional to exp(-|x| / t); CKS 2020 Algorithm 2 with
// s = 1. REQUIRES: t >= 1.
int64_t SampleDiscreteLaplace(UniformSource& source, uint64_t t);

// The discrete Gaussian with variance parameter sigma^2 = num/den (CKS 2020 Algorithm 3).
// Limits keep every intermediate inside 128 bits: den * (floor(sigma) + 1)^2 <= 2^57. A
// candidate whose exponent would overflow has |x| >= 128 (floor(sigma)+1) and is rejected; that
// changes the distribution by less than exp(-8000) in total variation (see the .cc).
class DiscreteGaussianSampler {
 public:
  // InvalidArgument when num or den is 0 or the limits above are exceeded.
  static StatusOr<DiscreteGaussianSampler> Create(uint64_t sigma2_num, uint64_t sigma2_den);
  // sigma^2 rounded UP to a multiple of 1/256 (more noise, never less privacy).
  // InvalidArgument when sigma^2 is not positive and finite or above 2^46.
  static StatusOr<DiscreteGaussianSampler> FromVariance(double sigma2);

  int64_t Sample(UniformSource& source) const;

  // The exact sigma^2 sampled, num/den.
  double sigma2() const { return static_cast<double>(num_) / static_cast<double>(den_); }
  uint64_t sigma2_num() const { return num_; }
  uint64_t sigma2_den() const { return den_; }

 private:
  DiscreteGaussianSampler(uint64_t num, uint64_t den, uint64_t t) : num_(num), den_(den), t_(t) {}
  uint64_t num_, den_, t_;  // t = floor(sigma) + 1, the Laplace scale
};

}  // namespace hansa

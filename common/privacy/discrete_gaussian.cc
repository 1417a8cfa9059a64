#include "common/privacy/discrete_gaussian.h"

#include <cmath>

#include "common/status/check.h"

namespace hansa {
namespace {

// Bernoulli(num/den). REQUIRES: num <= den, den > 0.
bool SampleBernoulli(UniformSource& source, Uint128 num, Uint128 den) {
  return UniformBelow(source, den) < num;
}

// CKS 2020 Algorithm 1 for gamma = num/den in [0, 1]: K = 1, 2, ... while Bernoulli(gamma/K)
// succeeds; the result is 1 iff the loop stopped at an odd K.
bool SampleBernoulliExpNegUnit(UniformSource& source, Uint128 num, Uint128 den) {
  uint64_t k = 1;
  for (;;) {
    Uint128 den_k;
    // Reaching K = 2^20 has probability below 1/(2^20)!: an overflow here is a broken source.
    HANSA_CHECK(!__builtin_mul_overflow(den, Uint128{k}, &den_k));
    if (!SampleBernoulli(source, num, den_k)) break;
    ++k;
  }
  return k % 2 == 1;
}

// floor(sqrt(n)) exactly.
uint64_t ISqrt(uint64_t n) {
  uint64_t r = static_cast<uint64_t>(std::sqrt(static_cast<double>(n)));
  while (r > 0 && Uint128{r} * r > n) --r;
  while (Uint128{r + 1} * (r + 1) <= n) ++r;
  return r;
}

constexpr uint64_t kMaxDenTimesT2 = uint64_t{1} << 57;

}  // namespace

bool SampleBernoulliExpNeg(UniformSource& source, Uint128 num, Uint128 den) {
  HANSA_CHECK(den > 0);
  // exp(-gamma) = exp(-1)^floor(gamma) * exp(-(gamma - floor(gamma))), independent factors.
  while (num > den) {
    if (!SampleBernoulliExpNegUnit(source, 1, 1)) return false;
    num -= den;
  }
  return SampleBernoulliExpNegUnit(source, num, den);
}

int64_t SampleDiscreteLaplace(UniformSource& source, uint64_t t) {
  HANSA_CHECK(t >= 1);
  for (;;) {
    uint64_t u = UniformBelow(source, t);
    if (!SampleBernoulliExpNeg(source, u, t)) continue;
    uint64_t v = 0;
    while (SampleBernoulliExpNeg(source, 1, 1)) ++v;
    // x = u + t v; x >= 2^62 needs v >= 2^33 (t < 2^29), probability exp(-2^33): a broken source.
    Uint128 x = Uint128{u} + Uint128{t} * v;
    HANSA_CHECK(x < (Uint128{1} << 62));
    bool negative = UniformBelow(source, uint64_t{2}) == 1;
    if (negative && x == 0) continue;
    return negative ? -static_cast<int64_t>(x) : static_cast<int64_t>(x);
  }
}

StatusOr<DiscreteGaussianSampler> DiscreteGaussianSampler::Create(uint64_t num, uint64_t den) {
  if (num == 0 || den == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("discrete Gaussian variance ", num, "/", den, " must be positive"));
  }
  uint64_t t = ISqrt(num / den) + 1;  // floor(sqrt(num/den)) = floor(sqrt(floor(num/den)))
  Uint128 den_t2 = Uint128{den} * t * t;
  if (den_t2 > kMaxDenTimesT2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "discrete Gaussian variance ", num, "/", den,
        " is too large or its denominator too fine (need den * (floor(sigma)+1)^2 <= 2^57)"));
  }
  return DiscreteGaussianSampler(num, den, t);
}

StatusOr<DiscreteGaussianSampler> DiscreteGaussianSampler::FromVariance(double sigma2) {
  if (!(sigma2 > 0) || !(sigma2 <= std::ldexp(1.0, 46))) {
    return absl::InvalidArgumentError(
        absl::StrCat("discrete Gaussian variance ", sigma2, " must be positive and at most 2^46"));
  }
  constexpr double kDen = 256;
  return Create(static_cast<uint64_t>(std::ceil(sigma2 * kDen)), static_cast<uint64_t>(kDen));
}

int64_t DiscreteGaussianSampler::Sample(UniformSource& source) const {
  // CKS 2020 Algorithm 3: Y ~ DLap(t), accepted with probability
  // exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)) = exp(-(|Y| t den - num)^2 / (2 num den t^2)).
  const Uint128 exp_den = Uint128{2} * num_ * den_ * t_ * t_;  // <= 2^1 * 2^64 * 2^57 < 2^128
  for (;;) {
    int64_t y = SampleDiscreteLaplace(source, t_);
    uint64_t abs_y = y < 0 ? static_cast<uint64_t>(-(y + 1)) + 1 : static_cast<uint64_t>(y);
    // |Y| t den < 2^64 whenever |Y| < 128 t, since den t^2 <= 2^57. Beyond that the acceptance
    // probability is below exp(-(127 t)^2 / (2 t^2)) < exp(-8000) (sigma^2/t < t): rejecting
    // there changes the output distribution by less than that.
    Uint128 a;
    if (__builtin_mul_overflow(Uint128{abs_y}, Uint128{t_} * den_, &a) || a >= (Uint128{1} << 64)) {
      continue;
    }
    Uint128 diff = a >= num_ ? a - num_ : num_ - a;  // < 2^64
    if (SampleBernoulliExpNeg(source, diff * diff, exp_den)) return y;
  }
}

}  // namespace hansa

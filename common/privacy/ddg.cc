#include "common/privacy/ddg.h"

#include <cmath>
#include <string>

#include "common/privacy/discrete_gaussian.h"
#include "common/status/check.h"

namespace hansa {
namespace {

// Integer-domain magnitudes stay far below 2^62 so that sums of many sites fit in int64.
constexpr double kMaxScaledNorm = 1e15;
constexpr int kMaxRoundingTries = 10000;

// In-place unnormalized Walsh-Hadamard transform (entries of H are +-1, H H = n I).
void Fwht(std::vector<double>& v) {
  for (size_t h = 1; h < v.size(); h *= 2) {
    for (size_t i = 0; i < v.size(); i += 2 * h) {
      for (size_t j = i; j < i + h; ++j) {
        double a = v[j], b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
    }
  }
}

void ApplySigns(std::vector<double>& v, std::string_view round_seed) {
  SeededUniformSource signs(std::string("hansa-ddg-rotation-v1:") + std::string(round_seed));
  uint64_t bits = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i % 64 == 0) bits = signs.NextUint64();
    if ((bits >> (i % 64)) & 1) v[i] = -v[i];
  }
}

double Uniform01(UniformSource& source) {
  return static_cast<double>(source.NextUint64() >> 11) * 0x1.0p-53;  // [0, 1)
}

bool IsPowerOfTwo(size_t n) { return n > 0 && (n & (n - 1)) == 0; }

}  // namespace

Status DdgParams::Validate() const {
  auto bad = [](auto... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); };
  if (dimension < 1 || dimension > (int64_t{1} << 40)) {
    return bad("DDG dimension ", dimension, " must be in [1, 2^40]");
  }
  if (!(clip_norm > 0) || std::isinf(clip_norm)) {
    return bad("DDG clip_norm ", clip_norm, " must be positive and finite");
  }
  if (!(granularity > 0) || std::isinf(granularity)) {
    return bad("DDG granularity ", granularity, " must be positive and finite");
  }
  if (!(clip_norm / granularity <= kMaxScaledNorm)) {
    return bad("DDG clip_norm / granularity = ", clip_norm / granularity,
               " exceeds 1e15; use a coarser granularity");
  }
  if (!(noise_multiplier >= 0) || std::isinf(noise_multiplier)) {
    return bad("DDG noise_multiplier ", noise_multiplier, " must be >= 0 and finite");
  }
  if (!(beta >= 0 && beta < 1)) return bad("DDG beta ", beta, " must be in [0, 1)");
  if (min_survivors < 1) return bad("DDG min_survivors ", min_survivors, " must be >= 1");
  double var = std::pow(noise_multiplier * clip_norm / granularity, 2) / min_survivors;
  if (noise_multiplier > 0 && !(var <= std::ldexp(1.0, 46))) {
    return bad("DDG per-site noise variance ", var, " (integer units) exceeds 2^46; use a ",
               "coarser granularity");
  }
  return absl::OkStatus();
}

int64_t DdgParams::PaddedDimension() const {
  int64_t p = 1;
  while (p < dimension) p *= 2;
  return p;
}

double DdgParams::RoundedNormBound() const {
  double c = clip_norm / granularity;
  double d = static_cast<double>(PaddedDimension());
  double bound1 = c + std::sqrt(d);  // every coordinate moves by < 1
  if (beta == 0) return bound1;
  double bound2 =
      std::sqrt(c * c + d / 4 + std::sqrt(2 * std::log(1 / beta)) * (c + std::sqrt(d) / 2));
  return std::min(bound1, bound2);
}

double DdgParams::SiteNoiseVariance() const {
  if (noise_multiplier == 0) return 0;
  double var =
      std::pow(noise_multiplier * clip_norm / granularity, 2) / static_cast<double>(min_survivors);
  auto sampler = DiscreteGaussianSampler::FromVariance(var);
  return sampler.ok() ? sampler->sigma2() : var;
}

double ClipToL2Norm(std::vector<double>& values, double clip_norm) {
  double norm2 = 0;
  for (double v : values) norm2 += v * v;
  double norm = std::sqrt(norm2);
  if (norm > clip_norm) {
    double scale = clip_norm / norm;
    for (double& v : values) v *= scale;
  }
  return norm;
}

std::vector<double> RandomizedHadamard(std::vector<double> x, std::string_view round_seed) {
  HANSA_CHECK(IsPowerOfTwo(x.size()));
  ApplySigns(x, round_seed);
  Fwht(x);
  double norm = 1 / std::sqrt(static_cast<double>(x.size()));
  for (double& v : x) v *= norm;
  return x;
}

std::vector<double> InverseRandomizedHadamard(std::vector<double> y, std::string_view round_seed) {
  HANSA_CHECK(IsPowerOfTwo(y.size()));
  Fwht(y);
  double norm = 1 / std::sqrt(static_cast<double>(y.size()));
  for (double& v : y) v *= norm;
  ApplySigns(y, round_seed);
  return y;
}

StatusOr<std::vector<int64_t>> DdgRoundUpdate(const std::vector<double>& update,
                                              const DdgParams& params, std::string_view round_seed,
                                              UniformSource& private_source) {
  RETURN_IF_ERROR(params.Validate());
  if (static_cast<int64_t>(update.size()) != params.dimension) {
    return absl::InvalidArgumentError(absl::StrCat("DDG update has ", update.size(),
                                                   " values, the plan says ", params.dimension));
  }
  for (size_t i = 0; i < update.size(); ++i) {
    if (!std::isfinite(update[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("DDG update value ", i, " is ", update[i], "; refuse to encode"));
    }
  }
  // Algorithm 1 steps 1-2: clip, scale by 1/gamma, flatten with the public rotation.
  std::vector<double> x = update;
  ClipToL2Norm(x, params.clip_norm);
  x.resize(static_cast<size_t>(params.PaddedDimension()), 0.0);
  for (double& v : x) v /= params.granularity;
  x = RandomizedHadamard(std::move(x), round_seed);
  // Step 3: randomized rounding, repeated until the norm is within the bound (Prop. 22: each
  // try succeeds with probability >= 1 - beta).
  const double bound = params.RoundedNormBound();
  std::vector<int64_t> z(x.size());
  for (int attempt = 0; attempt < kMaxRoundingTries; ++attempt) {
    long double norm2 = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      double f = std::floor(x[i]);
      z[i] = static_cast<int64_t>(f) + (Uniform01(private_source) < x[i] - f ? 1 : 0);
      norm2 += static_cast<long double>(z[i]) * z[i];
    }
    if (std::sqrt(norm2) <= bound) return z;
  }
  return absl::InternalError(absl::StrCat("DDG conditional rounding failed ", kMaxRoundingTries,
                                          " times (bound ", bound, "); report this as a bug"));
}

StatusOr<std::vector<int64_t>> DdgSiteNoise(const DdgParams& params, UniformSource& source) {
  RETURN_IF_ERROR(params.Validate());
  std::vector<int64_t> noise(static_cast<size_t>(params.PaddedDimension()), 0);
  if (params.noise_multiplier == 0) return noise;
  double var = std::pow(params.noise_multiplier * params.clip_norm / params.granularity, 2) /
               static_cast<double>(params.min_survivors);
  ASSIGN_OR_RETURN(auto sampler, DiscreteGaussianSampler::FromVariance(var));
  for (int64_t& v : noise) v = sampler.Sample(source);
  return noise;
}

StatusOr<std::vector<int64_t>> DdgEncode(const std::vector<double>& update, const DdgParams& params,
                                         std::string_view round_seed,
                                         UniformSource& private_source) {
  ASSIGN_OR_RETURN(auto z, DdgRoundUpdate(update, params, round_seed, private_source));
  ASSIGN_OR_RETURN(auto noise, DdgSiteNoise(params, private_source));
  for (size_t i = 0; i < z.size(); ++i) z[i] += noise[i];
  return z;
}

std::vector<uint64_t> ToRing(const std::vector<int64_t>& values, int modulus_bits) {
  HANSA_CHECK(modulus_bits == 32 || modulus_bits == 64);
  uint64_t mask = modulus_bits == 64 ? ~uint64_t{0} : (uint64_t{1} << 32) - 1;
  std::vector<uint64_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = static_cast<uint64_t>(values[i]) & mask;
  return out;
}

std::vector<int64_t> FromRing(const std::vector<uint64_t>& ring_values, int modulus_bits) {
  HANSA_CHECK(modulus_bits == 32 || modulus_bits == 64);
  std::vector<int64_t> out(ring_values.size());
  for (size_t i = 0; i < ring_values.size(); ++i) {
    out[i] =
        modulus_bits == 64
            ? static_cast<int64_t>(ring_values[i])
            : static_cast<int64_t>(static_cast<int32_t>(static_cast<uint32_t>(ring_values[i])));
  }
  return out;
}

StatusOr<std::vector<double>> DdgDecodeSum(const std::vector<uint64_t>& ring_sum, int modulus_bits,
                                           const DdgParams& params, std::string_view round_seed,
                                           int64_t num_survivors) {
  RETURN_IF_ERROR(params.Validate());
  if (modulus_bits != 32 && modulus_bits != 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("DDG modulus of 2^", modulus_bits, " unsupported; use 32 or 64 bits"));
  }
  if (static_cast<int64_t>(ring_sum.size()) != params.PaddedDimension()) {
    return absl::InvalidArgumentError(absl::StrCat("DDG aggregate has ", ring_sum.size(),
                                                   " values, expected ", params.PaddedDimension()));
  }
  if (num_survivors < params.min_survivors) {
    return absl::FailedPreconditionError(absl::StrCat(
        "only ", num_survivors, " sites survived, fewer than the ", params.min_survivors,
        " the noise was calibrated for; do not release this aggregate, retry the round"));
  }
  std::vector<int64_t> signed_sum = FromRing(ring_sum, modulus_bits);
  std::vector<double> y(signed_sum.begin(), signed_sum.end());
  std::vector<double> x = InverseRandomizedHadamard(std::move(y), round_seed);
  x.resize(static_cast<size_t>(params.dimension));
  for (double& v : x) v *= params.granularity;
  return x;
}

}  // namespace hansa

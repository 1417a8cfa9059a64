#include "common/privacy/central_gaussian.h"

#include <cmath>

#include "common/privacy/ddg.h"

namespace hansa {
namespace {

StatusOr<double> CohortRate(int64_t cohort, int64_t total_sites) {
  if (cohort < 1 || total_sites < cohort) {
    return absl::InvalidArgumentError(absl::StrCat("cohort of ", cohort, " out of ", total_sites,
                                                   " sites: need 1 <= cohort <= total"));
  }
  return static_cast<double>(cohort) / static_cast<double>(total_sites);
}

}  // namespace

std::pair<double, double> StandardGaussianPair(UniformSource& source) {
  // u1 in (0, 1], so the logarithm is finite; u2 in [0, 1).
  const double u1 = (static_cast<double>(source.NextUint64() >> 11) + 1) * 0x1.0p-53;
  const double u2 = static_cast<double>(source.NextUint64() >> 11) * 0x1.0p-53;
  const double r = std::sqrt(-2 * std::log(u1));
  return {r * std::cos(2 * M_PI * u2), r * std::sin(2 * M_PI * u2)};
}

double ClipUpdateForCentralGaussian(std::vector<float>& update, double clip_norm) {
  std::vector<double> values(update.begin(), update.end());
  const double norm = ClipToL2Norm(values, clip_norm * (1 - 1e-6));
  for (size_t i = 0; i < values.size(); ++i) update[i] = static_cast<float>(values[i]);
  return norm;
}

Status AddCentralGaussianNoise(std::vector<double>& sum, double clip_norm, double noise_multiplier,
                               UniformSource& source) {
  if (!(clip_norm > 0) || std::isinf(clip_norm)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip norm ", clip_norm, " must be positive and finite"));
  }
  if (!(noise_multiplier >= 0) || std::isinf(noise_multiplier)) {
    return absl::InvalidArgumentError(
        absl::StrCat("noise multiplier ", noise_multiplier, " must be >= 0 and finite"));
  }
  const double stddev = noise_multiplier * clip_norm;
  if (stddev == 0) return absl::OkStatus();
  for (size_t i = 0; i < sum.size(); i += 2) {
    const auto [a, b] = StandardGaussianPair(source);
    sum[i] += a * stddev;
    if (i + 1 < sum.size()) sum[i + 1] += b * stddev;
  }
  return absl::OkStatus();
}

StatusOr<std::vector<double>> CentralGaussianRdp(int64_t cohort, int64_t total_sites,
                                                 double noise_multiplier, int64_t rounds,
                                                 const std::vector<double>& orders) {
  ASSIGN_OR_RETURN(double q, CohortRate(cohort, total_sites));
  return ComputeSampledGaussianRdp(q, noise_multiplier, rounds, orders);
}

StatusOr<PrivacySpent> CentralGaussianEpsilon(int64_t cohort, int64_t total_sites,
                                              double noise_multiplier, int64_t rounds,
                                              double delta) {
  ASSIGN_OR_RETURN(double q, CohortRate(cohort, total_sites));
  return SampledGaussianEpsilon(q, noise_multiplier, rounds, delta);
}

}  // namespace hansa

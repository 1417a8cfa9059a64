#include "common/privacy/ddg_accountant.h"

#include <algorithm>
#include <cmath>

namespace hansa {

StatusOr<std::vector<double>> DdgRdp(const DdgParams& params, int64_t rounds,
                                     const std::vector<double>& orders) {
  RETURN_IF_ERROR(params.Validate());
  if (rounds < 1) {
    return absl::InvalidArgumentError(absl::StrCat("rounds ", rounds, " must be at least 1"));
  }
  if (params.noise_multiplier == 0) {
    return absl::InvalidArgumentError("DDG noise_multiplier is 0: no differential privacy");
  }
  const double s2 = params.SiteNoiseVariance();
  if (s2 < 0.25) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DDG per-site noise stddev ", std::sqrt(s2),
        " (integer units) is below 1/2, outside Kairouz et al. Thm. 1; use a finer granularity"));
  }
  const double n = static_cast<double>(params.min_survivors);
  const double d = static_cast<double>(params.PaddedDimension());
  const double delta2 = params.RoundedNormBound();
  const double delta1 = delta2 * std::min(std::sqrt(d), delta2);
  double tau = 0;
  for (int64_t k = 1; k < params.min_survivors; ++k) {
    double kk = static_cast<double>(k);
    tau += std::exp(-2 * M_PI * M_PI * s2 * kk / (kk + 1));
  }
  tau *= 10;
  const double l2 = delta2 / std::sqrt(n * s2);
  const double l1 = delta1 / std::sqrt(n * s2);
  std::vector<double> rdp;
  rdp.reserve(orders.size());
  for (double a : orders) {
    if (!(a > 1) || std::isinf(a)) {
      return absl::InvalidArgumentError(absl::StrCat("RDP order ", a, " must be finite and > 1"));
    }
    double t1 = a / 2 * l2 * l2 + tau * d;
    double t2 = a / 2 * (l2 * l2 + 2 * l1 * tau + tau * tau * d);
    double t3 = a / 2 * std::pow(l2 + std::sqrt(d) * tau, 2);
    rdp.push_back(std::min({t1, t2, t3}) * static_cast<double>(rounds));
  }
  return rdp;
}

StatusOr<PrivacySpent> DdgEpsilon(const DdgParams& params, int64_t rounds, double delta) {
  ASSIGN_OR_RETURN(auto rdp, DdgRdp(params, rounds, DefaultRdpOrders()));
  return EpsilonFromRdp(DefaultRdpOrders(), rdp, delta);
}

}  // namespace hansa

// Rényi-DP accounting of the distributed discrete Gaussian (ddg.h), composed over rounds.
//
// Kairouz, Liu, Steinke (ICML 2021), Thm. 1 with Prop. 14 / Eq. 17 of the arXiv version
// (2102.06387): n sites each add N_Z(0, s^2) per coordinate (s^2 = DdgParams::SiteNoiseVariance,
// integer units, s >= 1/2), the sensitivity is the rounded norm bound Delta_2
// (DdgParams::RoundedNormBound, which includes the inflation from conditional rounding) and
// Delta_1 = Delta_2 * min(sqrt(d'), Delta_2). With tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2
// k/(k+1)), l2 = Delta_2 / (sqrt(n) s), l1 = Delta_1 / (sqrt(n) s), one round has
//   RDP(alpha) = min( alpha/2 l2^2 + tau d',
//                     alpha/2 (l2^2 + 2 l1 tau + tau^2 d'),
//                     alpha/2 (l2 + sqrt(d') tau)^2 ).
// No amplification by sampling: in secure mode the coordinator chooses the cohort, so the
// cohort is not secret from the adversary this protects against. Pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "common/privacy/ddg.h"
#include "common/privacy/rdp.h"

namespace hansa {

// `rounds` compositions at each order. InvalidArgument for bad params, z = 0, a per-site
// stddev below 1/2 (outside Thm. 1), rounds < 1 or orders <= 1.
StatusOr<std::vector<double>> DdgRdp(const DdgParams& params, int64_t rounds,
                                     const std::vector<double>& orders);

// Epsilon of `rounds` rounds over DefaultRdpOrders().
StatusOr<PrivacySpent> DdgEpsilon(const DdgParams& params, int64_t rounds, double delta);

}  // namespace hansa

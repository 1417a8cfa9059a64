// Rényi-DP accountant for the sampled Gaussian mechanism and the RDP -> (epsilon, delta)
// conversion. Pure functions of their arguments; safe to call from any thread.
//
// Sources:
//  - Mironov, Talwar, Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism"
//    (2019), Sec. 3.3: log A_alpha for integer alpha (binomial expansion) and for fractional
//    alpha (the two-sided series with erfc terms). RDP(alpha) = log(A_alpha) / (alpha - 1).
//  - Balle, Barthe, Gaboardi, Hsu, Sato, "Hypothesis testing interpretations and Rényi DP"
//    (AISTATS 2020), Thm. 21, as used by Opacus and Canonne-Kamath-Steinke 2020 Prop. 12:
//    eps = rdp - (log(delta) + log(alpha)) / (alpha - 1) + log((alpha - 1) / alpha).
//  - Mironov, "Rényi Differential Privacy" (2017), Prop. 3: eps = rdp + log(1/delta)/(alpha-1)
//    (the older, looser conversion; kept to compare with published numbers).
#pragma once

#include <cstdint>
#include <vector>

#include "common/status/status.h"

namespace hansa {

// Opacus's default orders: 1 + x/10 for x in 1..99, then 12..63 (151 orders).
const std::vector<double>& DefaultRdpOrders();

// RDP of one step of the sampled Gaussian mechanism with sampling rate q in [0, 1] and noise
// multiplier z > 0 (noise stddev / L2 sensitivity) at order alpha > 1. Returns +inf when the
// value overflows. REQUIRES: valid arguments (see ValidateSampledGaussian).
double SampledGaussianRdp(double q, double z, double alpha);

// InvalidArgument naming the bad argument: q outside (0, 1], z not positive and finite,
// steps < 1.
Status ValidateSampledGaussian(double q, double z, int64_t steps);

// `steps` compositions of the sampled Gaussian at each order (RDP adds up, Mironov 2017 Prop. 1).
StatusOr<std::vector<double>> ComputeSampledGaussianRdp(double q, double z, int64_t steps,
                                                        const std::vector<double>& orders);

struct PrivacySpent {
  double epsilon = 0;
  double delta = 0;
  double order = 0;  // the RDP order at which epsilon is smallest
};

// Smallest epsilon over the orders (Balle et al. 2020 conversion), never negative; epsilon is
// +inf when every order gives +inf. InvalidArgument for delta outside (0, 1), orders <= 1,
// negative or NaN RDP values, or sizes that differ.
StatusOr<PrivacySpent> EpsilonFromRdp(const std::vector<double>& orders,
                                      const std::vector<double>& rdp, double delta);

// The same with Mironov 2017 Prop. 3 (looser; for comparisons only).
StatusOr<PrivacySpent> EpsilonFromRdpClassic(const std::vector<double>& orders,
                                             const std::vector<double>& rdp, double delta);

// Epsilon of `steps` sampled-Gaussian steps on DefaultRdpOrders().
StatusOr<PrivacySpent> SampledGaussianEpsilon(double q, double z, int64_t steps, double delta);

// The smallest noise multiplier z with SampledGaussianEpsilon(q, z, steps, delta).epsilon <=
// epsilon, found by bisection: the result meets the budget and z * (1 - kPlanRelativeTolerance)
// does not. InvalidArgument for bad q/steps/delta/epsilon, or when epsilon is below what any z
// reaches with these orders and delta (the message names that floor).
inline constexpr double kPlanRelativeTolerance = 1e-6;
StatusOr<double> PlanNoiseMultiplier(double epsilon, double delta, double q, int64_t steps);

}  // namespace hansa

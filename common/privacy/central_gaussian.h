// Client-level central Gaussian for plaintext mode (a trusted coordinator, for research
// comparisons): each site's update is clipped to L2 norm C (ClipToL2Norm in ddg.h), the
// coordinator adds N(0, (z C)^2) to every coordinate of the sum. Accounted as the sampled
// Gaussian with q = cohort / total sites (the coordinator samples the cohort and is trusted
// here). Gaussian noise is drawn with Box-Muller from 53-bit uniforms: fine for research, not
// an exact sampler; secure mode uses the discrete Gaussian instead.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "common/privacy/rdp.h"
#include "common/privacy/uniform_source.h"

namespace hansa {

// Two independent N(0, 1) draws (Box-Muller on two 53-bit uniforms from `source`).
std::pair<double, double> StandardGaussianPair(UniformSource& source);

// A site's update before it is uploaded under the central Gaussian: clipped in place to just
// inside `clip_norm` (so that float rounding cannot take it past the coordinator's check);
// returns the norm before clipping.
double ClipUpdateForCentralGaussian(std::vector<float>& update, double clip_norm);

// Adds N(0, (noise_multiplier * clip_norm)^2) to each value. InvalidArgument for a
// non-positive clip norm or negative multiplier.
Status AddCentralGaussianNoise(std::vector<double>& sum, double clip_norm, double noise_multiplier,
                               UniformSource& source);

// RDP of `rounds` rounds with q = cohort / total_sites, on `orders`.
StatusOr<std::vector<double>> CentralGaussianRdp(int64_t cohort, int64_t total_sites,
                                                 double noise_multiplier, int64_t rounds,
                                                 const std::vector<double>& orders);

StatusOr<PrivacySpent> CentralGaussianEpsilon(int64_t cohort, int64_t total_sites,
                                              double noise_multiplier, int64_t rounds,
                                              double delta);

}  // namespace hansa

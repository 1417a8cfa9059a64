// The distributed discrete Gaussian mechanism of Kairouz, Liu, Steinke, "The Distributed
// Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation" (ICML 2021),
// Algorithm 1 (client) and Algorithm 2 (server), as pure functions over std::vector.
//
// Client: clip to L2 norm c, scale by 1/gamma, rotate with a randomized Hadamard transform whose
// signs come from the round's PUBLIC seed (so the server can invert it), round each coordinate
// randomly up or down until the rounded norm is within the bound of Thm. 1 / Prop. 22, then add
// discrete Gaussian noise whose per-site variance makes the sum over min_survivors sites carry
// the planned noise. The result is int64; secure aggregation folds it into Z_2^32 or Z_2^64.
// Server: map the ring sum back to signed integers, invert rotation and scaling.
// Thread-safety: functions are pure apart from the UniformSource passed in.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/privacy/uniform_source.h"
#include "common/status/status.h"

namespace hansa {

struct DdgParams {
  int64_t dimension = 0;             // d, the update's length before padding
  double clip_norm = 1.0;            // c, L2 bound in real units
  double granularity = 1e-3;         // gamma: real units per integer step
  double noise_multiplier = 0;       // z: the noise summed over min_survivors sites has stddev z*c
  double beta = 0.6065306597126334;  // exp(-1/2), the rounding bias of Kairouz et al. Sec. 5
  int64_t min_survivors = 1;         // n: the aggregate is released only if >= n sites survive

  // InvalidArgument naming the bad field (ranges are in the .cc).
  Status Validate() const;
  // d' = the next power of two >= d (the Hadamard transform's size).
  int64_t PaddedDimension() const;
  // The bound on ||rounded||_2 in integer units (Kairouz et al. Thm. 1, the min of
  // c/gamma + sqrt(d') and sqrt((c/gamma)^2 + d'/4 + sqrt(2 log(1/beta)) (c/gamma + sqrt(d')/2))).
  double RoundedNormBound() const;
  // The per-site discrete Gaussian variance in integer units, (z c / gamma)^2 / n, as the
  // sampler rounds it (up, to a multiple of 1/256); 0 when z = 0.
  double SiteNoiseVariance() const;
};

// Clips `values` to L2 norm `clip_norm` in place (scaled down, never up); returns the norm
// before clipping.
double ClipToL2Norm(std::vector<double>& values, double clip_norm);

// Client steps 1-3 (no noise): clip, scale, rotate, conditionally round. `private_source` drives
// the rounding (secret); `round_seed` is the round's public randomness. Output length d'.
// InvalidArgument for bad params, a wrong update length or non-finite values.
StatusOr<std::vector<int64_t>> DdgRoundUpdate(const std::vector<double>& update,
                                              const DdgParams& params, std::string_view round_seed,
                                              UniformSource& private_source);

// Client step 4: d' independent N_Z(0, SiteNoiseVariance()) samples (all zero when z = 0).
StatusOr<std::vector<int64_t>> DdgSiteNoise(const DdgParams& params, UniformSource& source);

// DdgRoundUpdate + DdgSiteNoise, coordinate-wise.
StatusOr<std::vector<int64_t>> DdgEncode(const std::vector<double>& update, const DdgParams& params,
                                         std::string_view round_seed,
                                         UniformSource& private_source);

// Reduction into Z_2^bits (bits = 32 or 64), as uint64 values < 2^bits.
std::vector<uint64_t> ToRing(const std::vector<int64_t>& values, int modulus_bits);
// The signed representative in [-2^(bits-1), 2^(bits-1)).
std::vector<int64_t> FromRing(const std::vector<uint64_t>& ring_values, int modulus_bits);

// Server: the real-valued SUM of the survivors' clipped updates plus noise, length d.
// FailedPrecondition when num_survivors < min_survivors (the noise would be too small: do not
// release, retry the round). InvalidArgument for a wrong length or modulus.
StatusOr<std::vector<double>> DdgDecodeSum(const std::vector<uint64_t>& ring_sum, int modulus_bits,
                                           const DdgParams& params, std::string_view round_seed,
                                           int64_t num_survivors);

// The rotation itself, exposed for tests: y = H D x / sqrt(d') and its inverse
// x = D H y / sqrt(d'), with D the seed's +-1 signs. REQUIRES: size is a power of two.
std::vector<double> RandomizedHadamard(std::vector<double> x, std::string_view round_seed);
std::vector<double> InverseRandomizedHadamard(std::vector<double> y, std::string_view round_seed);

}  // namespace hansa

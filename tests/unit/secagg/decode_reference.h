// The whole-vector decoding of a SecAgg+ ring sum, written as plainly as the encoding's
// definition reads (common/secagg/encoding.h): the reference that the product's block-wise
// DecodeMean is checked against, bit for bit and error for error. Tests only; header-only.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/secagg/encoding.h"
#include "common/secagg/ring.h"
#include "common/status/status.h"

namespace hansa {

struct DecodedSum {
  std::vector<double> weighted_sum;  // sum_i w_i * clip(x_i), per coordinate
  double total_weight = 0;           // sum_i w_i
  // weighted_sum / total_weight (zeros when the total weight is 0).
  std::vector<float> Mean() const {
    std::vector<float> out(weighted_sum.size(), 0.0f);
    if (total_weight <= 0) return out;
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<float>(weighted_sum[i] / total_weight);
    }
    return out;
  }
};

// The ring sum of `num_summands` encoded vectors, decoded in one pass over the whole vector.
inline StatusOr<DecodedSum> DecodeSum(const RingVector& sum, size_t num_summands,
                                      const EncodingParams& params) {
  StatusOr<RingWidth> ring = ChooseRing(params);
  if (!ring.ok()) return ring.status();
  if (sum.width != *ring) {
    return absl::InvalidArgumentError("sum is in a different ring than the encoding parameters");
  }
  if (sum.size() < 1) return absl::InvalidArgumentError("encoded sum is empty (no weight element)");
  const double levels = std::ldexp(1.0, params.bits) - 1.0;
  const uint64_t max_level = (uint64_t{1} << params.bits) - 1;
  const unsigned __int128 max_sum = static_cast<unsigned __int128>(num_summands) * max_level;
  DecodedSum out;
  const size_t n = sum.size() - 1;
  out.weighted_sum.resize(n);
  const double step = 2 * params.clip / levels;
  const double offset = static_cast<double>(num_summands) * params.clip;
  for (size_t i = 0; i <= n; ++i) {
    const uint64_t s = sum.at(i);
    if (s > max_sum) {
      return absl::InvalidArgumentError(
          absl::StrCat("element ", i, " of the sum (", s, ") exceeds ", num_summands,
                       " encoded inputs; the survivor count or the data is wrong"));
    }
    if (i < n) out.weighted_sum[i] = static_cast<double>(s) * step - offset;
  }
  out.total_weight = static_cast<double>(sum.at(n)) / levels;
  return out;
}

}  // namespace hansa

#include "common/plan/standardization.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace hansa {

namespace {

void Split(double v, float* hi, float* lo) {
  *hi = static_cast<float>(v);
  *lo = static_cast<float>(v - static_cast<double>(*hi));
}

}  // namespace

StatusOr<std::vector<float>> EncodeMoments(const std::vector<double>& sum,
                                           const std::vector<double>& sum_squares, int64_t rows) {
  const size_t d = sum.size();
  if (sum_squares.size() != d) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature moments: ", d, " sums and ", sum_squares.size(), " sums of squares"));
  }
  std::vector<float> out(static_cast<size_t>(MomentValues(static_cast<int64_t>(d))));
  for (size_t j = 0; j < d; ++j) {
    if (!std::isfinite(sum[j]) || !std::isfinite(sum_squares[j])) {
      return absl::InvalidArgumentError(
          absl::StrCat("feature ", j, ": its moments are not finite"));
    }
    Split(sum[j], &out[j], &out[d + j]);
    Split(sum_squares[j], &out[2 * d + j], &out[3 * d + j]);
  }
  Split(static_cast<double>(rows), &out[4 * d], &out[4 * d + 1]);
  return out;
}

StatusOr<v1::Standardization> PooledStandardization(const std::vector<double>& summed,
                                                    int64_t features) {
  if (features < 1 || static_cast<int64_t>(summed.size()) != MomentValues(features)) {
    return absl::InvalidArgumentError(absl::StrCat("pooled moments hold ", summed.size(),
                                                   " values; ", features, " features need ",
                                                   MomentValues(features)));
  }
  const size_t d = static_cast<size_t>(features);
  const double rows = std::round(summed[4 * d] + summed[4 * d + 1]);
  if (!(rows >= 1) || !std::isfinite(rows)) {
    return absl::InvalidArgumentError(absl::StrCat("pooled moments count ", rows, " rows"));
  }
  v1::Standardization out;
  out.set_examples(static_cast<uint64_t>(rows));
  for (size_t j = 0; j < d; ++j) {
    const double mean = (summed[j] + summed[d + j]) / rows;
    const double square = (summed[2 * d + j] + summed[3 * d + j]) / rows;
    if (!std::isfinite(mean) || !std::isfinite(square)) {
      return absl::InvalidArgumentError(
          absl::StrCat("pooled moments of feature ", j, " are not finite"));
    }
    const double variance = square - mean * mean;
    // Below what the moments' rounding can tell from 0: a constant feature.
    const double resolution = 1e-12 * std::max(1.0, std::abs(square));
    out.add_mean(mean);
    out.add_std(variance > resolution ? std::sqrt(variance) : 1.0);
  }
  return out;
}

Status CheckStandardization(const v1::Standardization& s, int64_t features) {
  if (s.mean_size() != features || s.std_size() != features) {
    return absl::InvalidArgumentError(
        absl::StrCat("the plan's standardisation has ", s.mean_size(), " means and ", s.std_size(),
                     " standard deviations; this site's rows have ", features, " features"));
  }
  for (int64_t j = 0; j < features; ++j) {
    if (!std::isfinite(s.mean(j)) || !std::isfinite(s.std(j)) || !(s.std(j) > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the plan's standardisation of feature ", j, " is mean ", s.mean(j),
                       ", std ", s.std(j), "; it needs a finite mean and a positive std"));
    }
  }
  return absl::OkStatus();
}

}  // namespace hansa

#include "common/privacy/record_privacy.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/privacy/rdp.h"

namespace hansa {

StatusOr<RecordPrivacyParams> ResolveRecordPrivacy(const RecordPrivacyOptions& options, int epochs,
                                                   int64_t rounds) {
  const double q = options.sampling_rate;
  if (!(q > 0 && q <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("record-level privacy: sampling_rate = ", q, " must be in (0, 1]"));
  }
  if (!(options.clip_norm > 0) || std::isinf(options.clip_norm)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "record-level privacy: clip_norm = ", options.clip_norm, " must be positive and finite"));
  }
  if (epochs < 1 || rounds < 1) {
    return absl::InvalidArgumentError(absl::StrCat("record-level privacy: epochs (", epochs,
                                                   ") and rounds (", rounds,
                                                   ") must be at least 1"));
  }
  RecordPrivacyParams p;
  p.clip_norm = options.clip_norm;
  p.sampling_rate = q;
  p.delta = options.budget.delta;
  p.steps = options.steps > 0 ? options.steps : std::max<int64_t>(1, std::llround(epochs / q));
  p.noise_multiplier = options.noise_multiplier;
  if (p.noise_multiplier == 0) {
    // A hair under the budget, so that the ledger's round-by-round sums never exceed it.
    StatusOr<double> z = PlanNoiseMultiplier(options.budget.epsilon * (1 - 1e-9),
                                             options.budget.delta, q, p.steps * rounds);
    RETURN_IF_ERROR(Annotate(z.status(), "record-level privacy: planning the noise multiplier"));
    p.noise_multiplier = *z;
  }
  RETURN_IF_ERROR(
      Annotate(ValidateSampledGaussian(q, p.noise_multiplier, p.steps), "record-level privacy"));
  return p;
}

}  // namespace hansa

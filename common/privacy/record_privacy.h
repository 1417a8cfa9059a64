// Record-level differential privacy of a federation: the DP-SGD parameters every site trains
// with (client/train/trainer.h RecordDpSettings) and how they are derived from a budget. Shared by
// the coordinator's round engine and hansa simulate, so both plan the same mechanism.
#pragma once

#include <cstdint>

#include "common/privacy/ledger.h"
#include "common/status/status.h"

namespace hansa {

struct RecordPrivacyOptions {
  bool enabled = false;
  double clip_norm = 1.0;       // C, per-example gradient L2 bound
  double noise_multiplier = 0;  // z; 0 = the smallest z whose `rounds` rounds fit the budget
  double sampling_rate = 0.01;  // q, the Poisson rate of each step
  int64_t steps = 0;            // per round; 0 = epochs / q (as many epochs' worth of data)
  PrivacyBudget budget{3.0, 1e-5};
};

// What each round's plan announces.
struct RecordPrivacyParams {
  double clip_norm = 0;
  double noise_multiplier = 0;
  double sampling_rate = 0;
  int64_t steps = 0;
  double delta = 0;
};

// Resolves the defaults of `options` for a federation of `rounds` rounds of `epochs` local
// epochs: steps = round(epochs / q) when 0, and z = the smallest noise multiplier with which
// all rounds stay within the budget when 0 (PlanNoiseMultiplier). InvalidArgument when the
// parameters are not a valid mechanism or no z reaches the budget.
StatusOr<RecordPrivacyParams> ResolveRecordPrivacy(const RecordPrivacyOptions& options, int epochs,
                                                   int64_t rounds);

}  // namespace hansa

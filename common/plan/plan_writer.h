// The round plan's one writer: every field the coordinator puts into a RoundPlan (round,
// attempt, model, cohort, training settings, chunk size, deadline, aggregation, privacy, the
// SecAgg+ part and the study's GDPR facts) is set here, beside the readers that take it apart
// again (plan_readers.h), and a round-trip test (tests/unit/plan) holds the two together.
// Nothing else sets these fields outside tests.
//
// Plain functions; each writes only the plan it is given: safe from any thread on distinct plans.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "common/plan/plan_readers.h"
#include "common/privacy/ddg.h"
#include "common/privacy/record_privacy.h"
#include "common/secagg/params.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// What every plan names: the round, the model the cohort downloads, the cohort, the chunk size.
struct PlanBasics {
  uint64_t round = 0;
  std::string_view model_name;
  std::string_view global_model_sha256;  // of the safetensors payload the sites download
  uint64_t global_model_bytes = 0;
  const std::vector<std::string>* cohort = nullptr;  // REQUIRES: non-null, in cohort order
  uint32_t chunk_bytes = 0;
  // What the model predicts and its loss; null or empty: the built-in models' multiclass
  // cross-entropy.
  const v1::TaskPlan* task = nullptr;
  // The pooled standardisation every site applies, once the statistics step is done; null or
  // empty: none.
  const v1::Standardization* standardization = nullptr;
  // The study's GDPR facts (study_facts.h), in every plan; null or empty: none stated.
  const v1::StudyFacts* study = nullptr;
};

// A training plan's choices.
struct RoundPlanInputs {
  PlanBasics basics;
  uint32_t attempt = 1;  // 1 for a round's first plan, one more for each retry
  // The federation's settings; the plan's seed is TrainingSeed(training->seed(), round, attempt).
  const v1::TrainingSettings* training = nullptr;         // REQUIRES: non-null
  bool secure = false;                                    // AGGREGATION_SECURE, else PLAINTEXT
  const v1::PrivacyPlan* privacy = nullptr;               // client-level privacy, or null for none
  const v1::RecordPrivacyPlan* record_privacy = nullptr;  // record-level, or null for none
  // > 0: the federation's statistics step over rows of this many features
  // (standardization.h): the sites send their feature moments and train nothing.
  uint32_t statistics_features = 0;
};

// The training seed of `attempt` of `round`: a retry trains from another seed, so its update is
// a new contribution, never the one a site may already have sent (which it would refuse to send
// again). The first attempt's seed depends only on `base` and the round.
uint64_t TrainingSeed(uint64_t base, uint64_t round, uint32_t attempt);

// A training plan without its SecAgg+ part (WriteSecAggPlan) and upload deadline
// (SetUploadDeadline), which the coordinator adds later in the attempt.
v1::RoundPlan MakeRoundPlan(const RoundPlanInputs& in);

// An evaluation plan: the basics only (no training, aggregation or privacy: nothing but metrics
// leaves a site).
v1::RoundPlan MakeEvaluationPlan(const PlanBasics& basics);

// The SecAgg+ part of a secure plan.
struct SecAggPlanInputs {
  // Resolved parameters: n, k, t, malicious, ring, vector length, seeds, min_survivors.
  const SecAggParams* params = nullptr;  // REQUIRES: non-null
  double clip = 1.0;                     // each value clipped to [-clip, clip]
  int quantization_bits = 0;
  int64_t max_examples = 0;  // a site's weight is min(1, examples / max_examples)
  absl::Duration stage_timeout;
  // Malicious-coordinator mode: the cohort's certificates (PEM) in cohort order; else ignored.
  const std::vector<std::string>* certificates = nullptr;
};
void WriteSecAggPlan(const SecAggPlanInputs& in, v1::RoundPlan* plan);

// The client-level privacy fields for `params`, the federation budget's `delta` and `mechanism`.
void SetPrivacyPlan(const DdgParams& params, double delta, v1::PrivacyPlan* out,
                    const char* mechanism = kDistributedDiscreteGaussian);
// The record-level (DP-SGD) fields for resolved `params`.
void SetRecordPrivacyPlan(const RecordPrivacyParams& params, v1::RecordPrivacyPlan* out);

// When uploads close; not part of the plan's digest (PlanSha256), since the coordinator sets it
// only once training starts, after the sites consented.
void SetUploadDeadline(absl::Time deadline, v1::RoundPlan* plan);
// Stamps a task as it is handed out at `now` with the time left to its plan's upload deadline
// (Task.upload_ms_left; none when the plan has no deadline): what the site counts from on its
// own clock.
void SetUploadTimeLeft(absl::Time now, v1::Task* task);
// At the site, on receipt at `local_now`: the plan's upload deadline moved onto this machine's
// clock (local_now + upload_ms_left), so a clock minutes ahead of the coordinator's does not
// find the deadline already past. A task without upload_ms_left keeps the plan's deadline.
// Any upload_ms_left is safe: a window past the end of time saturates (SiteUploadDeadline
// bounds it).
void LocalizeUploadDeadline(absl::Time local_now, v1::Task* task);
// When a site's upload starting at `now` gives up: the plan's (localized) upload deadline, but
// never later than `now + longest`. The window is the coordinator's to set, so without the
// bound a coordinator that sets it years ahead and then stops reading would hold the site's
// upload, and its shutdown, for that long. A plan without a deadline gets `longest`.
absl::Time SiteUploadDeadline(const v1::RoundPlan& plan, absl::Time now, absl::Duration longest);

}  // namespace hansa

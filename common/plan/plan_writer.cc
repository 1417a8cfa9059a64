#include "common/plan/plan_writer.h"

#include <algorithm>

namespace hansa {
namespace {

void WriteBasics(const PlanBasics& b, v1::RoundPlan* plan) {
  plan->set_round(b.round);
  plan->set_model_name(b.model_name.data(), b.model_name.size());
  plan->set_global_model_sha256(b.global_model_sha256.data(), b.global_model_sha256.size());
  plan->set_global_model_bytes(b.global_model_bytes);
  plan->mutable_cohort()->Reserve(static_cast<int>(b.cohort->size()));
  for (const std::string& site : *b.cohort) plan->add_cohort(site);
  plan->set_chunk_bytes(b.chunk_bytes);
  if (b.task != nullptr && b.task->ByteSizeLong() > 0) *plan->mutable_task() = *b.task;
  if (b.standardization != nullptr && b.standardization->mean_size() > 0) {
    *plan->mutable_standardization() = *b.standardization;
  }
  if (b.study != nullptr && b.study->ByteSizeLong() > 0) *plan->mutable_study() = *b.study;
}

}  // namespace

uint64_t TrainingSeed(uint64_t base, uint64_t round, uint32_t attempt) {
  uint64_t seed = base * 1000003 + round;
  if (attempt > 1) seed = seed * 1000033 + attempt;
  return seed;
}

v1::RoundPlan MakeRoundPlan(const RoundPlanInputs& in) {
  v1::RoundPlan plan;
  WriteBasics(in.basics, &plan);
  *plan.mutable_training() = *in.training;
  plan.mutable_training()->set_seed(TrainingSeed(in.training->seed(), in.basics.round, in.attempt));
  plan.set_attempt(in.attempt);
  plan.set_aggregation_mode(in.secure ? v1::AGGREGATION_SECURE : v1::AGGREGATION_PLAINTEXT);
  if (in.privacy) *plan.mutable_privacy() = *in.privacy;
  if (in.record_privacy) *plan.mutable_record_privacy() = *in.record_privacy;
  if (in.statistics_features > 0) plan.mutable_statistics()->set_features(in.statistics_features);
  return plan;
}

v1::RoundPlan MakeEvaluationPlan(const PlanBasics& basics) {
  v1::RoundPlan plan;
  WriteBasics(basics, &plan);
  return plan;
}

void WriteSecAggPlan(const SecAggPlanInputs& in, v1::RoundPlan* plan) {
  const SecAggParams& params = *in.params;
  v1::SecAggPlan* sp = plan->mutable_secagg();
  sp->set_num_sites(params.num_sites);
  sp->set_degree(static_cast<uint32_t>(params.degree));
  sp->set_threshold(static_cast<uint32_t>(params.threshold));
  sp->set_malicious(params.malicious);
  sp->set_ring_bits(params.ring == RingWidth::k32 ? 32 : 64);  // read back by RingOfPlan
  sp->set_vector_length(params.vector_length);
  sp->set_round_seed(params.round_seed.data(), params.round_seed.size());
  sp->set_graph_seed_commitment(params.graph_seed_commitment.data(),
                                params.graph_seed_commitment.size());
  sp->set_clip(in.clip);
  sp->set_bits(static_cast<uint32_t>(in.quantization_bits));
  sp->set_max_examples(static_cast<uint64_t>(in.max_examples));
  sp->set_deadline_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(in.stage_timeout)));
  sp->set_min_survivors(params.min_survivors);
  if (params.malicious && in.certificates) {
    for (const std::string& certificate : *in.certificates) sp->add_certificates(certificate);
  }
}

void SetPrivacyPlan(const DdgParams& params, double delta, v1::PrivacyPlan* out,
                    const char* mechanism) {
  out->set_mechanism(mechanism);
  out->set_clip_norm(params.clip_norm);
  out->set_granularity(params.granularity);
  out->set_noise_multiplier(params.noise_multiplier);
  out->set_beta(params.beta);
  out->set_min_survivors(static_cast<uint32_t>(params.min_survivors));
  out->set_delta(delta);
}

void SetRecordPrivacyPlan(const RecordPrivacyParams& params, v1::RecordPrivacyPlan* out) {
  out->set_clip_norm(params.clip_norm);
  out->set_noise_multiplier(params.noise_multiplier);
  out->set_sampling_rate(params.sampling_rate);
  out->set_steps(static_cast<uint32_t>(params.steps));
  out->set_delta(params.delta);
}

void SetUploadDeadline(absl::Time deadline, v1::RoundPlan* plan) {
  plan->set_upload_deadline_unix_ms(absl::ToUnixMillis(deadline));
}

void SetUploadTimeLeft(absl::Time now, v1::Task* task) {
  const int64_t deadline_ms = task->plan().upload_deadline_unix_ms();
  if (deadline_ms <= 0) return;
  task->set_upload_ms_left(std::max<int64_t>(1, deadline_ms - absl::ToUnixMillis(now)));
}

void LocalizeUploadDeadline(absl::Time local_now, v1::Task* task) {
  if (task->upload_ms_left() <= 0) return;
  // absl::Time saturates where the sum of two int64 milliseconds would overflow.
  task->mutable_plan()->set_upload_deadline_unix_ms(
      absl::ToUnixMillis(local_now + absl::Milliseconds(task->upload_ms_left())));
}

absl::Time SiteUploadDeadline(const v1::RoundPlan& plan, absl::Time now, absl::Duration longest) {
  const absl::Time bound = now + longest;
  if (plan.upload_deadline_unix_ms() <= 0) return bound;
  return std::min(bound, absl::FromUnixMillis(plan.upload_deadline_unix_ms()));
}

}  // namespace hansa

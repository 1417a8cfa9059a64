#include "coordinator/round_records.h"

#include "common/plan/plan_readers.h"
#include "common/plan/study_facts.h"

namespace hansa {

AuditEvent FederationStartedOf(const EngineOptions& options) {
  FederationStartedFields f;
  f.federation = options.federation;
  f.config_sha256 = options.config_sha256;
  f.coordinator = options.audit->certificate().Subject().common_name;
  f.coordinator_country = options.coordinator_country;
  f.model = options.model;
  f.rounds = options.rounds;
  f.min_sites = options.min_sites;
  f.aggregation = options.secure.enabled ? audit_events::kAggregationSecure
                                         : audit_events::kAggregationPlaintext;
  f.allowed_countries = options.allowed_countries;
  f.study = StudyFactsJson(options.study);
  AuditEvent started = FederationStarted(f);
  started.fields["strategy"] = options.strategy.Label();
  return started;
}

AuditEvent RoundPlannedOf(const v1::RoundPlan& plan, const std::string& plan_sha256,
                          int64_t attempt, const EngineOptions& options) {
  RoundPlannedFields f;
  f.round = static_cast<int64_t>(plan.round());
  f.attempt = attempt;
  f.plan_sha256 = plan_sha256;
  f.model_sha256 = plan.global_model_sha256();
  f.cohort.assign(plan.cohort().begin(), plan.cohort().end());
  // Audit records keep the words ("secure", "plaintext") that older logs and reports use.
  f.aggregation =
      IsSecure(plan) ? audit_events::kAggregationSecure : audit_events::kAggregationPlaintext;
  if (IsSecure(plan)) {
    const v1::SecAggPlan& sp = plan.secagg();
    SecureAggregationFields a;
    a.num_sites = sp.num_sites();
    a.degree = sp.degree();
    a.threshold = sp.threshold();
    a.malicious = sp.malicious();
    a.ring_bits = sp.ring_bits();
    a.clip = sp.clip();
    a.quantization_bits = sp.bits();
    a.min_survivors = sp.min_survivors();
    f.secure_aggregation = a;
  }
  if (HasClientPrivacy(plan)) {
    const v1::PrivacyPlan& p = plan.privacy();
    f.privacy = nlohmann::json{{"mechanism", p.mechanism()},
                               {"clip", p.clip_norm()},
                               {"granularity", p.granularity()},
                               {"noise_multiplier", p.noise_multiplier()},
                               {"min_survivors", p.min_survivors()},
                               {"delta", p.delta()},
                               {"target_epsilon", options.privacy.budget.epsilon}};
  }
  if (HasRecordPrivacy(plan)) {
    const v1::RecordPrivacyPlan& r = plan.record_privacy();
    f.record_privacy = nlohmann::json{{"mechanism", "dp_sgd"},
                                      {"clip", r.clip_norm()},
                                      {"noise_multiplier", r.noise_multiplier()},
                                      {"sampling_rate", r.sampling_rate()},
                                      {"steps", r.steps()},
                                      {"delta", r.delta()},
                                      {"target_epsilon", options.record_privacy.budget.epsilon}};
  }
  return RoundPlanned(f);
}

}  // namespace hansa

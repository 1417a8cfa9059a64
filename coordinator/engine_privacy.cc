#include "coordinator/engine_privacy.h"

#include "absl/strings/str_cat.h"
#include "common/plan/plan_writer.h"
#include "spdlog/spdlog.h"

namespace hansa {
namespace {

// The client-level mechanism for a model of `dimension` values, from [privacy].
Status ClientPlan(const EngineOptions& options, int64_t dimension, DdgParams* ddg,
                  v1::PrivacyPlan* plan) {
  const PrivacyOptions& p = options.privacy;
  ddg->dimension = dimension;
  ddg->clip_norm = p.clip_norm;
  ddg->granularity = p.granularity;
  ddg->noise_multiplier = p.noise_multiplier;
  ddg->min_survivors = p.min_survivors > 0 ? p.min_survivors : options.min_sites;
  if (p.mechanism == kDistributedDiscreteGaussian) {
    RETURN_IF_ERROR(Annotate(ddg->Validate(), "[privacy]"));
  } else if (p.mechanism != kCentralGaussian) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown privacy mechanism '", p.mechanism, "'"));
  }
  SetPrivacyPlan(*ddg, p.budget.delta, plan, p.mechanism.c_str());
  return absl::OkStatus();
}

// The record-level plan from [record_privacy], its noise multiplier found from the budget when
// none is set.
Status RecordPlan(const EngineOptions& options, v1::RecordPrivacyPlan* plan) {
  const RecordPrivacyOptions& r = options.record_privacy;
  StatusOr<RecordPrivacyParams> resolved =
      ResolveRecordPrivacy(r, static_cast<int>(options.training.epochs()), options.rounds);
  RETURN_IF_ERROR(Annotate(resolved.status(), "[record_privacy]"));
  const RecordPrivacyParams& p = *resolved;
  if (r.noise_multiplier == 0) {
    spdlog::info(
        "record-level privacy: noise multiplier {:.4f} spends epsilon {:g} (delta {:g}) "
        "over {} rounds of {} DP-SGD steps at q = {:g}",
        p.noise_multiplier, r.budget.epsilon, r.budget.delta, options.rounds, p.steps,
        p.sampling_rate);
  }
  SetRecordPrivacyPlan(p, plan);
  return absl::OkStatus();
}

}  // namespace

StatusOr<EnginePrivacy> EnginePrivacy::Open(const EngineOptions& options, int64_t dimension) {
  PrivacyAccounts::Options ledgers;
  DdgParams ddg;
  v1::RoundPlan priced;  // what every plan announces, priced once
  if (options.privacy.enabled) {
    RETURN_IF_ERROR(ClientPlan(options, dimension, &ddg, priced.mutable_privacy()));
    ledgers.client =
        PrivacyAccounts::LedgerSpec{options.state_dir + "/privacy.json", options.privacy.budget};
  }
  if (options.record_privacy.enabled) {
    RETURN_IF_ERROR(RecordPlan(options, priced.mutable_record_privacy()));
    ledgers.record = PrivacyAccounts::LedgerSpec{options.state_dir + "/record_privacy.json",
                                                 options.record_privacy.budget};
  }
  StatusOr<RoundPrivacyCost> cost = PrivacyAccounts::Price(priced, dimension);
  RETURN_IF_ERROR(Annotate(cost.status(), "[privacy] / [record_privacy]"));
  ASSIGN_OR_RETURN(PrivacyAccounts accounts, PrivacyAccounts::Open(ledgers));
  EnginePrivacy privacy(std::move(accounts));
  privacy.ddg_ = ddg;
  privacy.privacy_plan_ = priced.privacy();
  privacy.record_plan_ = priced.record_privacy();
  privacy.round_cost_ = *std::move(cost);
  return privacy;
}

}  // namespace hansa

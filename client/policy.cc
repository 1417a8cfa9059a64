#include "client/policy.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/audit/events.h"
#include "common/model/models.h"
#include "common/secagg/params.h"
#include "proto/plan_digest.h"
#include "proto/secagg_plan.h"
#include "common/logging/logging.h"
#include "spdlog/spdlog.h"

namespace hansa {

Status CheckPlan(const SitePolicy& policy, const v1::RoundPlan& plan, bool sends_update) {
  const bool secure = plan.aggregation() == "secure";
  if (sends_update && policy.require_secure_aggregation && !secure) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), " uses ", plan.aggregation(),
                     " aggregation but this site's policy requires secure aggregation "
                     "(policy.require_secure_aggregation); refused"));
  }
  if (sends_update && secure &&
      static_cast<int>(plan.secagg().min_survivors()) < policy.min_cohort) {
    return absl::InvalidArgumentError(absl::StrCat(
        "round ", plan.round(), " would unmask a sum of as few as ", plan.secagg().min_survivors(),
        " sites but this site's policy requires at least ", policy.min_cohort,
        " (policy.min_cohort); refused"));
  }
  if (sends_update && secure) {
    // The site's own floor under k and t, which the coordinator alone chooses otherwise.
    SecAggParams planned;
    planned.round = plan.round();
    planned.degree = static_cast<int>(plan.secagg().degree());
    planned.threshold = static_cast<int>(plan.secagg().threshold());
    RETURN_IF_ERROR(
        CheckSecAggPolicy(planned, policy.min_secagg_degree, policy.min_secagg_threshold));
  }
  if (sends_update && plan.cohort_size() < policy.min_cohort) {
    return absl::InvalidArgumentError(absl::StrCat(
        "round ", plan.round(), " has ", plan.cohort_size(),
        " sites but this site's policy requires at least ", policy.min_cohort,
        " (policy.min_cohort); refused"));
  }
  const auto& allowed = policy.allowed_models;
  if (std::find(allowed.begin(), allowed.end(), plan.model_name()) == allowed.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "round ", plan.round(), " asks for model '", plan.model_name(),
        "', which this site's policy does not allow (policy.allowed_models); refused"));
  }
  return absl::OkStatus();
}

namespace {

StatusOr<std::optional<PrivacyLedger>> OpenLedger(const std::string& path, double max_epsilon,
                                                  double delta, const char* what) {
  if (max_epsilon <= 0) return std::optional<PrivacyLedger>();
  auto ledger = PrivacyLedger::Open(path, PrivacyBudget{max_epsilon, delta});
  if (!ledger.ok()) return Annotate(ledger.status(), what);
  return std::optional<PrivacyLedger>(*std::move(ledger));
}

// One guarantee of the site's policy: `has` whether the plan gives it, `wants` whether the site
// requires it, `ledger` the site's budget for it (may be empty), `round_rdp` the plan's cost.
StatusOr<std::vector<double>> CheckGuarantee(
    const v1::RoundPlan& plan, const char* name, const char* keys, bool has, bool wants,
    const std::optional<PrivacyLedger>& ledger,
    const std::function<StatusOr<std::vector<double>>()>& round_rdp) {
  if (!has) {
    if (!wants) return std::vector<double>();
    return absl::InvalidArgumentError(absl::StrCat("round ", plan.round(), " has no ", name,
                                                   " differential privacy but this site's policy "
                                                   "requires it (",
                                                   keys, "); refused"));
  }
  StatusOr<std::vector<double>> rdp = round_rdp();
  RETURN_IF_ERROR(Annotate(rdp.status(), absl::StrCat(name, " privacy of round ", plan.round())));
  if (!ledger) return std::vector<double>();
  if (Status fits = ledger->CheckFits(*rdp); !fits.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), " would exceed this site's ", name,
                     " privacy budget: ", fits.message(), " (", keys, "); refused"));
  }
  return rdp;
}

// Books one round in `ledger` under an id of its own: a retried round may have released a
// sum each time, so each accepted plan is an entry.
Status BookRound(PrivacyLedger& ledger, const v1::RoundPlan& plan, const std::string& mechanism,
                 const std::vector<double>& rdp) {
  Status st;
  const int64_t first = static_cast<int64_t>(plan.round()) * 1000;
  for (int64_t id = first; id < first + 1000; ++id) {
    st = ledger.Record(id, mechanism, rdp);
    if (!absl::IsInvalidArgument(st)) break;  // InvalidArgument: that id is taken
  }
  return st;
}

}  // namespace

StatusOr<SitePrivacy> SitePrivacy::Open(const SitePolicy& policy, const std::string& state_dir) {
  SitePrivacy p;
  p.policy_ = policy;
  ASSIGN_OR_RETURN(p.client_,
                   OpenLedger(state_dir + "/privacy.json", policy.max_epsilon, policy.delta,
                              "privacy ledger"));
  ASSIGN_OR_RETURN(p.record_, OpenLedger(state_dir + "/record_privacy.json",
                                         policy.max_record_epsilon, policy.record_delta,
                                         "record privacy ledger"));
  return p;
}

bool SitePrivacy::Booked(const v1::RoundPlan& plan) const {
  return booked_.count(PlanSha256(plan)) > 0;
}

StatusOr<SitePrivacy::Cost> SitePrivacy::Check(const v1::RoundPlan& plan) const {
  Cost cost;
  ASSIGN_OR_RETURN(
      cost.client,
      CheckGuarantee(plan, "client-level", "policy.require_client_dp / policy.max_epsilon",
                     HasClientPrivacy(plan), policy_.require_client_dp || policy_.max_epsilon > 0,
                     client_, [&]() -> StatusOr<std::vector<double>> {
                       ASSIGN_OR_RETURN(ModelLayout layout, BuiltinModelLayout(plan.model_name()));
                       return RoundRdpOfPlan(plan.privacy(), layout.TotalElements());
                     }));
  ASSIGN_OR_RETURN(
      cost.record,
      CheckGuarantee(plan, "record-level",
                     "policy.require_record_dp / policy.max_record_epsilon",
                     HasRecordPrivacy(plan),
                     policy_.require_record_dp || policy_.max_record_epsilon > 0, record_,
                     [&] { return RecordRoundRdp(plan.record_privacy()); }));
  return cost;
}

Status SitePrivacy::Book(const v1::RoundPlan& plan, AuditLog* egress) {
  if (Booked(plan)) return absl::OkStatus();
  ASSIGN_OR_RETURN(Cost cost, Check(plan));
  if (cost.client.empty() && cost.record.empty()) return absl::OkStatus();
  booked_.insert(PlanSha256(plan));
  const auto round = static_cast<int64_t>(plan.round());
  struct Guarantee {
    std::optional<PrivacyLedger>* ledger;
    const std::vector<double>* rdp;
    std::string mechanism;
    const char* name;
    double max_epsilon;
  };
  for (const Guarantee& g : {Guarantee{&client_, &cost.client, plan.privacy().mechanism(),
                                       "client-level", policy_.max_epsilon},
                             Guarantee{&record_, &cost.record, "dp_sgd", "record-level",
                                       policy_.max_record_epsilon}}) {
    if (g.rdp->empty() || !g.ledger->has_value()) continue;
    PrivacyLedger& ledger = **g.ledger;
    RETURN_IF_ERROR(Annotate(BookRound(ledger, plan, g.mechanism, *g.rdp),
                             absl::StrCat(g.name, " privacy ledger")));
    const auto spent = ledger.Spent();
    spdlog::info("round {}: this site's {} privacy spent so far: epsilon {:.4g} of {:g}", round,
                 g.name, spent.epsilon, g.max_epsilon);
    if (egress == nullptr) continue;
    AuditEvent event = PrivacySpentEvent(round, spent.epsilon, spent.delta);
    event.fields["guarantee"] = g.name;
    RETURN_IF_ERROR(Annotate(egress->Append(event).status(), "egress ledger"));
  }
  return absl::OkStatus();
}

}  // namespace hansa

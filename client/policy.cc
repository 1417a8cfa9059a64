#include "client/policy.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/audit/events.h"
#include "common/audit/record_text.h"
#include "common/crypto/sha256.h"
#include "common/logging/logging.h"
#include "common/model/models.h"
#include "common/model/task.h"
#include "common/net/chunk_limits.h"
#include "common/plan/plan_readers.h"
#include "common/plan/study_facts.h"
#include "common/secagg/params.h"
#include "proto/plan_digest.h"
#include "spdlog/spdlog.h"

namespace hansa {

Status CheckPlan(const SitePolicy& policy, const v1::RoundPlan& plan, bool sends_update) {
  if (!policy.study.empty() && plan.study().id() != policy.study) {
    const std::string& id = plan.study().id();
    return absl::InvalidArgumentError(absl::StrCat(
        "round ", plan.round(),
        id.empty() ? " names no study"
                   : absl::StrCat(" belongs to study '", RecordText(id, kMaxStudyIdBytes), "'"),
        ", but this site's policy takes part only in study '", policy.study,
        "' (policy.study); refused"));
  }
  if (policy.require_legal_basis) {
    if (std::string missing = MissingStudyFacts(plan.study()); !missing.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("round ", plan.round(), " states no ", missing,
                       " of the study, but this site's policy requires a purpose and a legal "
                       "basis (policy.require_legal_basis); refused"));
    }
  }
  if (!policy.purpose_sha256.empty()) {
    if (std::string purpose = PurposeSha256(plan.study()); purpose != policy.purpose_sha256) {
      return absl::InvalidArgumentError(
          absl::StrCat("round ", plan.round(), "'s study purpose (SHA-256 ", purpose,
                       ") is not the one this site takes part for (policy.purpose_sha256 = ",
                       policy.purpose_sha256, "); refused"));
    }
  }
  if (sends_update && !HasKnownAggregation(plan)) {
    // Neither guessed nor taken for plaintext: the site cannot tell what would protect it.
    return absl::InvalidArgumentError(absl::StrCat(
        "round ", plan.round(), " names an aggregation this site does not know (",
        AggregationName(plan),
        "; plaintext or secure expected): the coordinator and this site speak different "
        "versions of the plan; refused"));
  }
  if (plan.chunk_bytes() != 0 &&
      (plan.chunk_bytes() < kMinChunkBytes || plan.chunk_bytes() > kMaxChunkBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), " cuts transfers into chunks of ", plan.chunk_bytes(),
                     " bytes; a federation's chunks are ", kMinChunkBytes, " to ", kMaxChunkBytes,
                     " bytes (transfer.chunk_bytes in coordinator.toml); refused"));
  }
  const bool secure = IsSecure(plan);
  if (sends_update && policy.require_secure_aggregation && !secure) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), " uses ", AggregationName(plan),
                     " aggregation but this site's policy requires secure aggregation "
                     "(policy.require_secure_aggregation); refused"));
  }
  if (sends_update && HasClientPrivacy(plan)) {
    // The site adds the noise only under the distributed discrete Gaussian, which protects
    // only inside a secure sum; under the central Gaussian the coordinator adds it to a
    // plaintext sum. Any other pairing would book a guarantee the update leaves without.
    const std::string& mechanism = plan.privacy().mechanism();
    const bool pairs = (mechanism == kDistributedDiscreteGaussian && secure) ||
                       (mechanism == kCentralGaussian && !secure);
    if (!pairs) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", plan.round(), " names the privacy mechanism '", RecordText(mechanism, 64),
          "' with ", AggregationName(plan), " aggregation; this site knows ",
          kDistributedDiscreteGaussian, " with secure aggregation and ", kCentralGaussian,
          " with plaintext, and any other pairing would let the update leave without the "
          "noise the plan books; refused"));
    }
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
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), " has ", plan.cohort_size(),
                     " sites but this site's policy requires at least ", policy.min_cohort,
                     " (policy.min_cohort); refused"));
  }
  const auto& allowed = policy.allowed_models;
  if (std::find(allowed.begin(), allowed.end(), plan.model_name()) == allowed.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "round ", plan.round(), " asks for model '", plan.model_name(),
        "', which this site's policy does not allow (policy.allowed_models); refused"));
  }
  if (IsScriptModelName(plan.model_name()) && policy.script_models.count(plan.model_name()) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), " asks for TorchScript model '", plan.model_name(),
                     "', which this site allows but has no copy of (model.files); refused"));
  }
  if (plan.has_statistics() && !IsSecure(plan)) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(),
                     " asks for this site's feature moments without secure "
                     "aggregation: the coordinator would see them; refused"));
  }
  if (Status task = PlanTask(plan).status(); !task.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), ": ", task.message(), "; refused"));
  }
  return absl::OkStatus();
}

StatusOr<Task> PlanTask(const v1::RoundPlan& plan) {
  return ParseTask(plan.task().kind(), plan.task().loss(), plan.task().buffers());
}

StatusOr<int64_t> UpdateValues(const SitePolicy& policy, const v1::RoundPlan& plan) {
  auto script = policy.script_models.find(plan.model_name());
  if (script == policy.script_models.end()) {
    ASSIGN_OR_RETURN(ModelLayout layout, BuiltinModelLayout(plan.model_name()));
    return layout.TotalElements();
  }
  ASSIGN_OR_RETURN(Task task, PlanTask(plan));
  return script->second.parameter_values +
         (task.buffers == Buffers::kAverage ? script->second.buffer_values : 0);
}

namespace {

std::optional<PrivacyAccounts::LedgerSpec> Ledger(const std::string& path, double max_epsilon,
                                                  double delta) {
  if (max_epsilon <= 0) return std::nullopt;
  return PrivacyAccounts::LedgerSpec{path, PrivacyBudget{max_epsilon, delta}};
}

// Refuses a plan that lacks a guarantee the site requires (`keys` name the policy keys).
Status RequireGuarantee(const v1::RoundPlan& plan, const char* name, const char* keys, bool has,
                        bool wants) {
  if (has || !wants) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("round ", plan.round(), " has no ", name,
                                                 " differential privacy but this site's policy "
                                                 "requires it (",
                                                 keys, "); refused"));
}

constexpr char kClientKeys[] = "policy.require_client_dp / policy.max_epsilon";
constexpr char kRecordKeys[] = "policy.require_record_dp / policy.max_record_epsilon";

}  // namespace

StatusOr<SitePrivacy> SitePrivacy::Open(const SitePolicy& policy, const std::string& state_dir) {
  PrivacyAccounts::Options options;
  options.client = Ledger(state_dir + "/privacy.json", policy.max_epsilon, policy.delta);
  options.record =
      Ledger(state_dir + "/record_privacy.json", policy.max_record_epsilon, policy.record_delta);
  ASSIGN_OR_RETURN(PrivacyAccounts accounts, PrivacyAccounts::Open(options));
  SitePrivacy p(std::move(accounts));
  p.policy_ = policy;
  return p;
}

bool SitePrivacy::Booked(const v1::RoundPlan& plan) const {
  return booked_.count(PlanSha256(plan)) > 0;
}

StatusOr<RoundPrivacyCost> SitePrivacy::Check(const v1::RoundPlan& plan) const {
  const bool client = HasClientPrivacy(plan), record = HasRecordPrivacy(plan);
  RETURN_IF_ERROR(RequireGuarantee(plan, "client-level", kClientKeys, client,
                                   policy_.require_client_dp || policy_.max_epsilon > 0));
  RETURN_IF_ERROR(RequireGuarantee(plan, "record-level", kRecordKeys, record,
                                   policy_.require_record_dp || policy_.max_record_epsilon > 0));
  if (accounts_.client() != nullptr || accounts_.record() != nullptr) {
    // A plan whose attempt the ledgers cannot number is refused before anything is trained.
    if (Status entry = PrivacyAccounts::LedgerEntry(static_cast<int64_t>(plan.round()),
                                                    static_cast<int64_t>(plan.attempt()))
                           .status();
        !entry.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(entry.message(), "; refused"));
    }
  }
  int64_t dimension = 0;  // the client-level curve depends on the model's size
  if (client) {
    ASSIGN_OR_RETURN(dimension, UpdateValues(policy_, plan));
  }
  StatusOr<RoundPrivacyCost> cost = PrivacyAccounts::Price(plan, dimension);
  RETURN_IF_ERROR(Annotate(cost.status(), absl::StrCat("privacy of round ", plan.round())));
  // Each guarantee against its own budget, so that the refusal names the one exceeded.
  struct Guarantee {
    const char* name;
    const char* keys;
    RoundPrivacyCost alone;
  };
  RoundPrivacyCost client_only, record_only;
  client_only.client_mechanism = cost->client_mechanism;
  client_only.client = cost->client;
  record_only.record = cost->record;
  for (const Guarantee& g : {Guarantee{"client-level", kClientKeys, client_only},
                             Guarantee{"record-level", kRecordKeys, record_only}}) {
    if (Status fits = accounts_.CheckFits(g.alone); !fits.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("round ", plan.round(), " would exceed this site's ", g.name,
                       " privacy budget: ", fits.message(), " (", g.keys, "); refused"));
    }
  }
  return cost;
}

Status SitePrivacy::Book(const v1::RoundPlan& plan, const EgressRecorder& egress) {
  if (Booked(plan)) return absl::OkStatus();
  ASSIGN_OR_RETURN(RoundPrivacyCost cost, Check(plan));
  if (accounts_.client() == nullptr && accounts_.record() == nullptr) return absl::OkStatus();
  const std::string digest = PlanSha256(plan);
  booked_.insert(digest);
  // Named by the plan: another plan under the same round and attempt (the next study's round 1,
  // or a coordinator re-planning a used number) is another release and is booked again.
  return accounts_.Book(
      static_cast<int64_t>(plan.round()), static_cast<int64_t>(plan.attempt()), cost,
      [&](AuditEvent event) {
        spdlog::info("round {}: this site's {} privacy spent so far: epsilon {}", plan.round(),
                     event.fields.value("guarantee", ""), event.fields["epsilon"].dump());
        return egress.Append(event);
      },
      digest);
}

nlohmann::json PolicyJson(const SitePolicy& policy) {
  nlohmann::json scripts = nlohmann::json::array();
  for (const auto& entry : policy.script_models) scripts.push_back(entry.first);
  return {{"coordinator_fingerprint", policy.coordinator_fingerprint},
          {"allowed_models", policy.allowed_models},
          {"script_models", std::move(scripts)},
          {"require_secure_aggregation", policy.require_secure_aggregation},
          {"require_legal_basis", policy.require_legal_basis},
          {"purpose_sha256", policy.purpose_sha256},
          {"study", policy.study},
          {"min_cohort", policy.min_cohort},
          {"min_secagg_degree", policy.min_secagg_degree},
          {"min_secagg_threshold", policy.min_secagg_threshold},
          {"max_model_bytes", policy.max_model_bytes},
          {"require_client_dp", policy.require_client_dp},
          {"max_epsilon", policy.max_epsilon},
          {"delta", policy.delta},
          {"require_record_dp", policy.require_record_dp},
          {"max_record_epsilon", policy.max_record_epsilon},
          {"record_delta", policy.record_delta}};
}

AuditEvent PolicyApplied(const SitePolicy& policy, const std::string& reason) {
  nlohmann::json json = PolicyJson(policy);
  const std::string sha256 = ToHex(Sha256(json.dump()));
  return {audit_events::kPolicyApplied,
          {{"reason", reason}, {"sha256", sha256}, {"policy", std::move(json)}}};
}

}  // namespace hansa

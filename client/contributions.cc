#include "client/contributions.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/audit/events.h"
#include "common/audit/verify.h"
#include "common/crypto/sha256.h"
#include "proto/plan_digest.h"

namespace hansa {
std::string UpdateKey(const v1::RoundPlan& plan) {
  // The feature moments are a function of the site's data alone: whatever the attempt, seed
  // or round, it sends them once.
  if (plan.has_statistics()) {
    return ToHex(Sha256(absl::StrCat("hansa/moments/v1\n", plan.statistics().features())));
  }
  // Everything the site's training is a deterministic function of, besides its own data. Not
  // the round number: a coordinator could plan the same model and seed under another round.
  const v1::TrainingSettings& t = plan.training();
  return ToHex(Sha256(absl::StrCat("hansa/update/v1\n", plan.model_name(), "\n",
                                   plan.global_model_sha256(), "\n", t.epochs(), "\n",
                                   t.batch_size(), "\n", absl::StrFormat("%a", t.learning_rate()),
                                   "\n", absl::StrFormat("%a", t.momentum()), "\n",
                                   absl::StrFormat("%a", t.weight_decay()), "\n", t.seed())));
}

StatusOr<SpentContributions> SpentContributions::FromEgressLedger(const std::string& path) {
  SpentContributions out;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return out;
  ASSIGN_OR_RETURN(std::vector<AuditRecord> records, ReadAuditRecordsUnverified(path));
  for (const AuditRecord& r : records) {
    if (r.event != audit_events::kContributionSpent) continue;
    const nlohmann::json& f = r.fields;
    if (!f.contains("update") || !f.contains("plan_sha256") || !f["update"].is_string() ||
        !f["plan_sha256"].is_string()) {
      return absl::DataLossError(absl::StrCat(path, ": record ", r.seq,
                                              " (contribution_spent) lacks a field; the ledger "
                                              "was not written by this version"));
    }
    out.spent_[f["update"].get<std::string>()] = f["plan_sha256"].get<std::string>();
  }
  return out;
}

Status SpentContributions::Check(const v1::RoundPlan& plan) const {
  auto it = spent_.find(UpdateKey(plan));
  if (it == spent_.end() || it->second == PlanSha256(plan)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "round ", plan.round(), " attempt ", plan.attempt(),
      " asks for an update this site already sent under another plan (same model, global "
      "model, training settings and seed ",
      plan.training().seed(),
      "); it may have been unmasked, and a second sum with it would reveal it; refused"));
}

Status SpentContributions::Spend(const v1::RoundPlan& plan, const EgressRecorder& egress) {
  const std::string key = UpdateKey(plan);
  const std::string digest = PlanSha256(plan);
  if (auto it = spent_.find(key); it != spent_.end() && it->second == digest) {
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(Check(plan));
  RETURN_IF_ERROR(egress.Append(ContributionSpent(
      static_cast<int64_t>(plan.round()), static_cast<int64_t>(plan.attempt()), digest, key)));
  spent_[key] = digest;
  return absl::OkStatus();
}

}  // namespace hansa

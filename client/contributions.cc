#include "client/contributions.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/audit/events.h"
#include "common/audit/verify.h"
#include "proto/plan_digest.h"

namespace hansa {
namespace {

std::string UpdateKey(uint64_t round, const std::string& model_sha256, uint64_t seed) {
  return absl::StrCat(round, "/", model_sha256, "/", seed);
}

std::string UpdateKey(const v1::RoundPlan& plan) {
  return UpdateKey(plan.round(), plan.global_model_sha256(), plan.training().seed());
}

}  // namespace

StatusOr<SpentContributions> SpentContributions::FromEgressLedger(const std::string& path) {
  SpentContributions out;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return out;
  ASSIGN_OR_RETURN(std::vector<AuditRecord> records, ReadAuditRecordsUnverified(path));
  for (const AuditRecord& r : records) {
    if (r.event != audit_events::kContributionSpent) continue;
    const nlohmann::json& f = r.fields;
    if (!f.contains("round") || !f.contains("model_sha256") || !f.contains("training_seed") ||
        !f.contains("plan_sha256")) {
      return absl::DataLossError(absl::StrCat(path, ": record ", r.seq,
                                              " (contribution_spent) lacks a field; the ledger "
                                              "was not written by this version"));
    }
    out.spent_[UpdateKey(f["round"].get<uint64_t>(), f["model_sha256"].get<std::string>(),
                         f["training_seed"].get<uint64_t>())] = f["plan_sha256"].get<std::string>();
  }
  return out;
}

Status SpentContributions::Check(const v1::RoundPlan& plan) const {
  auto it = spent_.find(UpdateKey(plan));
  if (it == spent_.end() || it->second == PlanSha256(plan)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "round ", plan.round(), " attempt ", plan.attempt(),
      " asks for the update this site already sent in an earlier attempt (same global model "
      "and training seed ",
      plan.training().seed(),
      "); it may have been unmasked, and a second sum with it would reveal it; refused"));
}

Status SpentContributions::Spend(const v1::RoundPlan& plan, AuditLog& egress) {
  const std::string key = UpdateKey(plan);
  const std::string digest = PlanSha256(plan);
  if (auto it = spent_.find(key); it != spent_.end() && it->second == digest) {
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(Check(plan));
  RETURN_IF_ERROR(
      Annotate(egress
                   .Append(ContributionSpent(static_cast<int64_t>(plan.round()),
                                             static_cast<int64_t>(plan.attempt()), digest,
                                             plan.global_model_sha256(), plan.training().seed()))
                   .status(),
               "egress ledger"));
  spent_[key] = digest;
  return absl::OkStatus();
}

}  // namespace hansa

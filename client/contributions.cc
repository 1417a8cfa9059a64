#include "client/contributions.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/audit/events.h"
#include "common/audit/verify.h"
#include "common/crypto/sha256.h"
#include "proto/plan_digest.h"

namespace hansa {
namespace {

Sha256Digest UpdateDigest(const v1::RoundPlan& plan) {
  // The feature moments are a function of the site's data alone: whatever the attempt, seed
  // or round, it sends them once.
  if (plan.has_statistics()) {
    return Sha256(absl::StrCat("hansa/moments/v1\n", plan.statistics().features()));
  }
  // Everything the site's training is a deterministic function of, besides its own data. Not
  // the round number: a coordinator could plan the same model and seed under another round.
  const v1::TrainingSettings& t = plan.training();
  return Sha256(absl::StrCat("hansa/update/v1\n", plan.model_name(), "\n",
                             plan.global_model_sha256(), "\n", t.epochs(), "\n", t.batch_size(),
                             "\n", absl::StrFormat("%a", t.learning_rate()), "\n",
                             absl::StrFormat("%a", t.momentum()), "\n",
                             absl::StrFormat("%a", t.weight_decay()), "\n", t.seed()));
}

// The plan's digest (PlanSha256 is its hex).
Sha256Digest PlanDigest(const v1::RoundPlan& plan) {
  // PlanSha256 is always 64 hex digits.
  return *Sha256FromHex(PlanSha256(plan));
}

}  // namespace

std::string UpdateKey(const v1::RoundPlan& plan) { return ToHex(UpdateDigest(plan)); }

std::vector<SpentContributions::Entry>::const_iterator SpentContributions::Find(
    const Sha256Digest& update) const {
  return std::lower_bound(spent_.begin(), spent_.end(), update,
                          [](const Entry& e, const Sha256Digest& u) { return e.update < u; });
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
    StatusOr<Sha256Digest> update = Sha256FromHex(f["update"].get<std::string>());
    StatusOr<Sha256Digest> plan = Sha256FromHex(f["plan_sha256"].get<std::string>());
    if (!update.ok() || !plan.ok()) {
      return absl::DataLossError(absl::StrCat(path, ": record ", r.seq,
                                              " (contribution_spent): update or plan_sha256 is "
                                              "not 64 hex digits; the ledger is damaged"));
    }
    out.spent_.push_back(Entry{*update, *plan});
  }
  // Sorted by update; of two records of one update the later one stands, as it did before.
  std::stable_sort(out.spent_.begin(), out.spent_.end(),
                   [](const Entry& a, const Entry& b) { return a.update < b.update; });
  auto last = std::unique(out.spent_.rbegin(), out.spent_.rend(),
                          [](const Entry& a, const Entry& b) { return a.update == b.update; });
  out.spent_.erase(out.spent_.begin(), last.base());
  return out;
}

Status SpentContributions::Check(const v1::RoundPlan& plan) const {
  const Sha256Digest update = UpdateDigest(plan);
  auto it = Find(update);
  if (it == spent_.end() || it->update != update || it->plan == PlanDigest(plan)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "round ", plan.round(), " attempt ", plan.attempt(),
      " asks for an update this site already sent under another plan (same model, global "
      "model, training settings and seed ",
      plan.training().seed(),
      "); it may have been unmasked, and a second sum with it would reveal it; refused"));
}

bool SpentContributions::SpentBy(const v1::RoundPlan& plan) const {
  const Sha256Digest update = UpdateDigest(plan);
  auto it = Find(update);
  return it != spent_.end() && it->update == update && it->plan == PlanDigest(plan);
}

Status SpentContributions::Spend(const v1::RoundPlan& plan, const EgressRecorder& egress) {
  const Sha256Digest update = UpdateDigest(plan);
  const Sha256Digest digest = PlanDigest(plan);
  auto it = Find(update);
  if (it != spent_.end() && it->update == update) {
    // Spent before: by this plan (answered again after a rejoin), or refused.
    return it->plan == digest ? absl::OkStatus() : Check(plan);
  }
  RETURN_IF_ERROR(egress.Append(ContributionSpent(static_cast<int64_t>(plan.round()),
                                                  static_cast<int64_t>(plan.attempt()),
                                                  ToHex(digest), ToHex(update))));
  spent_.insert(it, Entry{update, digest});
  return absl::OkStatus();
}

}  // namespace hansa

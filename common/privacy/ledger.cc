#include "common/privacy/ledger.h"

#include <cmath>

#include "common/fileio/fileio.h"
#include "nlohmann/json.hpp"

namespace hansa {
namespace {

constexpr int kLedgerVersion = 1;

Status DataLoss(const std::string& path, const std::string& what) {
  return absl::DataLossError(absl::StrCat("privacy ledger ", path, ": ", what,
                                          "; restore it from backup, never delete it"));
}

}  // namespace

StatusOr<PrivacyLedger> PrivacyLedger::Open(std::string path, PrivacyBudget budget) {
  if (!(budget.epsilon > 0) || std::isinf(budget.epsilon) ||
      !(budget.delta > 0 && budget.delta < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("privacy budget (epsilon ", budget.epsilon,
                                                   ", delta ", budget.delta,
                                                   ") needs epsilon > 0 and delta in (0, 1)"));
  }
  PrivacyLedger ledger(path, budget);
  auto bytes = ReadFile(path, size_t{64} << 20);
  if (absl::IsNotFound(bytes.status())) return ledger;
  RETURN_IF_ERROR(Annotate(bytes.status(), "reading privacy ledger"));
  nlohmann::json j = nlohmann::json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return DataLoss(path, "not valid JSON");
  try {
    if (j.at("version").get<int>() != kLedgerVersion) {
      return DataLoss(path, "unknown version");
    }
    if (j.at("orders").get<std::vector<double>>() != DefaultRdpOrders()) {
      return DataLoss(path, "written with different RDP orders");
    }
    for (const auto& e : j.at("rounds")) {
      Entry entry{e.at("round").get<int64_t>(), e.at("mechanism").get<std::string>(),
                  e.at("rdp").get<std::vector<double>>(), e.value("plan", std::string())};
      if (entry.rdp.size() != ledger.total_.size()) {
        return DataLoss(path, absl::StrCat("round ", entry.round, " has a malformed RDP curve"));
      }
      for (size_t i = 0; i < entry.rdp.size(); ++i) ledger.total_[i] += entry.rdp[i];
      ledger.rounds_.push_back(std::move(entry));
    }
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(path, absl::StrCat("unexpected structure (", e.what(), ")"));
  }
  return ledger;
}

PrivacySpent PrivacyLedger::Spent() const {
  if (rounds_.empty()) return {0, budget_.delta, DefaultRdpOrders()[0]};
  auto spent = EpsilonFromRdp(DefaultRdpOrders(), total_, budget_.delta);
  // total_ was validated when each round was recorded or loaded; a failure is a bug.
  return spent.ok() ? *spent : PrivacySpent{INFINITY, budget_.delta, 0};
}

StatusOr<PrivacySpent> PrivacyLedger::SpentWith(const std::vector<double>& round_rdp) const {
  if (round_rdp.size() != total_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("round RDP curve has ", round_rdp.size(),
                                                   " values; need one per default order (",
                                                   total_.size(), ")"));
  }
  std::vector<double> sum = total_;
  for (size_t i = 0; i < sum.size(); ++i) sum[i] += round_rdp[i];
  return EpsilonFromRdp(DefaultRdpOrders(), sum, budget_.delta);
}

Status PrivacyLedger::CheckFits(const std::vector<double>& round_rdp) const {
  ASSIGN_OR_RETURN(PrivacySpent after, SpentWith(round_rdp));
  if (after.epsilon > budget_.epsilon) {
    return absl::FailedPreconditionError(
        absl::StrCat("this round would bring epsilon to ", after.epsilon, " (delta ", budget_.delta,
                     "), over the maximum of ", budget_.epsilon, "; ", Spent().epsilon,
                     " spent in ", rounds_.size(), " rounds so far"));
  }
  return absl::OkStatus();
}

Status PrivacyLedger::Record(int64_t round, const std::string& mechanism,
                             const std::vector<double>& round_rdp, const std::string& plan) {
  for (const Entry& e : rounds_) {
    if (e.round == round && e.plan == plan) {
      return absl::InvalidArgumentError(
          absl::StrCat("round ", round, " is already in the privacy ledger ", path_));
    }
  }
  RETURN_IF_ERROR(CheckFits(round_rdp));
  std::vector<Entry> next = rounds_;
  next.push_back({round, mechanism, round_rdp, plan});
  RETURN_IF_ERROR(Save(next));
  rounds_ = std::move(next);
  for (size_t i = 0; i < total_.size(); ++i) total_[i] += round_rdp[i];
  return absl::OkStatus();
}

Status PrivacyLedger::Save(const std::vector<Entry>& rounds) const {
  nlohmann::json j;
  j["version"] = kLedgerVersion;
  j["budget"] = {{"epsilon", budget_.epsilon}, {"delta", budget_.delta}};
  j["orders"] = DefaultRdpOrders();
  j["rounds"] = nlohmann::json::array();
  for (const Entry& e : rounds) {
    nlohmann::json entry = {{"round", e.round}, {"mechanism", e.mechanism}, {"rdp", e.rdp}};
    if (!e.plan.empty()) entry["plan"] = e.plan;
    j["rounds"].push_back(std::move(entry));
  }
  return Annotate(WriteFileAtomically(path_, j.dump(1) + "\n", 0600), "saving privacy ledger");
}

}  // namespace hansa

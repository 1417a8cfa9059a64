#include "common/privacy/accounts.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/plan/plan_readers.h"

namespace hansa {

StatusOr<int64_t> PrivacyAccounts::LedgerEntry(int64_t round, int64_t attempt) {
  if (attempt < 1 || attempt >= kAttempts) {
    return absl::InternalError(absl::StrCat("round ", round, " attempt ", attempt,
                                            " cannot be booked: attempts run from 1 to ",
                                            kAttempts - 1));
  }
  // A round the numbering cannot hold (a plan's round is the coordinator's to set) would
  // overflow into another round's entry.
  if (round < 0 || round > (std::numeric_limits<int64_t>::max() - kAttempts) / kAttempts) {
    return absl::InternalError(
        absl::StrCat("round ", round, " cannot be booked: a ledger numbers rounds from 0 to ",
                     (std::numeric_limits<int64_t>::max() - kAttempts) / kAttempts));
  }
  return round * kAttempts + attempt;
}

StatusOr<PrivacyAccounts> PrivacyAccounts::Open(const Options& options) {
  PrivacyAccounts accounts;
  if (options.client) {
    StatusOr<PrivacyLedger> ledger =
        PrivacyLedger::Open(options.client->path, options.client->budget);
    RETURN_IF_ERROR(Annotate(ledger.status(), "client-level privacy ledger"));
    accounts.client_ = *std::move(ledger);
  }
  if (options.record) {
    StatusOr<PrivacyLedger> ledger =
        PrivacyLedger::Open(options.record->path, options.record->budget);
    RETURN_IF_ERROR(Annotate(ledger.status(), "record-level privacy ledger"));
    accounts.record_ = *std::move(ledger);
  }
  return accounts;
}

StatusOr<RoundPrivacyCost> PrivacyAccounts::Price(const v1::RoundPlan& plan, int64_t dimension) {
  RoundPrivacyCost cost;
  if (HasClientPrivacy(plan)) {
    cost.client_mechanism = plan.privacy().mechanism();
    StatusOr<std::vector<double>> rdp = RoundRdpOfPlan(plan.privacy(), dimension);
    RETURN_IF_ERROR(Annotate(rdp.status(), "client-level privacy"));
    cost.client = *std::move(rdp);
  }
  if (HasRecordPrivacy(plan)) {
    ASSIGN_OR_RETURN(cost.record, RecordRoundRdp(plan.record_privacy()));
  }
  return cost;
}

Status PrivacyAccounts::CheckFits(const RoundPrivacyCost& cost) const {
  if (client_ && !cost.client.empty()) {
    RETURN_IF_ERROR(Annotate(client_->CheckFits(cost.client), "client-level"));
  }
  if (record_ && !cost.record.empty()) {
    RETURN_IF_ERROR(Annotate(record_->CheckFits(cost.record), "record-level"));
  }
  return absl::OkStatus();
}

Status PrivacyAccounts::Book(int64_t round, int64_t attempt, const RoundPrivacyCost& cost,
                             const RecordFn& record, const std::string& plan) {
  ASSIGN_OR_RETURN(const int64_t entry, LedgerEntry(round, attempt));
  struct Guarantee {
    std::optional<PrivacyLedger>* ledger;
    const std::vector<double>* rdp;
    const std::string* mechanism;
    const char* name;
  };
  static const std::string kDpSgd = "dp_sgd";
  for (const Guarantee& g :
       {Guarantee{&client_, &cost.client, &cost.client_mechanism, "client-level"},
        Guarantee{&record_, &cost.record, &kDpSgd, "record-level"}}) {
    if (!g.ledger->has_value() || g.rdp->empty()) continue;
    PrivacyLedger& ledger = **g.ledger;
    // InvalidArgument: this entry is booked already (the same plan's attempt, booked again).
    Status spent = ledger.Record(entry, *g.mechanism, *g.rdp, plan);
    if (!spent.ok() && !absl::IsInvalidArgument(spent)) return spent;
    const PrivacySpent total = ledger.Spent();
    AuditEvent event = PrivacySpentEvent(round, total.epsilon, total.delta);
    event.fields["guarantee"] = g.name;
    RETURN_IF_ERROR(record(std::move(event)));
  }
  return absl::OkStatus();
}

}  // namespace hansa

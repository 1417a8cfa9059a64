// The privacy accounts one party keeps: the client-level and the record-level ledger (either may
// be off), what one round of a plan costs in each, whether it fits, and booking it with its audit
// record. The coordinator and the site keep theirs the same way, and number entries the same way
// (LedgerEntry), so a reviewer can match one side's entries to the other's.
//
// Not thread-safe: one owner (the round engine's driver thread, a site's session).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/audit/events.h"
#include "common/privacy/ledger.h"
#include "common/status/status.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// What one round of a plan costs: an RDP curve on DefaultRdpOrders() per guarantee the plan
// asks for (empty for one it does not).
struct RoundPrivacyCost {
  std::string client_mechanism;  // the plan's privacy.mechanism
  std::vector<double> client;
  std::vector<double> record;  // DP-SGD
};

class PrivacyAccounts {
 public:
  // One ledger: its file and budget.
  struct LedgerSpec {
    std::string path;
    PrivacyBudget budget;
  };
  struct Options {
    std::optional<LedgerSpec> client;  // nullopt: no client-level ledger
    std::optional<LedgerSpec> record;  // nullopt: no record-level ledger
  };

  // Attempts of one round a ledger can tell apart: entry = round * kAttempts + attempt.
  static constexpr int64_t kAttempts = 1000;
  // The ledger entry of `attempt` (1 to kAttempts - 1) of `round`; Internal outside that range
  // or for a round whose entry int64 cannot hold (negative, or over about 9.2e15).
  static StatusOr<int64_t> LedgerEntry(int64_t round, int64_t attempt);

  // Opens (or starts) the ledgers asked for; the ledgers' errors (DataLoss for a malformed file,
  // InvalidArgument for a bad budget) annotated with the guarantee.
  static StatusOr<PrivacyAccounts> Open(const Options& options);

  // The cost of one round of `plan`, for a model of `dimension` values (the client-level curve
  // depends on it). InvalidArgument, naming the guarantee, for a plan that is no valid mechanism.
  static StatusOr<RoundPrivacyCost> Price(const v1::RoundPlan& plan, int64_t dimension);

  // OK when one more round of `cost` stays within the budget of every open ledger it has a curve
  // for; else the first such ledger's FailedPrecondition, prefixed "client-level: " or
  // "record-level: ".
  Status CheckFits(const RoundPrivacyCost& cost) const;

  // Books `cost` as `attempt` of `round` in every open ledger whose curve is not empty, then
  // hands `record` that ledger's PrivacySpentEvent (total spent so far, field "guarantee":
  // "client-level" or "record-level"), which the caller writes to its log. An entry is booked
  // once: the same round, attempt and `plan` again changes no ledger (its event is still handed
  // on). `plan` (a site's PlanSha256 of what it trains for; empty at the coordinator) tells
  // releases apart that share a number: a site that takes part in several studies sees round 1
  // attempt 1 in each, and a coordinator could send a second plan under a number already used;
  // each is a release of its own and is booked.
  // FailedPrecondition when it does not fit; the ledger's write error; `record`'s error.
  using RecordFn = std::function<Status(AuditEvent event)>;
  Status Book(int64_t round, int64_t attempt, const RoundPrivacyCost& cost, const RecordFn& record,
              const std::string& plan = "");

  // The open ledgers, or null.
  const PrivacyLedger* client() const { return client_ ? &*client_ : nullptr; }
  const PrivacyLedger* record() const { return record_ ? &*record_ : nullptr; }

 private:
  PrivacyAccounts() = default;

  std::optional<PrivacyLedger> client_;
  std::optional<PrivacyLedger> record_;
};

}  // namespace hansa

// The coordinator's side of differential privacy: the mechanisms every round plan announces
// (client-level from [privacy], record-level from [record_privacy]), what one round costs, and
// the federation's ledgers (state_dir/privacy.json, state_dir/record_privacy.json) through
// PrivacyAccounts.
//
// Made once at engine start, before any transport thread runs; from then on the const accessors
// are safe from any thread (they read nothing that changes), NextRoundFits, Book and the ledgers
// only from the driver thread.
#pragma once

#include <cstdint>

#include "common/privacy/accounts.h"
#include "common/privacy/ddg.h"
#include "common/status/status.h"
#include "coordinator/engine_options.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

class EnginePrivacy {
 public:
  // For a model of `dimension` values. InvalidArgument for a mechanism the options do not make
  // (naming [privacy] or [record_privacy]); the ledgers' errors.
  static StatusOr<EnginePrivacy> Open(const EngineOptions& options, int64_t dimension);

  bool client_level() const { return accounts_.client() != nullptr; }
  // The client-level mechanism's parameters (meaningful when client_level()).
  const DdgParams& ddg() const { return ddg_; }
  // The privacy fields every plan announces (MakeRoundPlan), or null where that level is off.
  const v1::PrivacyPlan* client_plan() const {
    return accounts_.client() ? &privacy_plan_ : nullptr;
  }
  const v1::RecordPrivacyPlan* record_plan() const {
    return accounts_.record() ? &record_plan_ : nullptr;
  }
  // OK when one more round fits every budget, else the first budget's FailedPrecondition.
  Status NextRoundFits() const { return accounts_.CheckFits(round_cost_); }
  // Books one round's release as `attempt` of `round` (PrivacyAccounts::Book).
  Status Book(int64_t round, int64_t attempt, const PrivacyAccounts::RecordFn& record) {
    return accounts_.Book(round, attempt, round_cost_, record);
  }
  const PrivacyAccounts& accounts() const { return accounts_; }

 private:
  explicit EnginePrivacy(PrivacyAccounts accounts) : accounts_(std::move(accounts)) {}

  DdgParams ddg_;
  v1::PrivacyPlan privacy_plan_;
  v1::RecordPrivacyPlan record_plan_;
  RoundPrivacyCost round_cost_;
  PrivacyAccounts accounts_;
};

}  // namespace hansa

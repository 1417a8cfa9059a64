// A site's own rules, enforced by the site whatever the coordinator asks (the [policy] section
// of site.toml): which plans it answers, and its own privacy budgets. Transport-free.
//
// Threading: a SitePrivacy belongs to one SiteSession (one thread).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "client/egress.h"
#include "common/audit/audit_log.h"
#include "common/model/task.h"
#include "common/net/rpc.h"
#include "common/privacy/accounts.h"
#include "common/status/status.h"
#include "hansa/v1/hansa.pb.h"
#include "nlohmann/json.hpp"

namespace hansa {

// A study's TorchScript model as this site holds it: its own copy, which it hashed itself.
struct ScriptModel {
  std::string file;
  int64_t parameter_values = 0;  // float32 parameters' values
  int64_t buffer_values = 0;     // float32 buffers' values (averaged unless buffers are local)
};

struct SitePolicy {
  std::string coordinator_fingerprint;  // SHA-256 of the coordinator certificate; empty = any
  // Built-in model names and "sha256:<hex>" of TorchScript files the data-protection officer
  // approved (common/model/task.h). Loading TorchScript runs the file's code in the site
  // process: the hash pin is the control.
  std::vector<std::string> allowed_models;
  // The allowed TorchScript models this site has a copy of ([model] files), by name. Filled
  // when the site opens (OpenSite), from the files' own bytes; a plan naming a TorchScript
  // model not here is refused.
  std::map<std::string, ScriptModel> script_models;
  bool require_secure_aggregation = true;
  // Refuse every plan that states no purpose or no legal basis of the study (its GDPR facts,
  // common/plan/study_facts.h).
  bool require_legal_basis = false;
  // Purpose limitation: the lowercase hex SHA-256 of the one purpose (the plans' study
  // purpose text, PurposeSha256) this site takes part for; a plan of any other purpose, or of
  // none, is refused. Empty: any purpose.
  std::string purpose_sha256;
  // The one study this site takes part in (coordinator.toml federation.study, the plans'
  // study id); a plan of any other study, or of none, is refused. Empty: any study.
  std::string study;
  int min_cohort = 3;  // refuse rounds with fewer sites than this
  // Floors under the coordinator's SecAgg+ parameters (CheckSecAggPolicy): a plan giving each
  // site fewer than min_secagg_degree neighbours (k) or a threshold t below
  // min_secagg_threshold is refused. The defaults refuse nothing ResolveParams allows (k = 2,
  // t = 2 is the 3-site cohort); a site raises them to need more colluders against it.
  int min_secagg_degree = 2;
  int min_secagg_threshold = 2;
  // The largest global model the site downloads: a larger declared size is refused before
  // anything is allocated for it.
  uint64_t max_model_bytes = kDefaultMaxModelBytes;
  // Client-level differential privacy, accounted by the site itself (state_dir/privacy.json):
  // a training plan without it is refused when either is set, and a plan whose round would
  // take the site past max_epsilon (at `delta`) is refused. 0 = no budget of the site's own.
  bool require_client_dp = false;
  double max_epsilon = 0;
  double delta = 1e-5;
  // Record-level DP-SGD, the same way (state_dir/record_privacy.json): a training plan without
  // it is refused when either is set; one that would take the site's records past
  // max_record_epsilon (at record_delta) is refused.
  bool require_record_dp = false;
  double max_record_epsilon = 0;
  double record_delta = 1e-5;
};

// The policy's verdict on `plan` apart from privacy: OK, or InvalidArgument naming the policy
// key the plan falls short of. `sends_update` for plans that make the site send a model update
// (evaluation sends only metrics): secure aggregation, cohort and SecAgg+ floors apply to them,
// and one that names no aggregation the site knows (unspecified, or from a newer contract) is
// refused.
Status CheckPlan(const SitePolicy& policy, const v1::RoundPlan& plan, bool sends_update);

// The policy as site.toml's [policy] keys name them (script_models as their names), for the
// site's ledger (policy_applied, events.h): what a reviewer reads to know which rules the site
// answered plans under.
nlohmann::json PolicyJson(const SitePolicy& policy);
// The policy_applied record of `policy`: `reason` "start" (the site started under it) or
// "reload" (SIGHUP replaced the one before); `sha256` names PolicyJson's compact dump.
AuditEvent PolicyApplied(const SitePolicy& policy, const std::string& reason);

// The plan's task (an unset one is the built-in models' multiclass cross-entropy).
// InvalidArgument for names this site does not know.
StatusOr<Task> PlanTask(const v1::RoundPlan& plan);

// The number of values in one update of the plan's model (its layout's elements): a built-in
// model's, or that of the site's own copy of a TorchScript one. InvalidArgument for a model
// the site does not know.
StatusOr<int64_t> UpdateValues(const SitePolicy& policy, const v1::RoundPlan& plan);

// The site's own privacy accounts (common/privacy/accounts.h, kept as the coordinator keeps
// its own): one ledger per guarantee the policy sets a budget for.
class SitePrivacy {
 public:
  // Opens state_dir/privacy.json and state_dir/record_privacy.json for the budgets the policy
  // sets (none for a budget of 0).
  static StatusOr<SitePrivacy> Open(const SitePolicy& policy, const std::string& state_dir);

  // The policy's privacy rules for a training plan: the round's cost, or the refusal
  // (InvalidArgument: a plan without a guarantee the site requires, or one whose round would
  // take the site over a budget of its own).
  StatusOr<RoundPrivacyCost> Check(const v1::RoundPlan& plan) const;
  // Books `plan` (checked first) in the open ledgers as its round and attempt
  // (PrivacyAccounts::LedgerEntry, the coordinator's numbering) named by its digest, and records
  // privacy_spent in `egress` for each, once per plan: a plan booked before is neither checked
  // nor booked again, while another plan under the same round and attempt (the next study's, or
  // a coordinator's second plan for a used number) is booked as a release of its own.
  Status Book(const v1::RoundPlan& plan, const EgressRecorder& egress);
  bool Booked(const v1::RoundPlan& plan) const;

 private:
  explicit SitePrivacy(PrivacyAccounts accounts) : accounts_(std::move(accounts)) {}
  SitePolicy policy_;
  PrivacyAccounts accounts_;
  std::set<std::string> booked_;  // plans already in the ledgers (answered again on rejoin)
};

}  // namespace hansa

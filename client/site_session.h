// A site's conversation with the coordinator, written once for hansa-client, the simulator's
// virtual sites, the benchmarks and the tests: join, poll for tasks, answer each round plan
// against the site's policy (policy.h), download the global model, train or evaluate through a
// LocalTrainer, run the SecAgg+ stages (secagg_stage.h), upload the update, report metrics.
// It speaks through a SiteLink (link/site_link.h): gRPC with mutual TLS, or in process.
//
// Handle() answers one task. Run() is the whole conversation: it survives coordinator restarts
// by rejoining with backoff for up to options.reconnect_seconds, and returns OK when the
// coordinator says the federation is done, Unavailable when it stays unreachable,
// PermissionDenied when the coordinator refuses the site, Cancelled after Stop().
//
// A long-lived site (options.wait_for_next_study, hansa-client without --once) does not return
// when its study is done: it says so once and waits for the next study of its federation,
// polling the coordinator every options.study_poll and, once that coordinator is gone,
// rejoining the address with its backoff for as long as it takes, quietly. A DONE while it
// waits changes nothing (a finished coordinator hands out nothing else, so nothing runs twice);
// the first task that carries a plan is the next study's, and the site takes part. It returns
// only on Stop() (Cancelled) or an error that ends any session (refused, storage).
//
// ReplacePolicy() (SIGHUP) swaps the site's policy between plans: the plan the site already
// answered keeps the policy it was answered under; the next one is judged by the new policy.
//
// Egress ledger (egress.h): when options.egress is set, everything that carries something of
// the site is recorded, signed, before it is sent. Privacy: the site books its own budgets when
// an update leaves, not when it answers a plan; a secure update enters at most one plan
// (SpentContributions).
//
// Threading: one thread calls Run()/Handle(); Stop() and ReplacePolicy() may be called from any
// thread (a signal watcher). The link and the trainer must outlive the session.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/contributions.h"
#include "client/egress.h"
#include "client/link/site_link.h"
#include "client/local_trainer.h"
#include "client/policy.h"
#include "client/secagg_stage.h"
#include "common/audit/audit_log.h"
#include "common/clock/clock.h"
#include "common/crypto/secret.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

struct SiteSessionOptions {
  std::string name;  // the site's certificate CN: its name in cohorts
  SitePolicy policy;
  // The site's privacy ledgers live here (only when the policy sets budgets).
  std::string state_dir;
  // The egress ledger (not owned); null: nothing is recorded (simulator, benchmarks).
  AuditLog* egress = nullptr;
  // Secure updates already sent, from the egress ledger (SpentContributions::FromEgressLedger).
  SpentContributions spent;
  // For SecAgg+ against a malicious coordinator: the federation CA and the site's TLS key.
  std::string ca_certificate_pem;
  std::string private_key_pem;
  // How long Run keeps rejoining a lost coordinator; 0: it returns the first failure.
  double reconnect_seconds = 600;
  // What the reconnection backoff and its give-up deadline are measured on (tests: a FakeClock).
  std::shared_ptr<Clock> clock = Clock::Real();
  double connect_seconds = 30;  // the wait for a connection before each join
  absl::Duration poll_wait = absl::Seconds(20);
  // A task that fails at the site: hansa-client says why and carries on (the coordinator leaves
  // it out of the round); the simulator, which expects every site to succeed, stops.
  bool stop_on_task_error = false;
  // False where the global model is evaluated centrally (the simulator): an evaluation task
  // is answered with a placeholder report of one example, without downloading the model.
  bool evaluate = true;
  // Wait for the next study when one is done, instead of returning (see above).
  bool wait_for_next_study = false;
  absl::Duration study_poll = absl::Seconds(5);  // a waiting site's pause between polls
  // Seeds the stochastic rounding of a secure upload (32 bytes) so that a simulation repeats;
  // null (deployments): the CSPRNG.
  std::function<SecretBytes(const v1::RoundPlan&)> rounding_seed;
};

class SiteSession {
 public:
  // Opens the site's privacy ledgers (errors name the file).
  static StatusOr<std::unique_ptr<SiteSession>> Create(SiteSessionOptions options, SiteLink* link,
                                                       LocalTrainer* trainer);

  Status Run();
  // Answers one task (WAIT and DONE need no answer).
  Status Handle(const v1::Task& task);
  // Makes Run() return Cancelled at its next step. Thread-safe.
  void Stop();
  // The policy for plans from the next one on (see above). The site's copies of TorchScript
  // models stay those it opened with: `policy.script_models` is replaced by the opened ones
  // that `policy.allowed_models` still lists. Thread-safe.
  void ReplacePolicy(SitePolicy policy);

 private:
  SiteSession(SiteSessionOptions options, SiteLink* link, LocalTrainer* trainer);
  Status JoinWithRetry();
  // Sleeps `d` on the session's clock, in slices, so that Stop() cuts it short (Cancelled).
  Status Pause(absl::Duration d);
  // Takes the policy given to ReplacePolicy, if any, unless `task` belongs to the plan already
  // answered. A policy whose privacy ledgers cannot be opened is logged and dropped.
  void TakeNewPolicy(const v1::Task& task);
  // Answers a training plan once (PlanResponse) and records the answer; the policy's refusal
  // when the site refuses it. The task's audit_head, when present, goes into the answer's
  // egress record.
  Status Consent(const v1::Task& task);
  // Records `answer` to the task's plan (plan_accepted or plan_refused) and sends it, once per
  // plan; later calls for the same plan return the first answer. The answer's status.
  Status Answer(const v1::Task& task, Status answer);
  // Records the study's GDPR facts the plan carries (study_facts) unless this run recorded the
  // same facts last: before the site answers or evaluates under them.
  Status RecordStudy(const v1::RoundPlan& plan);
  // The plan's global model, downloaded and checked, or the cached one when the plan names it:
  // valid until the next FetchModel.
  StatusOr<const Model*> FetchModel(const v1::RoundPlan& plan);
  // Drops the cached global model.
  void ReleaseModel();
  // Takes the cached global model out of the cache: once a round's update is taken from the
  // trainer, the model it was trained from is of no more use (the update is written over it;
  // the next evaluation or round brings a new one; a retried round downloads it again).
  Model TakeModel();
  Status Train(const v1::RoundPlan& plan, const std::string& share_delivery);
  // `global` is consumed by the update (LocalTrainer::HostUpdate).
  Status UploadPlain(const v1::RoundPlan& plan, Model global, const TrainResult& result);
  Status UploadMasked(const v1::RoundPlan& plan, Model global, const TrainResult& result);
  // Records and sends one upload.
  StatusOr<v1::UploadReply> Upload(const v1::RoundPlan& plan, const v1::TransferHeader& header,
                                   const std::vector<std::string_view>& pieces);
  // Sends unsent_ for `plan` (again); dropped once the coordinator accepted it.
  StatusOr<v1::UploadReply> SendUnsent(const v1::RoundPlan& plan);
  // Evaluates the global model and reports the figures; a plan the policy refuses is answered
  // with the refusal (Answer), on record, so the coordinator stops waiting for the site.
  Status Evaluate(const v1::Task& task);
  Status SecAggStage(const v1::Task& task);
  // InvalidArgument (the plan is refused) when `plan` spent this site's update already
  // (SpentContributions::SpentBy): `what` is what the coordinator asked the site to do again.
  Status RefuseASpentPlan(const v1::RoundPlan& plan, const char* what) const;
  // Records and sends one message of `type`; the send's status.
  Status Send(const char* type, uint64_t round, const std::string& bytes,
              const std::function<Status()>& send);

  SiteSessionOptions options_;
  SiteLink* const link_;
  LocalTrainer* const trainer_;
  EgressRecorder egress_;
  std::optional<SitePrivacy> privacy_;
  SecAggParticipant secagg_;
  // The last plan answered (PlanSha256) and the answer.
  std::string answered_plan_;
  Status answer_;
  // The study's GDPR facts this run last recorded (StudyFactsSha256; empty: none yet).
  std::string recorded_study_;
  // The last model downloaded, by digest: evaluation of round r and training of round r+1
  // use the same model, so it is fetched once.
  std::string cached_sha256_;
  std::optional<Model> cached_model_;
  // The update whose upload began and was not accepted yet, with its plan (PlanSha256). When
  // the connection breaks mid-upload and the coordinator hands out the same plan again after
  // the rejoin, these very bytes go again: a masked update is neither masked twice (a second
  // rounding or noise draw of one input, beside the part of the first the coordinator got,
  // would reveal more than one) nor given its share delivery twice (the SecAgg+ session
  // aborts on a replay); a plaintext one is not trained twice. A new SecAgg+ session (other
  // masks) drops it.
  struct Unsent {
    std::string plan_sha256;
    v1::TransferHeader header;
    // Plaintext: the safetensors delta is `safetensors_header` followed by the bytes of
    // `values`, sent from there (`spanning`: the one chunk that holds the end of the header
    // and the start of the values).
    std::string safetensors_header;
    std::vector<float> values;
    std::string spanning;
    std::vector<std::string> chunks;  // secure: the masked wire chunks
  };
  std::optional<Unsent> unsent_;
  std::atomic<bool> stop_{false};
  // Set from the study's DONE until a task of the next study's arrives (wait_for_next_study).
  bool study_done_ = false;
  // The study id of the last plan this run saw (for the log of a long-lived site).
  std::string study_id_;
  absl::Mutex policy_mu_;
  std::optional<SitePolicy> new_policy_ ABSL_GUARDED_BY(policy_mu_);
};

}  // namespace hansa

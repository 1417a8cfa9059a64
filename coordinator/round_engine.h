// The coordinator's round logic as a state machine over wire messages, free of any
// transport: the gRPC service (service.h) and tests call it from their own threads.
//
// One driver thread calls Run(), which plans rounds, waits for uploads and evaluation reports
// with deadlines, aggregates, checkpoints and records. Transport threads call Join, NextTask,
// Download, BeginUpload and ReportMetrics concurrently; all of them are thread-safe and none
// blocks longer than the wait it is given. A round that ends below min_sites is retried with
// a fresh aggregate, never half-applied. State survives crashes through StateStore and
// atomically written checkpoints; a new engine over the same state dir resumes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/audit/audit_log.h"
#include "common/audit/jurisdiction.h"
#include "common/crypto/sha256.h"
#include "common/privacy/accounts.h"
#include "common/privacy/ddg.h"
#include "common/privacy/record_privacy.h"
#include "common/secagg/encoding.h"
#include "common/secagg/server.h"
#include "common/status/status.h"
#include "common/tensor/safetensors.h"
#include "common/tensor/tensor.h"
#include "coordinator/aggregator.h"
#include "coordinator/change_signal.h"
#include "coordinator/state_store.h"
#include "coordinator/strategy.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// Secure aggregation (SecAgg+, common/secagg): the coordinator learns only the sum.
struct SecureOptions {
  bool enabled = true;
  int degree = 0;     // k; 0 = all other sites up to 32 sites
  int threshold = 0;  // t; 0 = the safe default
  bool malicious = false;
  double clip = 1.0;             // each update value is clipped to [-clip, clip]
  int bits = 0;                  // quantization bits; 0 = DefaultQuantizationBits(cohort)
  int64_t max_examples = 60000;  // a site's weight is min(1, examples / max_examples)
  // Where the masks are removed from the sum: "auto" (a CUDA device when the process sees
  // one, cuda/masked_upload.h) or "cpu". The sum is the same either way.
  std::string unmask_device = "auto";
  absl::Duration stage_timeout = absl::Minutes(2);
};

// Client-level differential privacy under secure aggregation: the distributed discrete
// Gaussian (common/privacy/ddg.h), accounted against the federation's budget.
struct PrivacyOptions {
  bool enabled = false;
  // distributed_discrete_gaussian (secure aggregation) or central_gaussian (plaintext: the
  // coordinator is trusted, sites' updates are clipped and checked, noise added to the sum).
  std::string mechanism = "distributed_discrete_gaussian";
  double clip_norm = 1.0;         // L2 bound of each site's update
  double granularity = 1e-4;      // real units per integer step
  double noise_multiplier = 1.0;  // stddev of the summed noise / clip_norm
  int min_survivors = 0;          // 0 = min_sites; fewer inputs and the sum is not released
  PrivacyBudget budget{10.0, 1e-5};
};

struct EngineOptions {
  std::string federation = "hansa";
  std::string coordinator_country;
  std::string state_dir = "state";
  std::string model = "simple_cnn";
  std::vector<std::string> allowed_sites;  // certificate CNs that may join
  int64_t rounds = 5;
  int min_sites = 1;
  absl::Duration wait_for_sites = absl::Minutes(10);
  absl::Duration upload_timeout = absl::Minutes(10);
  absl::Duration evaluate_timeout = absl::Minutes(5);
  // A site that has not asked for work for this long is not put in a new cohort.
  absl::Duration site_idle = absl::Seconds(90);
  // Plans one round may get in one run of the engine (the first and its retries). When the
  // last one ends without an aggregate, Run stops with ResourceExhausted naming the round
  // (round_abandoned on record): every secure attempt costs the sites key material and, for
  // those that upload, privacy. A restarted engine tries the round again.
  int max_attempts = 10;
  v1::TrainingSettings training;
  // The server step on each round's weighted mean update. Only strategies that need nothing
  // but that mean (and nothing from the sites) run here: CheckEngineStrategy.
  StrategyOptions strategy;
  uint32_t chunk_bytes = 1 << 20;
  uint32_t max_chunk_bytes = 4 << 20;
  int64_t max_examples = int64_t{1} << 40;
  SecureOptions secure;
  // The DDG needs secure.enabled, the central Gaussian plaintext. Training stops, with a message,
  // before a round that would take the federation over its budget; epsilon goes into metrics.jsonl
  // and the audit log.
  PrivacyOptions privacy;
  // Record-level DP-SGD at every site. Independent of `privacy` (both may be on: each guarantee
  // has its own budget and ledger, state_dir/record_privacy.json); either aggregation mode.
  RecordPrivacyOptions record_privacy;

  // Compliance records (audit.jsonl, common/audit/events.h). Null: none (simulation, most unit
  // tests). Each record is appended and fsynced before the engine acknowledges what it states;
  // when an append fails, that action fails too.
  std::shared_ptr<AuditLog> audit;
  std::string config_sha256;  // of coordinator.toml as read, for federation_started
  // Countries (certificate C) whose sites may join; a site from elsewhere is refused at Join.
  std::vector<std::string> allowed_countries = DefaultAllowedCountries();
};

struct SiteIdentity {
  std::string name;  // certificate CN
  std::string organisation;
  std::string country;
  std::string fingerprint;
  std::string certificate_pem;  // malicious-coordinator mode binds signing keys to it
};

// OK for fedavg, fedavgm, fedadam, fedyogi, fedadagrad; InvalidArgument, with what to use
// instead, for robust aggregators under secure aggregation and for strategies this coordinator
// cannot run (individual updates, or site-side recipes not on the wire: hansa simulate has them).
Status CheckEngineStrategy(const StrategyOptions& strategy, bool secure_aggregation);

class RoundEngine;

// Where an upload's bytes go: a plaintext update into the weighted sum, or masked chunks into
// the secure-aggregation session. Owned by one UploadSink, called under its lock.
class UpdateFolder {
 public:
  virtual ~UpdateFolder() = default;
  // One wire chunk.
  virtual Status Fold(std::string_view bytes) = 0;
  // OK when every value arrived.
  virtual Status Complete() = 0;
  virtual Status Commit() = 0;
  // Removes everything folded so far (idempotent).
  virtual void Abort() = 0;
};

// One upload in progress, owned by the transport thread receiving it. Destroying it without a
// successful Finish() removes everything it folded into the round's sum.
class UploadSink {
 public:
  ~UploadSink();
  // `offset` must equal the number of bytes written so far; `data` at most max_chunk_bytes.
  Status Write(uint64_t offset, std::string_view data);
  // Checks size and SHA-256, then makes the update part of the round.
  StatusOr<v1::UploadReply> Finish();

 private:
  friend class RoundEngine;
  UploadSink(RoundEngine* engine, std::string site, int64_t round, int64_t attempt,
             v1::TransferHeader header);
  // Called by the engine (holding its own lock) when the round closes under this upload.
  void Cancel(const std::string& why);

  RoundEngine* engine_;
  const std::string site_;
  const int64_t round_;
  const int64_t attempt_;
  const v1::TransferHeader header_;
  absl::Mutex mu_;
  std::unique_ptr<UpdateFolder> folder_ ABSL_GUARDED_BY(mu_);
  Sha256Hasher hasher_ ABSL_GUARDED_BY(mu_);
  uint64_t received_ ABSL_GUARDED_BY(mu_) = 0;
  Status cancelled_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class RoundEngine {
 public:
  // Resumes from `options.state_dir` when it holds completed rounds, else starts from
  // `initial` (written as round 0).
  static StatusOr<std::unique_ptr<RoundEngine>> Create(const EngineOptions& options,
                                                       const Model& initial);
  ~RoundEngine();

  // PermissionDenied for a site not on the allowed list or from a country not allowed; the
  // refusal is recorded.
  StatusOr<v1::JoinReply> Join(const SiteIdentity& site);
  // The site's next task; WAIT if none appears within `wait`.
  StatusOr<v1::Task> NextTask(const std::string& site, absl::Duration wait);
  // The payload of the current global model, if `sha256` names it (`round` is the plan's).
  StatusOr<std::shared_ptr<const std::string>> Download(const std::string& site, uint64_t round,
                                                        const std::string& sha256);
  void CountBytesDown(int64_t bytes);
  // FailedPrecondition unless the site accepted the round's plan first; AlreadyExists (and an
  // upload_refused audit record) while the site has another upload of this attempt open or
  // after its update was committed: one update per site per attempt.
  StatusOr<std::unique_ptr<UploadSink>> BeginUpload(const std::string& site,
                                                    const v1::TransferHeader& header);
  Status ReportMetrics(const std::string& site, const v1::MetricsReport& report);
  // A secure-aggregation message from `site` for the current stage.
  Status SubmitSecAgg(const std::string& site, const v1::SecAggSubmission& submission);
  // A cohort site's consent to the current plan (named by PlanSha256), recorded; a refusal
  // takes the site out of the round at once. FailedPrecondition when no such plan is open,
  // InvalidArgument for a digest of another plan, AlreadyExists for a second answer.
  Status RespondToPlan(const std::string& site, const v1::PlanResponse& response);
  // RespondToPlan accepting `plan`: for sites that live in the coordinator's process (the
  // simulator, benchmarks, tests).
  Status Accept(const std::string& site, const v1::RoundPlan& plan);

  // Runs rounds until the configured number completed (OK), Shutdown() (Cancelled), or a
  // fatal error. Call from one thread.
  Status Run();
  void Shutdown();
  // Calls `listener` (null: none) after every change that can alter a NextTask answer, under
  // the engine's lock: it must be quick and must not call the engine. How the gRPC service
  // wakes its parked long-polls without a thread per poll (service.h).
  void SetChangeListener(std::function<void()> listener) {
    changed_.set_listener(std::move(listener));
  }
  // True once Shutdown() was called: NextTask then answers WAIT at once.
  bool shutting_down() const {
    absl::MutexLock lock(&mu_);
    return shutdown_;
  }

  // For tests and the service.
  int64_t completed_round() const;
  const EngineOptions& options() const { return options_; }
  uint32_t max_chunk_bytes() const { return options_.max_chunk_bytes; }

 private:
  friend class UploadSink;
  enum class Phase {
    kIdle,
    kTrain,
    kEvaluate,
    kDone,
    kSecAggAdvertise,
    kSecAggShare,
    kSecAggConsistency,
    kSecAggUnmask
  };
  class SecureFolder;
  static v1::Task::Kind TaskKind(Phase phase);
  // The stage a site that did not answer `phase` is recorded as dropped at.
  static const char* StageName(Phase phase);

  explicit RoundEngine(EngineOptions options);
  Status Resume(const Model& initial);
  // Opens the privacy accounts and prices the round every plan announces.
  Status OpenPrivacy(int64_t dimension);
  // record_plan_ from [record_privacy], the noise multiplier resolved from the budget if unset.
  Status ResolveRecordPlan();
  // OK when one more round fits every budget, else the first budget's FailedPrecondition.
  Status NextRoundFits() const;
  // Books the aggregate of `attempt` of `round` in every ledger (PrivacyAccounts::LedgerEntry),
  // records it and logs it. Call as soon as the aggregate exists.
  Status SpendPrivacy(int64_t round, int64_t attempt) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status RunTrainingRound(int64_t round);
  // One attempt at the round's aggregate: the mean update, or nullopt when too few sites
  // finished and the round must be retried.
  StatusOr<std::optional<std::vector<float>>> PlaintextAttempt(absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Unmasks at most one sum, over at least MinimumSum() sites; a failure after unmasking is
  // an error, never a retry (a retry would give a second sum of the same inputs).
  StatusOr<std::optional<std::vector<float>>> SecureAttempt(const std::vector<std::string>& cohort)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The fewest inputs a released sum may have: max(min_sites, the DDG's min_survivors).
  int MinimumSum() const;
  // Opens `phase` for `sites` (each may get its own payload) and waits until all answered or
  // `deadline`; records the sites that did not answer as dropped. Cancelled on shutdown.
  Status RunStage(Phase phase, const std::vector<std::string>& sites,
                  std::map<std::string, std::string> payloads, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends to the audit log when there is one.
  Status Record(const AuditEvent& event) const;
  Status RecordStart();
  // Names the finished plan_ (plan_sha256_) and records it, before any site sees it.
  Status RecordPlan() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status RecordDropouts(Phase phase) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BeginPlan(int64_t round, const std::vector<std::string>& cohort)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status RunEvaluation(int64_t round);
  Status WaitForSites(std::vector<std::string>* cohort) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClosePhase(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status PublishModel(int64_t round, Model model, const RoundRecord& record);
  Status WriteMetricsFile();
  std::string CheckpointPath(int64_t round) const;
  // The strategy's state after `round` (momentum, moments), beside the checkpoint.
  std::string StrategyStatePath(int64_t round) const;
  bool WaitUntil(absl::Time deadline, const std::function<bool()>& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // AlreadyExists(why), recorded as upload_refused.
  Status RefuseUpload(const std::string& site, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Engine side of UploadSink::Finish.
  Status CommitUpload(UploadSink* sink, uint64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  void Unregister(UploadSink* sink) ABSL_LOCKS_EXCLUDED(mu_);

  const EngineOptions options_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<Strategy> strategy_;  // driver thread only
  // Privacy (driver thread only): the client-level mechanism for this model and the record-level
  // plan, as every plan announces them; what one round costs; the federation's ledgers
  // (state_dir/privacy.json, state_dir/record_privacy.json).
  DdgParams ddg_;
  v1::PrivacyPlan privacy_plan_;
  v1::RecordPrivacyPlan record_plan_;
  RoundPrivacyCost round_cost_;
  std::optional<PrivacyAccounts> accounts_;  // set by Resume

  mutable absl::Mutex mu_;
  ChangeSignal changed_;  // a CondVar that also tells SetChangeListener's listener
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kIdle;
  int64_t completed_round_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t attempt_ ABSL_GUARDED_BY(mu_) = 0;        // plans made, over all rounds
  int64_t round_attempt_ ABSL_GUARDED_BY(mu_) = 0;  // plans made for the current round
  v1::RoundPlan plan_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> pending_ ABSL_GUARDED_BY(mu_);  // cohort members not yet done
  std::map<std::string, SiteIdentity> joined_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Time> last_seen_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::MetricsReport> reports_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::TransferHeader> uploads_ ABSL_GUARDED_BY(mu_);
  std::string plan_sha256_ ABSL_GUARDED_BY(mu_);              // of the open training plan
  std::map<std::string, bool> consent_ ABSL_GUARDED_BY(mu_);  // this attempt's answers
  std::set<UploadSink*> sinks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> payloads_ ABSL_GUARDED_BY(mu_);  // per-site task payload
  std::map<std::string, uint32_t> site_ids_ ABSL_GUARDED_BY(mu_);     // secure round numbering
  // The secure-aggregation session of the current round. Its own lock, taken after the
  // engine's and a sink's, because masked chunks fold from upload threads.
  absl::Mutex secagg_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::unique_ptr<ServerSession> secagg_ ABSL_GUARDED_BY(secagg_mu_);
  std::unique_ptr<StreamingAggregator> aggregator_ ABSL_GUARDED_BY(mu_);
  Model global_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const std::string> payload_ ABSL_GUARDED_BY(mu_);
  std::string payload_sha256_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_up_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_down_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t secure_examples_ ABSL_GUARDED_BY(mu_) = 0;  // the last unmasked sum's total
  RoundRecord last_record_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hansa

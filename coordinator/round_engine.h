// The coordinator's round logic as a state machine over wire messages, free of any
// transport: the gRPC service (service.h) and tests call it from their own threads.
//
// One driver thread calls Run(), which plans rounds, waits for uploads and evaluation reports
// with deadlines, aggregates, checkpoints and records. Transport threads call Join, NextTask,
// Download, BeginUpload and ReportMetrics concurrently; all of them are thread-safe and none
// blocks longer than the wait it is given. A round that ends below min_sites is retried with
// a fresh aggregate, never half-applied. State survives crashes through StateStore and
// atomically written checkpoints; a new engine over the same state dir resumes.
//
// The engine is the round driver; its state lives in collaborators, each with one job:
// Membership (who may join, who did, who is active), RoundUploads and UploadSink (uploads in
// progress and their checks, upload_sink.h), SecureRound (the SecAgg+ session and the secure
// attempt), EnginePrivacy (mechanisms, ledgers), Checkpoints (the published model on disk),
// and the metrics line (round_metrics.h).
//
// Time: every reading of the time and every wait with a deadline goes through options.clock.
//
// Lock order: engine (mu_) -> upload sink (UploadSink's own) -> SecAgg session (SecureRound's
// own). Membership and RoundUploads have no lock of their own: they are guarded by mu_.
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
#include "common/fileio/shared_bytes.h"
#include "common/plan/plan_writer.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"
#include "coordinator/aggregator.h"
#include "coordinator/change_signal.h"
#include "coordinator/checkpoints.h"
#include "coordinator/engine_options.h"
#include "coordinator/engine_privacy.h"
#include "coordinator/membership.h"
#include "coordinator/round_stage.h"
#include "coordinator/secure_round.h"
#include "coordinator/state_store.h"
#include "coordinator/strategy.h"
#include "coordinator/upload_sink.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

class RoundEngine : private UploadOwner, private SecureRoundDriver {
 public:
  // Resumes from `options.state_dir` when it holds completed rounds, else starts from
  // `initial` (written as round 0).
  static StatusOr<std::unique_ptr<RoundEngine>> Create(const EngineOptions& options,
                                                       const Model& initial);
  ~RoundEngine() override;

  // PermissionDenied for a site not on the allowed list or from a country not allowed; the
  // refusal is recorded.
  // Logs a warning when the site's certificate expires within 30 days (each time it joins).
  StatusOr<v1::JoinReply> Join(const SiteIdentity& site);
  // A client certificate refused in the TLS handshake, or at a call when it was revoked while
  // connected (ClientCertificatePolicy's sink, on a gRPC thread): a site_refused record with the
  // certificate's serial, `problem` and `stage`; a site that joined with that certificate is
  // forgotten (Membership::Forget), so no round waits for it. Any thread.
  Status RecordCertificateRefusal(const ParticipantFields& who, const std::string& serial,
                                  const std::string& problem, const std::string& reason,
                                  const std::string& stage);
  // A site known to be gone for good (the simulator's dead worker process, sim/workers.h): the
  // open stage stops waiting for it and records it as dropped when it closes, as at a deadline;
  // no later plan of this engine includes it. Any thread.
  void SiteLost(const std::string& site);
  // The site's next task; WAIT if none appears within `wait`.
  StatusOr<v1::Task> NextTask(const std::string& site, absl::Duration wait);
  // The payload of the current global model, if `sha256` names it (`round` is the plan's).
  StatusOr<SharedBytes> Download(const std::string& site, uint64_t round,
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
  // InvalidArgument for a digest of another plan, AlreadyExists for a second answer. While an
  // evaluation is open, a site asked for it may refuse its plan (site_declined, and it is no
  // longer waited for); accepting one is InvalidArgument (its metrics are the answer).
  Status RespondToPlan(const std::string& site, const v1::PlanResponse& response);
  // RespondToPlan accepting `plan`: for sites that live in the coordinator's process (the
  // simulator, benchmarks, tests).
  Status Accept(const std::string& site, const v1::RoundPlan& plan);

  // Runs rounds until the configured number completed (OK), Shutdown() (Cancelled), or a
  // fatal error. Call from one thread.
  Status Run();
  void Shutdown();
  // A write of the coordinator's state failed while serving a site (IsStorageError: an audit
  // record, a spill file): the engine shuts down and Run returns `error`, not Cancelled. The
  // rounds resume from the last good state once the disk has room and the coordinator restarts.
  void StopOnStorageError(const Status& error);
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

  // True once every site that joined was told the federation is finished: hansa-coordinator
  // then closes its port without lingering longer. Any thread.
  bool EverySiteToldDone() const {
    absl::MutexLock lock(&mu_);
    return members_.AllToldDone();
  }

  // For tests and the service.
  int64_t completed_round() const;
  // The global model published after completed_round(): the very Model its checkpoint
  // (checkpoints/round-NNNN.safetensors) holds, copied out of the published payload (the
  // engine keeps no decoded copy). Any thread; the copy is made without the engine's lock.
  StatusOr<Model> global_model() const;
  const EngineOptions& options() const { return options_; }
  uint32_t max_chunk_bytes() const { return options_.max_chunk_bytes; }

 private:
  using Phase = RoundPhase;

  // A round whose aggregate_released record (audit seq `seq`) is in the audit log while the
  // state store never recorded it: a coordinator stopped between PublishModel's audit records
  // and its store write. `record` is what the store would have held.
  struct UnstoredRelease {
    RoundRecord record;
    int64_t seq = 0;
  };

  explicit RoundEngine(EngineOptions options);
  // Loads the last completed round, or publishes `initial` as round 0. A round released but
  // not stored (UnstoredRelease) is adopted from its checkpoint, never run again: a rerun would
  // release a second aggregate of the same round. DataLoss, and nothing released, when its
  // checkpoint or strategy state is gone or differs, or when the audit log released more than
  // the store's next round (a state database older than the log).
  Status Resume(const Model& initial);
  // The release past `stored` (the store's last round; -1: none) that the store lacks, if any.
  StatusOr<std::optional<UnstoredRelease>> ReleasedButNotStored(int64_t stored);
  Status RunRounds();  // Run, less the storage error
  Status RunTrainingRound(int64_t round);
  // The statistics step before round 1 (options_.standardization): a secure round over the
  // sites' feature moments, whose pooled mean and std every later plan carries. One pass:
  // each site sends its moments once (a second sum with and without a site would give its
  // moments away; client/contributions.h). Kept in the state store, so a restarted
  // coordinator does not run it again.
  Status RunStandardization();
  // The pooled standardisation of the sites' rows, their sums clipped at `clip`.
  StatusOr<v1::Standardization> PoolMoments(double clip, std::vector<std::string>* sites)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Plans attempts of `round` until one gives the sites' mean update (or the cap is reached).
  StatusOr<std::vector<float>> AggregateRound(int64_t round) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One attempt at the round's aggregate: the mean update, or nullopt when too few sites
  // finished and the round must be retried.
  StatusOr<std::optional<std::vector<float>>> PlaintextAttempt(absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  StatusOr<std::optional<std::vector<float>>> SecureAttempt(const std::vector<std::string>& cohort)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The fewest inputs a released sum may have: max(min_sites, the DDG's min_survivors).
  int MinimumSum() const;
  // Books the aggregate of the open attempt (EnginePrivacy::Book), records it and logs it.
  Status SpendPrivacy() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends to the audit log when there is one.
  Status Record(const AuditEvent& event) const;
  Status RecordStart();
  Status RecordDropouts(Phase phase) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RespondToPlan during an evaluation.
  Status DeclineEvaluation(const std::string& site, const v1::PlanResponse& response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A site's refusal of the open plan: site_declined on record, and the stage stops waiting
  // for it.
  Status RecordRefusal(const std::string& site, const v1::PlanResponse& response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BeginPlan(int64_t round, const std::vector<std::string>& cohort)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What every plan of `round` names; `cohort` must outlive the result.
  PlanBasics PlanBasicsOf(int64_t round, const std::vector<std::string>& cohort) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status RunEvaluation(int64_t round);
  Status WaitForSites(std::vector<std::string>* cohort) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes `published` as round `round`'s checkpoint, records it and makes it the global model.
  Status PublishModel(int64_t round, PublishedModel published, const RoundRecord& record);
  bool WaitUntil(absl::Time deadline, const std::function<bool()>& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every site the open stage still waits for is lost (SiteLost); true when none is pending.
  bool OnlyLostPending() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // AlreadyExists(why), recorded as upload_refused.
  Status RefuseUpload(const std::string& site, const std::string& why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The folder an upload of `site` with `header` feeds, in the open plan's mode.
  StatusOr<std::unique_ptr<UpdateFolder>> NewFolder(const std::string& site,
                                                    const v1::TransferHeader& header)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // UploadOwner, called by sinks without any lock.
  Status CommitUpload(UploadSink* sink, uint64_t bytes) override ABSL_LOCKS_EXCLUDED(mu_);
  void Unregister(UploadSink* sink) override ABSL_LOCKS_EXCLUDED(mu_);
  // SecureRoundDriver, called by secure_ on the driver thread with mu_ held.
  absl::Time Now() override { return options_.clock->Now(); }
  // Names the finished plan_ (plan_sha256_) and records it, before any site sees it.
  Status RecordPlan() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Opens `phase` for `sites` (each may get its own payload) and waits until all answered or
  // `deadline`; records the sites that did not answer as dropped. Cancelled on shutdown.
  Status RunStage(Phase phase, const std::vector<std::string>& sites,
                  std::map<std::string, std::string> payloads, absl::Time deadline) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClosePhase(const std::string& why) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status ReleaseFits() override { return privacy_->NextRoundFits(); }
  Status BookRelease() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return SpendPrivacy(); }

  const EngineOptions options_;
  const Checkpoints checkpoints_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<Strategy> strategy_;    // driver thread only
  std::optional<EnginePrivacy> privacy_;  // set by Resume; driver thread only past the getters
  SecureRound secure_;                    // its own lock, after mu_ and a sink's

  // Orders admissions against the audit log's closing record (federation_finished): an
  // admission is recorded before it, or not at all. Taken before mu_, never while holding it.
  absl::Mutex close_mu_;
  bool closed_ ABSL_GUARDED_BY(close_mu_) = false;
  mutable absl::Mutex mu_;
  ChangeSignal changed_;  // a CondVar that also tells SetChangeListener's listener
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  Status storage_error_ ABSL_GUARDED_BY(mu_);
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kIdle;
  int64_t completed_round_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t attempt_ ABSL_GUARDED_BY(mu_) = 0;        // plans made, over all rounds
  int64_t round_attempt_ ABSL_GUARDED_BY(mu_) = 0;  // plans made for the current round
  v1::RoundPlan plan_ ABSL_GUARDED_BY(mu_);
  std::string plan_sha256_ ABSL_GUARDED_BY(mu_);                      // of the open training plan
  std::set<std::string> pending_ ABSL_GUARDED_BY(mu_);                // cohort members not yet done
  std::set<std::string> lost_ ABSL_GUARDED_BY(mu_);                   // SiteLost's
  std::map<std::string, bool> consent_ ABSL_GUARDED_BY(mu_);          // this attempt's answers
  std::set<std::string> evaluation_declined_ ABSL_GUARDED_BY(mu_);    // this evaluation's
  std::map<std::string, std::string> payloads_ ABSL_GUARDED_BY(mu_);  // per-site task payload
  Membership members_ ABSL_GUARDED_BY(mu_);
  RoundUploads uploads_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::MetricsReport> reports_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<StreamingAggregator> aggregator_ ABSL_GUARDED_BY(mu_);
  PublishedModel global_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_up_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_down_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t secure_examples_ ABSL_GUARDED_BY(mu_) = 0;  // the last unmasked sum's total
  RoundRecord last_record_ ABSL_GUARDED_BY(mu_);
  bool statistics_step_ ABSL_GUARDED_BY(mu_) = false;        // the open plan is the statistics step
  std::vector<double> statistics_sum_ ABSL_GUARDED_BY(mu_);  // its unmasked sum, exactly
  double statistics_clip_ ABSL_GUARDED_BY(mu_) = 0;          // its moments' clip
  std::optional<v1::Standardization> standardization_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hansa

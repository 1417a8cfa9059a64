// RoundEngine's entry points for sites (called from transport threads): join, tasks, the model
// download, uploads, plan answers, SecAgg+ messages and evaluation reports. The round driver
// (Run and what it calls) is in round_engine.cc.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/audit/record_text.h"
#include "common/fileio/fileio.h"
#include "common/logging/logging.h"
#include "common/pki/revocation.h"
#include "common/plan/plan_readers.h"
#include "common/plan/plan_writer.h"
#include "coordinator/federation_status.h"
#include "coordinator/round_engine.h"
#include "coordinator/round_metrics.h"
#include "proto/plan_digest.h"
#include "spdlog/spdlog.h"

namespace hansa {

// ---------------------------------------------------------------------------------------------
// Transport side

StatusOr<v1::JoinReply> RoundEngine::Join(const SiteIdentity& site) {
  const ParticipantFields who{site.name, site.organisation, site.country, site.fingerprint};
  {
    // A refusal is always on record. An admission once the log is closed is not: the site
    // hears DONE at its first task, and the log stays closed.
    absl::MutexLock close(&close_mu_);
    if (Status admitted = members_.CheckAdmission(site); !admitted.ok()) {
      RETURN_IF_ERROR(Record(SiteRefused(who, std::string(admitted.message()))));
      return admitted;
    }
    if (!closed_) RETURN_IF_ERROR(Record(SiteAdmitted(who)));
  }
  if (!site.certificate_pem.empty()) {
    StatusOr<Certificate> cert = Certificate::FromPem(site.certificate_pem);
    const std::string soon = cert.ok() ? ExpiryWarning(*cert, absl::Now()) : std::string();
    if (!soon.empty()) spdlog::warn("site '{}' joined: {}", site.name, soon);
  }
  absl::MutexLock lock(&mu_);
  members_.Admit(site, options_.clock->Now());
  if (options_.status) {
    StatusOr<Certificate> cert = Certificate::FromPem(site.certificate_pem);
    options_.status->SiteJoined(site.name, site.organisation, site.country,
                                cert.ok() ? cert->NotAfter() : absl::InfiniteFuture(),
                                options_.clock->Now());
  }
  changed_.SignalAll();
  v1::JoinReply reply;
  reply.set_site(site.name);
  reply.set_federation(options_.federation);
  reply.set_coordinator_country(options_.coordinator_country);
  reply.set_max_chunk_bytes(options_.max_chunk_bytes);
  return reply;
}

Status RoundEngine::RecordCertificateRefusal(const ParticipantFields& who,
                                             const std::string& serial, const std::string& problem,
                                             const std::string& reason, const std::string& stage) {
  RETURN_IF_ERROR(Record(CertificateRefused(who, serial, problem, reason, stage)));
  // Refused at a call: the site had joined with that certificate; it is not waited for again.
  absl::MutexLock lock(&mu_);
  if (members_.Forget(who.site, who.fingerprint)) changed_.SignalAll();
  return absl::OkStatus();
}

void RoundEngine::SiteLost(const std::string& site) {
  absl::MutexLock lock(&mu_);
  if (lost_.insert(site).second) changed_.SignalAll();
}

StatusOr<v1::Task> RoundEngine::NextTask(const std::string& site, absl::Duration wait) {
  absl::Time deadline = options_.clock->Now() + wait;
  absl::MutexLock lock(&mu_);
  if (!members_.Joined(site)) {
    return absl::FailedPreconditionError(
        absl::StrCat("site '", site, "' asked for work before joining; call Join first"));
  }
  for (;;) {
    members_.Seen(site, options_.clock->Now());
    if (options_.status) options_.status->SiteSeen(site, options_.clock->Now());
    v1::Task task;
    if (phase_ == Phase::kDone) {
      members_.ToldDone(site);
      task.set_kind(v1::Task::DONE);
      task.set_message(absl::StrCat("federation finished after round ", completed_round_));
      return task;
    }
    if (phase_ != Phase::kIdle && pending_.count(site)) {
      task.set_kind(StageTaskKind(phase_));
      *task.mutable_plan() = plan_;
      SetUploadTimeLeft(options_.clock->Now(), &task);
      if (options_.audit) {  // the site keeps it with its answer (reconcile.h)
        ASSIGN_OR_RETURN(AuditAnchor head, options_.audit->SignedAnchor());
        task.mutable_audit_head()->set_records(static_cast<uint64_t>(head.records));
        task.mutable_audit_head()->set_sha256(head.sha256);
        task.mutable_audit_head()->set_signature(head.signature);
      }
      auto payload = payloads_.find(site);
      if (payload != payloads_.end()) task.set_payload(payload->second);
      return task;
    }
    if (shutdown_ || options_.clock->Now() >= deadline) {
      task.set_kind(v1::Task::WAIT);
      return task;
    }
    changed_.WaitWithDeadline(&mu_, options_.clock->WaitDeadline(deadline));
  }
}

StatusOr<SharedBytes> RoundEngine::Download(const std::string& site, uint64_t round,
                                            const std::string& sha256) {
  absl::MutexLock lock(&mu_);
  // The digest names the model; `round` (the round the plan is for) only helps the message.
  if (sha256 != global_.sha256) {
    return absl::FailedPreconditionError(
        absl::StrCat("model ", sha256.substr(0, 16), " asked for round ", round,
                     " is not the current global model (after round ", completed_round_,
                     "); ask for a new task"));
  }
  return global_.payload;
}

void RoundEngine::CountBytesDown(int64_t bytes) {
  absl::MutexLock lock(&mu_);
  bytes_down_ += bytes;
}

StatusOr<std::unique_ptr<UploadSink>> RoundEngine::BeginUpload(const std::string& site,
                                                               const v1::TransferHeader& header) {
  absl::MutexLock lock(&mu_);
  // A replay is named as one even when the round has moved past its upload phase since.
  if (header.round() == plan_.round() && uploads_.Committed(site)) {
    return RefuseUpload(site,
                        absl::StrCat("site '", site, "' already uploaded its update for round ",
                                     plan_.round(), " (replayed upload refused)"));
  }
  // One upload at a time: two streams of one site would both count (plaintext), or leave a
  // chunk that cannot be withdrawn (secure).
  if (uploads_.InProgress(site, attempt_)) {
    return RefuseUpload(
        site, absl::StrCat("site '", site, "' already has an upload for round ", plan_.round(),
                           " in progress; a second one at once is refused"));
  }
  if (phase_ != Phase::kTrain || header.round() != plan_.round()) {
    return absl::FailedPreconditionError(absl::StrCat("no upload for round ", header.round(),
                                                      " is expected now; ask for a new task"));
  }
  if (pending_.count(site) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("site '", site, "' is not in the cohort of round ", plan_.round()));
  }
  // No update without the site's consent on record.
  if (auto answer = consent_.find(site); answer == consent_.end() || !answer->second) {
    return absl::FailedPreconditionError(
        absl::StrCat("site '", site, "' has not accepted the plan of round ", plan_.round(),
                     "; answer it (RespondToPlan) before uploading"));
  }
  UploadLimits limits;
  limits.secure = IsSecure(plan_);
  limits.vector_length = plan_.secagg().vector_length();
  limits.model_bytes = global_.payload.size();
  limits.max_examples = options_.max_examples;
  RETURN_IF_ERROR(CheckUploadHeader(header, limits));
  ASSIGN_OR_RETURN(std::unique_ptr<UpdateFolder> folder, NewFolder(site, header));
  StatusOr<std::unique_ptr<UploadSink>> sink =
      uploads_.Open(this, site, static_cast<int64_t>(plan_.round()), attempt_, header,
                    options_.max_chunk_bytes, std::move(folder));
  if (sink.ok() && options_.status) options_.status->UploadStarted();
  return sink;
}

StatusOr<std::unique_ptr<UpdateFolder>> RoundEngine::NewFolder(const std::string& site,
                                                               const v1::TransferHeader& header) {
  if (IsSecure(plan_)) {
    RETURN_IF_ERROR(MakeDirs(options_.state_dir + "/spill"));
    ASSIGN_OR_RETURN(std::unique_ptr<SpillFile> spill,
                     SpillFile::Create(options_.state_dir + "/spill",
                                       absl::StrCat(site, "-", attempt_, "-masked")));
    std::optional<uint32_t> id = secure_.SiteNumber(site);
    if (!id) {
      return absl::FailedPreconditionError(
          absl::StrCat("site '", site, "' has no number in round ", plan_.round()));
    }
    return secure_.NewFolder(*id, plan_.round(), std::move(spill));
  }
  // Under client-level privacy every site weighs the same: the sensitivity is one update.
  const bool central = privacy_->client_level();
  ASSIGN_OR_RETURN(
      auto contribution,
      aggregator_->Begin(site, central ? 1.0 : static_cast<double>(header.num_examples())));
  return MakePlaintextFolder(std::move(contribution), global_.layout,
                             central ? privacy_->ddg().clip_norm : 0);
}

Status RoundEngine::RefuseUpload(const std::string& site, const std::string& why) {
  spdlog::warn("round {}: {}", plan_.round(), why);
  RETURN_IF_ERROR(Record(UploadRefused(static_cast<int64_t>(plan_.round()), site, why)));
  return absl::AlreadyExistsError(why);
}

Status RoundEngine::CommitUpload(UploadSink* sink, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(
      uploads_.Commit(sink, phase_ == Phase::kTrain, attempt_, [&](const UploadSink& s) {
        return Record(UpdateReceived(s.round(), s.site(), bytes, s.header().sha256()));
      }));
  pending_.erase(sink->site());
  bytes_up_ += static_cast<int64_t>(bytes);
  if (options_.status) {
    options_.status->BytesReceived(sink->site(), static_cast<int64_t>(bytes), true);
    options_.status->UploadEnded();  // the committed sink has left the round's list
  }
  if (IsSecure(plan_)) {
    spdlog::info("round {}: masked update from {} ({} bytes)", sink->round(), sink->site(), bytes);
  } else {
    spdlog::info("round {}: update from {} ({} bytes, {} examples)", sink->round(), sink->site(),
                 bytes, sink->header().num_examples());
  }
  changed_.SignalAll();
  return absl::OkStatus();
}

void RoundEngine::Unregister(UploadSink* sink) {
  absl::MutexLock lock(&mu_);
  uploads_.Unregister(sink);
  if (options_.status) options_.status->UploadEnded();
}

Status RoundEngine::ReportMetrics(const std::string& site, const v1::MetricsReport& report) {
  absl::MutexLock lock(&mu_);
  // A second report is named as one even once the evaluation has closed.
  if (report.round() == plan_.round() && reports_.count(site)) {
    return absl::AlreadyExistsError(
        absl::StrCat("site '", site, "' already reported round ", report.round()));
  }
  if (phase_ != Phase::kEvaluate || report.round() != plan_.round()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no evaluation of round ", report.round(), " is expected now"));
  }
  if (pending_.count(site) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("site '", site, "' already reported round ", report.round()));
  }
  if (!(report.accuracy() >= 0 && report.accuracy() <= 1) || !std::isfinite(report.loss()) ||
      report.num_examples() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics from '", site, "' are not plausible (accuracy ", report.accuracy(),
                     ", loss ", report.loss(), ", examples ", report.num_examples(), ")"));
  }
  if (Status counts = ReportedCounts(report).status(); !counts.ok()) {
    return Annotate(counts, absl::StrCat("metrics from '", site, "'"));
  }
  reports_[site] = report;
  pending_.erase(site);
  changed_.SignalAll();
  return absl::OkStatus();
}

Status RoundEngine::SubmitSecAgg(const std::string& site, const v1::SecAggSubmission& m) {
  absl::MutexLock lock(&mu_);
  if (phase_ == Phase::kIdle || StageTaskKind(phase_) != m.stage() || m.round() != plan_.round()) {
    return absl::FailedPreconditionError(absl::StrCat("no ", v1::Task::Kind_Name(m.stage()),
                                                      " message for round ", m.round(),
                                                      " is expected now"));
  }
  if (pending_.count(site) == 0) {
    return absl::AlreadyExistsError(absl::StrCat("site '", site, "' already answered ",
                                                 v1::Task::Kind_Name(m.stage()),
                                                 " (replay refused)"));
  }
  if (!IsSecAggPhase(phase_)) {
    return absl::FailedPreconditionError(absl::StrCat("no secure-aggregation stage for site '",
                                                      site, "' is open in round ", plan_.round()));
  }
  RETURN_IF_ERROR(secure_.Submit(site, m));
  bytes_up_ += static_cast<int64_t>(m.payload().size());
  if (options_.status) {
    options_.status->BytesReceived(site, static_cast<int64_t>(m.payload().size()), false);
  }
  pending_.erase(site);
  changed_.SignalAll();
  return absl::OkStatus();
}

Status RoundEngine::Accept(const std::string& site, const v1::RoundPlan& plan) {
  v1::PlanResponse response;
  response.set_round(plan.round());
  response.set_plan_sha256(PlanSha256(plan));
  response.set_accepted(true);
  return RespondToPlan(site, response);
}

Status RoundEngine::RespondToPlan(const std::string& site, const v1::PlanResponse& response) {
  absl::MutexLock lock(&mu_);
  if (phase_ == Phase::kEvaluate) return DeclineEvaluation(site, response);
  // A second answer to the same plan is a replay, also once the stage it came in has closed.
  if (response.round() == plan_.round() && response.plan_sha256() == plan_sha256_ &&
      consent_.count(site)) {
    return absl::AlreadyExistsError(absl::StrCat("site '", site,
                                                 "' already answered the plan of round ",
                                                 plan_.round(), " (replay refused)"));
  }
  const bool open = phase_ != Phase::kIdle && phase_ != Phase::kEvaluate &&
                    phase_ != Phase::kDone && !plan_sha256_.empty();
  if (!open || response.round() != plan_.round()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no plan for round ", response.round(), " is open for answers now; ask for a new task"));
  }
  if (std::find(plan_.cohort().begin(), plan_.cohort().end(), site) == plan_.cohort().end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("site '", site, "' is not in the cohort of round ", plan_.round()));
  }
  if (response.plan_sha256() != plan_sha256_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "answer from '", site, "' names plan ", response.plan_sha256().substr(0, 16),
        ", not the plan of round ", plan_.round(), " (", plan_sha256_.substr(0, 16), ")"));
  }
  if (response.accepted()) {
    RETURN_IF_ERROR(Record(SiteConsented(static_cast<int64_t>(plan_.round()), site)));
  } else {
    RETURN_IF_ERROR(RecordRefusal(site, response));
  }
  consent_[site] = response.accepted();
  return absl::OkStatus();
}

Status RoundEngine::DeclineEvaluation(const std::string& site, const v1::PlanResponse& response) {
  if (response.round() != plan_.round() || response.plan_sha256() != PlanSha256(plan_)) {
    return absl::FailedPreconditionError(
        absl::StrCat("answer from '", site, "' names plan ", response.plan_sha256().substr(0, 16),
                     " of round ", response.round(), ", not the evaluation open now (round ",
                     plan_.round(), "); ask for a new task"));
  }
  if (response.accepted()) {
    return absl::InvalidArgumentError(
        "an evaluation plan is accepted by reporting its metrics, not by an answer");
  }
  if (evaluation_declined_.count(site)) {
    return absl::AlreadyExistsError(absl::StrCat("site '", site,
                                                 "' already refused the evaluation of round ",
                                                 plan_.round(), " (replay refused)"));
  }
  if (!pending_.count(site)) {
    return absl::FailedPreconditionError(
        absl::StrCat("site '", site, "' has no evaluation of round ", plan_.round(), " to answer"));
  }
  RETURN_IF_ERROR(RecordRefusal(site, response));
  evaluation_declined_.insert(site);
  return absl::OkStatus();
}

Status RoundEngine::RecordRefusal(const std::string& site, const v1::PlanResponse& response) {
  const int64_t round = static_cast<int64_t>(plan_.round());
  std::string reason = response.reason().empty() ? "no reason given" : response.reason();
  reason = RecordText(reason, 2048);  // a whole character at the cut, always UTF-8
  RETURN_IF_ERROR(Record(SiteDeclined(round, site, reason)));
  spdlog::warn("round {}: site {} refused the {}: {}", round, site,
               phase_ == Phase::kEvaluate ? "evaluation" : "plan", reason);
  if (options_.status) options_.status->SiteRefused(site, reason);
  pending_.erase(site);
  changed_.SignalAll();
  return absl::OkStatus();
}

}  // namespace hansa

#include "client/site_session.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/link/chunks.h"
#include "common/audit/events.h"
#include "common/audit/record_text.h"
#include "common/crypto/sha256.h"
#include "common/logging/logging.h"
#include "common/plan/plan_readers.h"
#include "common/plan/study_facts.h"
#include "common/privacy/central_gaussian.h"
#include "common/tensor/safetensors.h"
#include "proto/plan_digest.h"
#include "spdlog/spdlog.h"

namespace hansa {
namespace {

// The site asks for a task at most this often, whatever the coordinator answers.
constexpr absl::Duration kQuickestPoll = absl::Milliseconds(250);

std::string_view FloatBytes(const std::vector<float>& v) {
  return std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// The pieces CutChunks makes of `head` followed by `data`, without joining them: views into
// both, except a piece that spans the two, which is copied into *spanning (at most one chunk).
std::vector<std::string_view> CutPayload(std::string_view head, std::string_view data,
                                         uint32_t plan_chunk_bytes, uint32_t max_chunk_bytes,
                                         std::string* spanning) {
  if (head.empty()) return CutChunks(data, plan_chunk_bytes, max_chunk_bytes);
  if (data.empty()) return CutChunks(head, plan_chunk_bytes, max_chunk_bytes);
  const size_t step = std::max<size_t>(
      1,
      std::min<size_t>(plan_chunk_bytes ? plan_chunk_bytes : kDefaultChunkBytes, max_chunk_bytes));
  std::vector<std::string_view> pieces = CutChunks(head, plan_chunk_bytes, max_chunk_bytes);
  size_t taken = 0;  // of data
  if (pieces.back().size() < step) {
    // The last piece of the head is topped up from the data, as one payload would be cut.
    taken = std::min(step - pieces.back().size(), data.size());
    spanning->assign(pieces.back().data(), pieces.back().size());
    spanning->append(data.data(), taken);
    pieces.back() = *spanning;
  }
  std::vector<std::string_view> rest =
      CutChunks(data.substr(taken), plan_chunk_bytes, max_chunk_bytes);
  pieces.insert(pieces.end(), rest.begin(), rest.end());
  return pieces;
}

// Errors after which the site rejoins instead of giving up: the coordinator restarted, the
// network blinked, or a round moved on under us.
bool IsTransient(const Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsCancelled(s) ||
         absl::IsAborted(s) || absl::IsFailedPrecondition(s) || absl::IsUnknown(s) ||
         absl::IsInternal(s) || absl::IsResourceExhausted(s);
}

// The study a long-lived site finished or joins, for its log; empty where the plans named none.
std::string StudyDone(const std::string& id) {
  return id.empty() ? "" : absl::StrCat("study '", RecordText(id, kMaxStudyIdBytes), "' done; ");
}
std::string StudyJoined(const std::string& id) {
  return id.empty() ? "" : absl::StrCat(" in study '", RecordText(id, kMaxStudyIdBytes), "'");
}

}  // namespace

SiteSession::SiteSession(SiteSessionOptions options, SiteLink* link, LocalTrainer* trainer)
    : options_(std::move(options)),
      link_(link),
      trainer_(trainer),
      egress_(options_.egress),
      secagg_(options_.name, options_.ca_certificate_pem, options_.private_key_pem) {}

StatusOr<std::unique_ptr<SiteSession>> SiteSession::Create(SiteSessionOptions options,
                                                           SiteLink* link, LocalTrainer* trainer) {
  std::unique_ptr<SiteSession> s(new SiteSession(std::move(options), link, trainer));
  auto privacy = SitePrivacy::Open(s->options_.policy, s->options_.state_dir);
  if (!privacy.ok()) {
    return Annotate(privacy.status(), absl::StrCat("privacy ledgers in ", s->options_.state_dir));
  }
  s->privacy_ = *std::move(privacy);
  return s;
}

void SiteSession::Stop() {
  stop_ = true;
  link_->Stop();
}

void SiteSession::ReplacePolicy(SitePolicy policy) {
  absl::MutexLock lock(&policy_mu_);
  new_policy_ = std::move(policy);
}

namespace {

bool SamePrivacyRules(const SitePolicy& a, const SitePolicy& b) {
  return a.require_client_dp == b.require_client_dp && a.max_epsilon == b.max_epsilon &&
         a.delta == b.delta && a.require_record_dp == b.require_record_dp &&
         a.max_record_epsilon == b.max_record_epsilon && a.record_delta == b.record_delta;
}

}  // namespace

void SiteSession::TakeNewPolicy(const v1::Task& task) {
  std::optional<SitePolicy> policy;
  {
    absl::MutexLock lock(&policy_mu_);
    if (!new_policy_) return;
    // The plan already answered keeps the policy it was answered under.
    if (task.has_plan() && !answered_plan_.empty() && PlanSha256(task.plan()) == answered_plan_) {
      return;
    }
    policy.swap(new_policy_);
  }
  // Only the TorchScript copies opened with the site (the trainer holds them) can be used.
  policy->script_models.clear();
  for (const auto& [name, model] : options_.policy.script_models) {
    const auto& allowed = policy->allowed_models;
    if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) {
      policy->script_models.emplace(name, model);
    }
  }
  std::optional<SitePrivacy> privacy;
  if (!SamePrivacyRules(*policy, options_.policy)) {
    auto opened = SitePrivacy::Open(*policy, options_.state_dir);
    if (!opened.ok()) {
      spdlog::error("new policy not taken, the old one stays: privacy ledgers in {}: {}",
                    options_.state_dir, opened.status().message());
      return;
    }
    privacy = *std::move(opened);
  }
  // On record before any plan is answered under it; a policy that cannot be recorded is not
  // taken.
  if (Status recorded = egress_.Append(PolicyApplied(*policy, "reload")); !recorded.ok()) {
    spdlog::error("new policy not taken, the old one stays: {}", recorded.message());
    return;
  }
  if (privacy) privacy_ = std::move(privacy);
  options_.policy = *std::move(policy);
  spdlog::info("site policy replaced: the next plan is answered under the new one");
}

Status SiteSession::Pause(absl::Duration d) {
  const absl::Time until = options_.clock->Now() + d;
  for (;;) {
    if (stop_) return absl::CancelledError("site stopping");
    const absl::Duration left = until - options_.clock->Now();
    if (left <= absl::ZeroDuration()) return absl::OkStatus();
    options_.clock->SleepFor(std::min(left, absl::Milliseconds(250)));
  }
}

Status SiteSession::Send(const char* type, uint64_t round, const std::string& bytes,
                         const std::function<Status()>& send) {
  ASSIGN_OR_RETURN(std::string sha, egress_.Sending(type, round, bytes));
  return egress_.Outcome(type, round, sha, send());
}

Status SiteSession::JoinWithRetry() {
  const absl::Time give_up = options_.clock->Now() + absl::Seconds(options_.reconnect_seconds);
  double backoff = 0.5;
  for (;;) {
    if (stop_) return absl::CancelledError("site stopping");
    // The join is recorded and sent only over a connection whose handshake passed the CA and
    // the pin: a refused handshake leaves nothing to record.
    Status st = link_->Connect(absl::Seconds(options_.connect_seconds));
    if (absl::IsPermissionDenied(st) || absl::IsCancelled(st)) return st;
    if (st.ok()) {
      v1::JoinRequest req;
      StatusOr<v1::JoinReply> reply;
      st = Send(audit_events::kMessageJoin, 0, req.SerializeAsString(), [&] {
        reply = link_->Join(req);
        return reply.status();
      });
      if (st.ok()) {
        // A restarted coordinator may plan the same round again, down to the same digest,
        // with no memory of our answer: answer again (AlreadyExists if it had kept it).
        answered_plan_.clear();
        RETURN_IF_ERROR(egress_.Joined(*reply));
        if (study_done_) {
          spdlog::debug("joined federation '{}' as '{}' (waiting for its next study)",
                        reply->federation(), reply->site());
        } else {
          spdlog::info("joined federation '{}' as '{}'", reply->federation(), reply->site());
        }
        return absl::OkStatus();
      }
      if (absl::IsPermissionDenied(st) || absl::IsUnauthenticated(st) ||
          absl::IsInvalidArgument(st) || IsStorageError(st)) {
        return st;
      }
    }
    if (study_done_) {
      // Between studies the coordinator is gone until the next one starts: no deadline, and
      // no line per attempt (Run said once that the site waits).
      spdlog::debug("coordinator not reachable ({}); retrying in {:.1f} s", st.message(), backoff);
    } else {
      if (options_.clock->Now() >= give_up) {
        if (options_.reconnect_seconds <= 0) return st;
        return absl::UnavailableError(absl::StrCat("coordinator unreachable for ",
                                                   options_.reconnect_seconds,
                                                   " s (last error: ", st.message(), ")"));
      }
      spdlog::warn("coordinator not reachable ({}); retrying in {:.1f} s", st.message(), backoff);
    }
    RETURN_IF_ERROR(Pause(absl::Seconds(backoff)));
    backoff = std::min(backoff * 2, 5.0);
  }
}

Status SiteSession::Run() {
  RETURN_IF_ERROR(egress_.Append(PolicyApplied(options_.policy, "start")));
  RETURN_IF_ERROR(JoinWithRetry());
  for (;;) {
    if (stop_) return absl::CancelledError("site stopping");
    const absl::Time asked = options_.clock->Now();
    StatusOr<v1::Task> task = link_->NextTask(options_.poll_wait);
    Status st = task.status();
    if (task.ok()) {
      if (task->kind() == v1::Task::DONE) {
        if (!options_.wait_for_next_study) {
          spdlog::info("coordinator: {}", task->message());
          return absl::OkStatus();
        }
        // The finished coordinator answers DONE until it goes: one line, then quiet polls.
        if (!study_done_) {
          spdlog::info("coordinator: {}; {}waiting for the federation's next study",
                       task->message(), StudyDone(study_id_));
          study_done_ = true;
        }
        RETURN_IF_ERROR(Pause(options_.study_poll));
        continue;
      }
      if (study_done_ && task->has_plan()) {
        study_done_ = false;
        spdlog::info("a new study offers round {}: taking part{}", task->plan().round(),
                     StudyJoined(task->plan().study().id()));
      }
      if (task->has_plan() && task->plan().study().id() != study_id_) {
        study_id_ = task->plan().study().id();
      }
      TakeNewPolicy(*task);
      st = Handle(*task);
      if (st.ok() && task->kind() == v1::Task::WAIT) {
        // The coordinator holds a poll until it has a task or the wait runs out; one that
        // answers at once (shutting down, or hostile) must not have the site ask again in a
        // tight loop.
        RETURN_IF_ERROR(
            Pause(std::min(options_.poll_wait, kQuickestPoll) - (options_.clock->Now() - asked)));
      }
      if (st.ok()) continue;
    }
    if (stop_) return absl::CancelledError("site stopping");
    if (absl::IsPermissionDenied(st) || absl::IsUnauthenticated(st)) return st;
    // The egress ledger or the privacy accounts cannot be written: nothing may leave unrecorded.
    if (IsStorageError(st)) return st;
    if (options_.stop_on_task_error) return st;
    if (!IsTransient(st)) {
      // The task failed at this site (bad model, refused plan): say why and carry on; the
      // coordinator leaves the site out of this round.
      spdlog::error("{}", st.message());
      RETURN_IF_ERROR(Pause(absl::Seconds(1)));
      continue;
    }
    if (study_done_) {
      spdlog::debug("{}; reconnecting", st.message());
    } else {
      spdlog::warn("{}; reconnecting", st.message());
    }
    RETURN_IF_ERROR(Pause(absl::Milliseconds(500)));
    RETURN_IF_ERROR(JoinWithRetry());
  }
}

Status SiteSession::Handle(const v1::Task& task) {
  switch (task.kind()) {
    case v1::Task::WAIT:
    case v1::Task::DONE:
      return absl::OkStatus();
    case v1::Task::TRAIN:
      RETURN_IF_ERROR(Consent(task));
      return Train(task.plan(), task.payload());
    case v1::Task::EVALUATE:
      return Evaluate(task);
    case v1::Task::SECAGG_ADVERTISE:
    case v1::Task::SECAGG_SHARE:
    case v1::Task::SECAGG_CONSISTENCY:
    case v1::Task::SECAGG_UNMASK:
      RETURN_IF_ERROR(Consent(task));
      return SecAggStage(task);
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown task kind ", task.kind()));
  }
}

Status SiteSession::Consent(const v1::Task& task) {
  const v1::RoundPlan& plan = task.plan();
  if (PlanSha256(plan) == answered_plan_) return answer_;
  Status policy = CheckPlan(options_.policy, plan, /*sends_update=*/true);
  // The cost is booked when the update leaves (Train), not here: an attempt the site answers
  // but sends nothing in spends nothing. A plan booked before is answered again after a rejoin.
  if (policy.ok() && !privacy_->Booked(plan)) policy = privacy_->Check(plan).status();
  if (policy.ok()) policy = options_.spent.Check(plan);
  return Answer(task, std::move(policy));
}

Status SiteSession::Answer(const v1::Task& task, Status policy) {
  const v1::RoundPlan& plan = task.plan();
  const std::string digest = PlanSha256(plan);
  if (digest == answered_plan_) return answer_;
  const auto round = static_cast<int64_t>(plan.round());
  // The coordinator's audit head it showed with the plan: reconcile checks its log still has it.
  std::optional<AuditAnchor> shown;
  if (task.has_audit_head()) {
    shown = AuditAnchor{
        static_cast<int64_t>(std::min<uint64_t>(task.audit_head().records(), INT64_MAX)),
        task.audit_head().sha256(), task.audit_head().signature()};
  }
  RETURN_IF_ERROR(RecordStudy(plan));  // on record before the answer that consents to them
  RETURN_IF_ERROR(egress_.Append(
      policy.ok()
          ? PlanAccepted(round, digest, shown)
          : PlanRefused(round, digest, RecordText(std::string(policy.message()), 2048), shown)));
  v1::PlanResponse response;
  response.set_round(plan.round());
  response.set_plan_sha256(digest);
  response.set_accepted(policy.ok());
  response.set_reason(std::string(policy.message()));
  Status sent = Send(audit_events::kMessagePlanResponse, plan.round(), response.SerializeAsString(),
                     [&] { return link_->RespondToPlan(response); });
  // AlreadyExists: an earlier answer of ours arrived (the reply was lost); it stands.
  // FailedPrecondition for an evaluation: it closed before the answer came; nothing to undo.
  const bool closed = task.kind() == v1::Task::EVALUATE && absl::IsFailedPrecondition(sent);
  if (!sent.ok() && !absl::IsAlreadyExists(sent) && !closed) return sent;
  answered_plan_ = digest;
  answer_ = policy;
  if (!policy.ok()) spdlog::warn("round {}: plan refused: {}", plan.round(), policy.message());
  return policy;
}

Status SiteSession::RecordStudy(const v1::RoundPlan& plan) {
  std::string study = StudyFactsSha256(plan.study());
  if (study == recorded_study_) return absl::OkStatus();
  RETURN_IF_ERROR(egress_.Append(
      StudyFactsSeen(static_cast<int64_t>(plan.round()), study, StudyFactsJson(plan.study()))));
  recorded_study_ = std::move(study);
  return absl::OkStatus();
}

StatusOr<const Model*> SiteSession::FetchModel(const v1::RoundPlan& plan) {
  if (cached_model_ && cached_sha256_ == plan.global_model_sha256()) return &*cached_model_;
  // Another model's values are of no more use: gone before the new one arrives.
  ReleaseModel();
  v1::DownloadRequest req;
  req.set_round(plan.round());
  req.set_model_sha256(plan.global_model_sha256());
  Model model;
  RETURN_IF_ERROR(Send(audit_events::kMessageDownloadRequest, plan.round(), req.SerializeAsString(),
                       [&]() -> Status {
                         ASSIGN_OR_RETURN(model,
                                          link_->Download(plan, options_.policy.max_model_bytes));
                         return absl::OkStatus();
                       }));
  cached_sha256_ = plan.global_model_sha256();
  cached_model_ = std::move(model);
  return &*cached_model_;
}

void SiteSession::ReleaseModel() {
  cached_model_.reset();
  cached_sha256_.clear();
}

Model SiteSession::TakeModel() {
  Model model = std::move(*cached_model_);
  ReleaseModel();
  return model;
}

Status SiteSession::Train(const v1::RoundPlan& plan, const std::string& share_delivery) {
  RETURN_IF_ERROR(CheckPlan(options_.policy, plan, /*sends_update=*/true));
  if (unsent_ && unsent_->plan_sha256 == PlanSha256(plan)) {
    spdlog::info("round {}: sending the same update again (its upload broke off)", plan.round());
    ASSIGN_OR_RETURN(v1::UploadReply reply, SendUnsent(plan));
    spdlog::info("round {}: update accepted ({} bytes)", plan.round(), reply.bytes());
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(RefuseASpentPlan(plan, "train and send"));
  const bool secure = IsSecure(plan);
  if (secure) RETURN_IF_ERROR(secagg_.OnShareDelivery(plan, share_delivery));
  ASSIGN_OR_RETURN(const Model* global, FetchModel(plan));
  ASSIGN_OR_RETURN(TrainResult result, trainer_->Train(plan, *global));
  // Booked before anything of the update leaves: a crash after sending must not forget it.
  // A plan booked before (its upload failed and is sent again) is not checked or booked twice.
  RETURN_IF_ERROR(privacy_->Book(plan, egress_));
  RETURN_IF_ERROR(options_.spent.Spend(plan, egress_));
  spdlog::info("round {}: trained {} examples in {:.1f} s (loss {:.4f})", plan.round(),
               result.num_examples, result.seconds, result.loss);
  if (secure) return UploadMasked(plan, TakeModel(), result);
  return UploadPlain(plan, TakeModel(), result);
}

Status SiteSession::UploadPlain(const v1::RoundPlan& plan, Model global,
                                const TrainResult& result) {
  Unsent unsent;
  unsent.plan_sha256 = PlanSha256(plan);
  unsent.safetensors_header = EncodeSafetensorsHeader(global.layout, {});
  // `global` is gone from here on: the update, written over it, is all that is left to send.
  ASSIGN_OR_RETURN(unsent.values, CheckedHostUpdate(*trainer_, std::move(global)));
  if (plan.privacy().mechanism() == kCentralGaussian) {
    // The coordinator refuses updates longer than the plan's clip norm.
    const double norm = ClipUpdateForCentralGaussian(unsent.values, plan.privacy().clip_norm());
    spdlog::info("round {}: update norm {:.4g} clipped to {:g}", plan.round(), norm,
                 plan.privacy().clip_norm());
  }
  trainer_->Leaving(unsent.values);
  // The payload is the safetensors encoding of the update: its header, then the values' bytes
  // as they lie in memory (little-endian float32). It is hashed and sent from there, never
  // copied whole.
  const std::string_view data = FloatBytes(unsent.values);
  Sha256Hasher hasher;
  hasher.Update(unsent.safetensors_header);
  hasher.Update(data);
  v1::TransferHeader& header = unsent.header;
  header.set_round(plan.round());
  header.set_total_bytes(unsent.safetensors_header.size() + data.size());
  header.set_sha256(ToHex(hasher.Finish()));
  header.set_num_examples(static_cast<uint64_t>(result.num_examples));
  header.set_train_loss(result.loss);
  header.set_train_seconds(result.seconds);
  unsent_ = std::move(unsent);
  ASSIGN_OR_RETURN(v1::UploadReply reply, SendUnsent(plan));
  spdlog::info("round {}: update accepted ({} bytes)", plan.round(), reply.bytes());
  return absl::OkStatus();
}

Status SiteSession::UploadMasked(const v1::RoundPlan& plan, Model global,
                                 const TrainResult& result) {
  const auto started = std::chrono::steady_clock::now();
  std::optional<SecretBytes> seed;
  if (options_.rounding_seed) seed = options_.rounding_seed(plan);
  std::string path;
  // `global` is consumed by the update, and the update by its masked chunks.
  ASSIGN_OR_RETURN(std::vector<std::string> chunks,
                   secagg_.Mask(plan, *trainer_, std::move(global), result.num_examples,
                                seed ? &*seed : nullptr, &path));
  // No example count or loss in the clear: the weight travels inside the masked vector.
  v1::TransferHeader header = MaskedUploadHeader(plan.round(), chunks);
  Unsent unsent;
  unsent.plan_sha256 = PlanSha256(plan);
  unsent.header = std::move(header);
  unsent.chunks = std::move(chunks);
  unsent_ = std::move(unsent);
  ASSIGN_OR_RETURN(v1::UploadReply reply, SendUnsent(plan));
  spdlog::info(
      "round {}: masked update accepted ({} bytes; masked on the {} and sent in {:.3f} s after "
      "training)",
      plan.round(), reply.bytes(), path,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  return absl::OkStatus();
}

StatusOr<v1::UploadReply> SiteSession::Upload(const v1::RoundPlan& plan,
                                              const v1::TransferHeader& header,
                                              const std::vector<std::string_view>& pieces) {
  ASSIGN_OR_RETURN(std::string sha,
                   egress_.Sending(audit_events::kMessageUpload, plan.round(), header.total_bytes(),
                                   header.sha256(), EgressValues(header)));
  StatusOr<v1::UploadReply> reply = link_->Upload(plan, header, pieces);
  RETURN_IF_ERROR(egress_.Outcome(audit_events::kMessageUpload, plan.round(), sha, reply.status()));
  return reply;
}

StatusOr<v1::UploadReply> SiteSession::SendUnsent(const v1::RoundPlan& plan) {
  const std::vector<std::string_view> pieces =
      unsent_->chunks.empty()
          ? CutPayload(unsent_->safetensors_header, FloatBytes(unsent_->values), plan.chunk_bytes(),
                       link_->max_chunk_bytes(), &unsent_->spanning)
          : ViewsOf(unsent_->chunks);
  ASSIGN_OR_RETURN(v1::UploadReply reply, Upload(plan, unsent_->header, pieces));
  unsent_.reset();
  return reply;
}

Status SiteSession::Evaluate(const v1::Task& task) {
  const v1::RoundPlan& plan = task.plan();
  RETURN_IF_ERROR(RecordStudy(plan));
  Status policy = CheckPlan(options_.policy, plan, /*sends_update=*/false);
  if (!policy.ok()) return Answer(task, std::move(policy));
  v1::MetricsReport report;
  report.set_round(plan.round());
  if (options_.evaluate) {
    ASSIGN_OR_RETURN(const Model* global, FetchModel(plan));
    ASSIGN_OR_RETURN(EvalResult result, trainer_->Evaluate(plan, *global));
    report.set_num_examples(static_cast<uint64_t>(result.num_examples));
    report.set_loss(result.loss);
    report.set_accuracy(result.accuracy);
    report.set_seconds(result.seconds);
    report.set_classes(static_cast<uint32_t>(result.classes));
    for (int64_t c : result.confusion) report.add_confusion(static_cast<uint64_t>(c));
    // Binary: the scores' bins per true class; regression: the error sums. Counts and sums only,
    // nothing per example.
    for (int64_t c : result.positive_scores) report.add_positive_scores(static_cast<uint64_t>(c));
    for (int64_t c : result.negative_scores) report.add_negative_scores(static_cast<uint64_t>(c));
    if (result.regression.count > 0) {
      v1::RegressionReport* r = report.mutable_regression();
      r->set_count(static_cast<uint64_t>(result.regression.count));
      r->set_squared_error(result.regression.squared_error);
      r->set_absolute_error(result.regression.absolute_error);
      r->set_target(result.regression.target);
      r->set_target_squared(result.regression.target_squared);
    }
    spdlog::info("round {}: global model accuracy {:.4f} on {} local test examples", plan.round(),
                 result.accuracy, result.num_examples);
  } else {
    report.set_num_examples(1);  // evaluated centrally: a placeholder the engine accepts
  }
  // Its figures are on record in the clear beside the digest: the site's report shows them.
  ASSIGN_OR_RETURN(std::string sha,
                   egress_.Sending(audit_events::kMessageMetrics, plan.round(),
                                   report.SerializeAsString(), EgressValues(report)));
  Status sent = egress_.Outcome(audit_events::kMessageMetrics, plan.round(), sha,
                                link_->ReportMetrics(report));
  // AlreadyExists: our report arrived before (the reply was lost). FailedPrecondition: the
  // evaluation closed before it arrived. Neither is the site's to fix.
  if (absl::IsAlreadyExists(sent) || absl::IsFailedPrecondition(sent)) return absl::OkStatus();
  return sent;
}

Status SiteSession::RefuseASpentPlan(const v1::RoundPlan& plan, const char* what) const {
  if (!options_.spent.SpentBy(plan)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "round ", plan.round(), " attempt ", plan.attempt(),
      ": this site's update under this plan has already left; the coordinator asks it to ", what,
      " that update again, and a second sum with it but without another site would reveal "
      "that site's update; refused"));
}

Status SiteSession::SecAggStage(const v1::Task& task) {
  const v1::RoundPlan& plan = task.plan();
  RETURN_IF_ERROR(CheckPlan(options_.policy, plan, /*sends_update=*/true));
  if (task.kind() == v1::Task::SECAGG_ADVERTISE) {
    RETURN_IF_ERROR(RefuseASpentPlan(plan, "mask in a new secure session"));
    unsent_.reset();  // masks of an old session
  }
  ASSIGN_OR_RETURN(std::string payload, secagg_.Answer(task));
  v1::SecAggSubmission m;
  m.set_round(plan.round());
  m.set_stage(task.kind());
  m.set_payload(std::move(payload));
  return Send(audit_events::kMessageSecAgg, plan.round(), m.SerializeAsString(),
              [&] { return link_->SubmitSecAgg(m); });
}

}  // namespace hansa

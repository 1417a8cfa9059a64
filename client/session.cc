#include "client/session.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

#include "common/audit/events.h"
#include "common/audit/record_text.h"
#include "common/crypto/random.h"
#include "common/crypto/sha256.h"
#include "common/logging/logging.h"
#include "common/net/rpc.h"
#include "common/pki/certificate.h"
#include "common/privacy/central_gaussian.h"
#include "common/privacy/ddg_accountant.h"
#include "common/secagg/encoding.h"
#include "common/tensor/safetensors.h"
#include "cuda/device.h"
#include "cuda/masked_upload.h"
#include "proto/plan_digest.h"
#include "proto/secagg_plan.h"
#include "spdlog/spdlog.h"

namespace hansa {
namespace {

// Errors after which the site reconnects instead of giving up: the coordinator restarted,
// the network blinked, or a round moved on under us.
bool IsTransient(const Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) || absl::IsCancelled(s) ||
         absl::IsAborted(s) || absl::IsFailedPrecondition(s) || absl::IsUnknown(s) ||
         absl::IsInternal(s) || absl::IsResourceExhausted(s);
}

}  // namespace

StatusOr<std::unique_ptr<SiteSession>> SiteSession::Create(const SiteConfig& config) {
  std::unique_ptr<SiteSession> s(new SiteSession(config));
  ASSIGN_OR_RETURN(s->tls_,
                   LoadTlsFiles(config.certificate, config.private_key, config.ca_certificate));
  auto egress = AuditLog::OpenWithFiles(config.state_dir + "/egress.jsonl", config.private_key,
                                        config.certificate);
  if (!egress.ok()) {
    return Annotate(egress.status(), absl::StrCat("egress ledger in ", config.state_dir));
  }
  s->egress_ = *std::move(egress);
  if (config.max_epsilon > 0) {
    auto ledger = PrivacyLedger::Open(config.state_dir + "/privacy.json",
                                      PrivacyBudget{config.max_epsilon, config.delta});
    if (!ledger.ok()) {
      return Annotate(ledger.status(), absl::StrCat("privacy ledger in ", config.state_dir));
    }
    s->privacy_ = *std::move(ledger);
  }
  if (config.max_record_epsilon > 0) {
    auto ledger =
        PrivacyLedger::Open(config.state_dir + "/record_privacy.json",
                            PrivacyBudget{config.max_record_epsilon, config.record_delta});
    if (!ledger.ok()) {
      return Annotate(ledger.status(), absl::StrCat("record privacy ledger in ", config.state_dir));
    }
    s->record_privacy_ = *std::move(ledger);
  }
  auto spent = SpentContributions::FromEgressLedger(config.state_dir + "/egress.jsonl");
  if (!spent.ok()) return Annotate(spent.status(), "contributions in the egress ledger");
  s->spent_ = *std::move(spent);
  RETURN_IF_ERROR(LoadSiteData(config, &s->train_, &s->test_));
  spdlog::info("site {}: shard {}/{}: {} training and {} test examples", config.name,
               config.shard_index + 1, config.shard_count, s->train_.size(), s->test_.size());
  return s;
}

void SiteSession::Stop() { stop_ = true; }

StatusOr<std::string> SiteSession::RecordSend(const char* type, uint64_t round,
                                              const std::string& bytes) {
  return RecordSend(type, round, bytes.size(), ToHex(Sha256(bytes)));
}

StatusOr<std::string> SiteSession::RecordSend(const char* type, uint64_t round, uint64_t bytes,
                                              std::string sha256) {
  // Nothing leaves unrecorded: a ledger that cannot be written stops the send.
  RETURN_IF_ERROR(Annotate(
      egress_->Append(MessageSent(type, static_cast<int64_t>(round), bytes, sha256)).status(),
      "egress ledger"));
  return sha256;
}

Status SiteSession::RecordOutcome(const char* type, uint64_t round, const std::string& sha256,
                                  const Status& sent) {
  if (sent.ok()) return sent;
  auto recorded = egress_->Append(
      SendFailed(type, static_cast<int64_t>(round), sha256, std::string(sent.message())));
  if (!recorded.ok()) spdlog::error("egress ledger: {}", recorded.status().message());
  return sent;
}

Status SiteSession::Connect() {
  // The pin is checked inside every TLS handshake of the channel, reconnections included.
  if (!config_.coordinator_fingerprint.empty()) {
    pin_ = std::make_shared<CertificatePin>(config_.coordinator_fingerprint);
  }
  ASSIGN_OR_RETURN(auto creds, MakeClientCredentials(tls_, pin_));
  grpc::ChannelArguments args = SiteChannelArguments(max_chunk_bytes_);
  // The certificate names the coordinator "localhost" and 127.0.0.1; a deployment passes the
  // host it provisioned with.
  channel_ = grpc::CreateCustomChannel(config_.coordinator, creds, args);
  stub_ = v1::Coordinator::NewStub(channel_);
  return absl::OkStatus();
}

Status SiteSession::PinRefusal() const {
  return absl::PermissionDeniedError(
      absl::StrCat("coordinator certificate fingerprint ", pin_->last_refused(),
                   " is not the one this site's policy trusts (", pin_->fingerprint(),
                   ", [policy] coordinator_fingerprint in site.toml): the TLS handshake with ",
                   config_.coordinator, " was refused, so nothing was sent over that connection"));
}

Status SiteSession::AwaitConnection(double seconds) {
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  for (;;) {
    grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) return absl::OkStatus();
    if (pin_ && !pin_->last_refused().empty()) return PinRefusal();
    if (stop_) return absl::CancelledError("site stopping");
    auto now = std::chrono::system_clock::now();
    if (now >= deadline) {
      return absl::UnavailableError(absl::StrCat(
          "no TLS connection within ", seconds,
          " s (coordinator down, wrong address, or a handshake that failed: a certificate from "
          "another CA or an expired one)"));
    }
    channel_->WaitForStateChange(state, std::min(deadline, now + std::chrono::milliseconds(200)));
  }
}

Status SiteSession::JoinWithRetry() {
  auto give_up = std::chrono::steady_clock::now() +
                 std::chrono::milliseconds(static_cast<int64_t>(config_.reconnect_seconds * 1000));
  double backoff = 0.5;
  for (;;) {
    if (stop_) return absl::CancelledError("site stopping");
    // The join is recorded and sent only over a connection whose handshake passed the CA and
    // the pin: a refused handshake leaves nothing to record.
    Status st = AwaitConnection(config_.rpc_timeout_seconds);
    if (absl::IsPermissionDenied(st) || absl::IsCancelled(st)) return st;
    if (st.ok()) {
      auto ctx = ContextWithDeadline(config_.rpc_timeout_seconds);
      ctx->set_wait_for_ready(true);
      v1::JoinRequest req;
      req.set_client_version("hansa-client 0.1");
      v1::JoinReply reply;
      ASSIGN_OR_RETURN(std::string sha,
                       RecordSend(audit_events::kMessageJoin, 0, req.SerializeAsString()));
      st = RecordOutcome(audit_events::kMessageJoin, 0, sha,
                         FromGrpc(stub_->Join(ctx.get(), req, &reply), "joining"));
      if (st.ok()) {
        if (reply.max_chunk_bytes() > 0) max_chunk_bytes_ = reply.max_chunk_bytes();
        // A restarted coordinator may plan the same round again, down to the same digest,
        // with no memory of our answer: answer again (AlreadyExists if it had kept it).
        answered_plan_.clear();
        spdlog::info("joined federation '{}' as '{}'", reply.federation(), reply.site());
        return absl::OkStatus();
      }
      // The connection dropped after it was checked and the next handshake met another
      // certificate: the join did not leave (its send_failed record says so).
      if (pin_ && !pin_->last_refused().empty()) return PinRefusal();
      if (absl::IsPermissionDenied(st) || absl::IsUnauthenticated(st) ||
          absl::IsInvalidArgument(st)) {
        return st;
      }
    }
    if (std::chrono::steady_clock::now() > give_up) {
      return absl::UnavailableError(absl::StrCat("coordinator at ", config_.coordinator,
                                                 " unreachable for ", config_.reconnect_seconds,
                                                 " s (last error: ", st.message(), ")"));
    }
    spdlog::warn("coordinator not reachable ({}); retrying in {:.1f} s", st.message(), backoff);
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(backoff * 1000)));
    backoff = std::min(backoff * 2, 5.0);
  }
}

Status SiteSession::Run() {
  RETURN_IF_ERROR(Connect());
  RETURN_IF_ERROR(JoinWithRetry());
  for (;;) {
    if (stop_) return absl::CancelledError("site stopping");
    auto ctx = ContextWithDeadline(config_.rpc_timeout_seconds + 25);
    v1::TaskRequest req;
    req.set_wait_ms(20000);
    v1::Task task;
    Status st = FromGrpc(stub_->GetTask(ctx.get(), req, &task), "asking for a task");
    if (st.ok()) {
      switch (task.kind()) {
        case v1::Task::WAIT:
          continue;
        case v1::Task::DONE:
          spdlog::info("coordinator: {}", task.message());
          return absl::OkStatus();
        case v1::Task::TRAIN:
          st = Consent(task);
          if (st.ok()) st = Train(task.plan(), task.payload());
          break;
        case v1::Task::EVALUATE:
          st = Evaluate(task.plan());
          break;
        case v1::Task::SECAGG_ADVERTISE:
        case v1::Task::SECAGG_SHARE:
        case v1::Task::SECAGG_CONSISTENCY:
        case v1::Task::SECAGG_UNMASK:
          st = Consent(task);
          if (st.ok()) st = SecAggStage(task);
          break;
        default:
          st = absl::InvalidArgumentError(absl::StrCat("unknown task kind ", task.kind()));
      }
      if (st.ok()) continue;
    }
    if (absl::IsPermissionDenied(st) || absl::IsUnauthenticated(st)) return st;
    if (!IsTransient(st)) {
      // The task failed at this site (bad model, refused plan): say why and carry on; the
      // coordinator leaves the site out of this round.
      spdlog::error("{}", st.message());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    spdlog::warn("{}; reconnecting", st.message());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    RETURN_IF_ERROR(JoinWithRetry());
  }
}

Status SiteSession::CheckPlan(const v1::RoundPlan& plan, bool sends_update) {
  if (sends_update && config_.require_secure_aggregation && plan.aggregation() != "secure") {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), " uses ", plan.aggregation(),
                     " aggregation but this site's policy requires secure aggregation "
                     "(policy.require_secure_aggregation); refused"));
  }
  if (sends_update && plan.aggregation() == "secure" &&
      static_cast<int>(plan.secagg().min_survivors()) < config_.min_cohort) {
    return absl::InvalidArgumentError(absl::StrCat(
        "round ", plan.round(), " would unmask a sum of as few as ", plan.secagg().min_survivors(),
        " sites but this site's policy requires at least ", config_.min_cohort,
        " (policy.min_cohort); refused"));
  }
  if (sends_update && plan.aggregation() == "secure") {
    // The site's own floor under k and t, which the coordinator alone chooses otherwise.
    SecAggParams planned;
    planned.round = plan.round();
    planned.degree = static_cast<int>(plan.secagg().degree());
    planned.threshold = static_cast<int>(plan.secagg().threshold());
    RETURN_IF_ERROR(
        CheckSecAggPolicy(planned, config_.min_secagg_degree, config_.min_secagg_threshold));
  }
  if (sends_update && plan.cohort_size() < config_.min_cohort) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), " has ", plan.cohort_size(),
                     " sites but this site's policy "
                     "requires at least ",
                     config_.min_cohort, " (policy.min_cohort); refused"));
  }
  const auto& allowed = config_.allowed_models;
  if (std::find(allowed.begin(), allowed.end(), plan.model_name()) == allowed.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "round ", plan.round(), " asks for model '", plan.model_name(),
        "', which this site's policy does not allow (policy.allowed_models); refused"));
  }
  return absl::OkStatus();
}

Status SiteSession::Consent(const v1::Task& task) {
  const v1::RoundPlan& plan = task.plan();
  const std::string digest = PlanSha256(plan);
  if (digest == answered_plan_) return answer_;
  Status policy = CheckPlan(plan, /*sends_update=*/true);
  // The cost is booked when the update leaves (Train), not here: an attempt the site answers
  // but sends nothing in spends nothing. A plan booked before is answered again after a rejoin.
  if (policy.ok() && booked_plans_.count(digest) == 0) policy = CheckPrivacy(plan).status();
  if (policy.ok()) policy = spent_.Check(plan);
  const auto round = static_cast<int64_t>(plan.round());
  // The coordinator's audit head it showed with the plan: reconcile checks its log still has it.
  std::optional<AuditAnchor> shown;
  if (task.has_audit_head()) {
    shown = AuditAnchor{
        static_cast<int64_t>(std::min<uint64_t>(task.audit_head().records(), INT64_MAX)),
        task.audit_head().sha256(), task.audit_head().signature()};
  }
  RETURN_IF_ERROR(Annotate(
      egress_
          ->Append(policy.ok()
                       ? PlanAccepted(round, digest, shown)
                       : PlanRefused(round, digest, RecordText(std::string(policy.message()), 2048),
                                     shown))
          .status(),
      "egress ledger"));
  v1::PlanResponse response;
  response.set_round(plan.round());
  response.set_plan_sha256(digest);
  response.set_accepted(policy.ok());
  response.set_reason(std::string(policy.message()));
  ASSIGN_OR_RETURN(std::string sha, RecordSend(audit_events::kMessagePlanResponse, plan.round(),
                                               response.SerializeAsString()));
  auto ctx = ContextWithDeadline(config_.rpc_timeout_seconds);
  v1::PlanAck ack;
  Status sent = FromGrpc(stub_->RespondToPlan(ctx.get(), response, &ack),
                         absl::StrCat("answering the plan of round ", plan.round()));
  // AlreadyExists: an earlier answer of ours arrived (the reply was lost); it stands.
  if (!sent.ok() && !absl::IsAlreadyExists(sent)) {
    return RecordOutcome(audit_events::kMessagePlanResponse, plan.round(), sha, sent);
  }
  answered_plan_ = digest;
  answer_ = policy;
  if (!policy.ok()) spdlog::warn("round {}: plan refused: {}", plan.round(), policy.message());
  return policy;
}

namespace {

// One guarantee of the site's policy: `has` whether the plan gives it, `wants` whether the site
// requires it, `ledger` the site's budget for it (may be empty), `round_rdp` the plan's cost.
StatusOr<std::vector<double>> CheckGuarantee(
    const v1::RoundPlan& plan, const char* name, const char* keys, bool has, bool wants,
    const std::optional<PrivacyLedger>& ledger,
    const std::function<StatusOr<std::vector<double>>()>& round_rdp) {
  if (!has) {
    if (!wants) return std::vector<double>();
    return absl::InvalidArgumentError(absl::StrCat("round ", plan.round(), " has no ", name,
                                                   " differential privacy but this site's policy "
                                                   "requires it (",
                                                   keys, "); refused"));
  }
  StatusOr<std::vector<double>> rdp = round_rdp();
  RETURN_IF_ERROR(Annotate(rdp.status(), absl::StrCat(name, " privacy of round ", plan.round())));
  if (!ledger) return std::vector<double>();
  if (Status fits = ledger->CheckFits(*rdp); !fits.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), " would exceed this site's ", name,
                     " privacy budget: ", fits.message(), " (", keys, "); refused"));
  }
  return rdp;
}

// Books one round in `ledger` under an id of its own: a retried round may have released a
// sum each time, so each accepted plan is an entry.
Status BookRound(PrivacyLedger& ledger, const v1::RoundPlan& plan, const std::string& mechanism,
                 const std::vector<double>& rdp) {
  Status st;
  const int64_t first = static_cast<int64_t>(plan.round()) * 1000;
  for (int64_t id = first; id < first + 1000; ++id) {
    st = ledger.Record(id, mechanism, rdp);
    if (!absl::IsInvalidArgument(st)) break;  // InvalidArgument: that id is taken
  }
  return st;
}

}  // namespace

StatusOr<SiteSession::PrivacyCost> SiteSession::CheckPrivacy(const v1::RoundPlan& plan) const {
  PrivacyCost cost;
  ASSIGN_OR_RETURN(
      cost.client,
      CheckGuarantee(plan, "client-level",
                     "policy.require_client_dp / "
                     "policy.max_epsilon",
                     HasClientPrivacy(plan), config_.require_client_dp || config_.max_epsilon > 0,
                     privacy_, [&]() -> StatusOr<std::vector<double>> {
                       ASSIGN_OR_RETURN(ModelLayout layout, BuiltinModelLayout(plan.model_name()));
                       return RoundRdpOfPlan(plan.privacy(), layout.TotalElements());
                     }));
  ASSIGN_OR_RETURN(
      cost.record,
      CheckGuarantee(plan, "record-level",
                     "policy.require_record_dp / "
                     "policy.max_record_epsilon",
                     HasRecordPrivacy(plan),
                     config_.require_record_dp || config_.max_record_epsilon > 0, record_privacy_,
                     [&] { return RecordRoundRdp(plan.record_privacy()); }));
  return cost;
}

Status SiteSession::SpendPrivacy(const v1::RoundPlan& plan, const PrivacyCost& cost) {
  if (cost.client.empty() && cost.record.empty()) return absl::OkStatus();
  if (!booked_plans_.insert(PlanSha256(plan)).second) return absl::OkStatus();
  const auto round = static_cast<int64_t>(plan.round());
  struct Guarantee {
    std::optional<PrivacyLedger>* ledger;
    const std::vector<double>* rdp;
    std::string mechanism;
    const char* name;
    double max_epsilon;
  };
  for (const Guarantee& g : {Guarantee{&privacy_, &cost.client, plan.privacy().mechanism(),
                                       "client-level", config_.max_epsilon},
                             Guarantee{&record_privacy_, &cost.record, "dp_sgd", "record-level",
                                       config_.max_record_epsilon}}) {
    if (g.rdp->empty() || !g.ledger->has_value()) continue;
    PrivacyLedger& ledger = **g.ledger;
    RETURN_IF_ERROR(Annotate(BookRound(ledger, plan, g.mechanism, *g.rdp),
                             absl::StrCat(g.name, " privacy ledger")));
    const auto spent = ledger.Spent();
    spdlog::info("round {}: this site's {} privacy spent so far: epsilon {:.4g} of {:g}", round,
                 g.name, spent.epsilon, g.max_epsilon);
    AuditEvent event = PrivacySpentEvent(round, spent.epsilon, spent.delta);
    event.fields["guarantee"] = g.name;
    RETURN_IF_ERROR(Annotate(egress_->Append(event).status(), "egress ledger"));
  }
  return absl::OkStatus();
}

Status SiteSession::EnsureTrainer(const std::string& model) {
  if (trainer_ && trainer_model_ == model) return absl::OkStatus();
  TrainerOptions options = config_.trainer;
  options.model = model;
  ASSIGN_OR_RETURN(trainer_, Trainer::Create(options));
  trainer_model_ = model;
  spdlog::info("training '{}' on {}", model, trainer_->device());
  return absl::OkStatus();
}

StatusOr<Model> SiteSession::FetchModel(const v1::RoundPlan& plan) {
  if (cached_model_ && cached_sha256_ == plan.global_model_sha256()) return *cached_model_;
  auto ctx = ContextWithDeadline(std::max(60.0, config_.rpc_timeout_seconds * 10));
  v1::DownloadRequest req;
  req.set_round(plan.round());
  req.set_model_sha256(plan.global_model_sha256());
  ASSIGN_OR_RETURN(std::string sha, RecordSend(audit_events::kMessageDownloadRequest, plan.round(),
                                               req.SerializeAsString()));
  auto reader = stub_->DownloadModel(ctx.get(), req);
  v1::Chunk chunk;
  if (!reader->Read(&chunk) || !chunk.has_header()) {
    return RecordOutcome(audit_events::kMessageDownloadRequest, plan.round(), sha,
                         FromGrpc(reader->Finish(), "downloading the global model"));
  }
  const uint64_t total = chunk.header().total_bytes();
  if (total != plan.global_model_bytes() || chunk.header().sha256() != plan.global_model_sha256()) {
    return absl::DataLossError("global model header disagrees with the round plan");
  }
  RETURN_IF_ERROR(CheckDeclaredBytes(total, config_.max_model_bytes,
                                     absl::StrCat("the global model of round ", plan.round(),
                                                  " (policy.max_model_bytes in site.toml)")));
  std::string payload;
  payload.reserve(total);
  Sha256Hasher hasher;
  while (reader->Read(&chunk)) {
    if (chunk.data().size() > max_chunk_bytes_ || chunk.offset() != payload.size() ||
        payload.size() + chunk.data().size() > total) {
      ctx->TryCancel();
      return absl::DataLossError(absl::StrCat("global model chunk at offset ", chunk.offset(),
                                              " is out of order or oversized"));
    }
    hasher.Update(chunk.data());
    payload += chunk.data();
  }
  RETURN_IF_ERROR(FromGrpc(reader->Finish(), "downloading the global model"));
  if (payload.size() != total) {
    return absl::DataLossError(absl::StrCat("global model download ended after ", payload.size(),
                                            " of ", total, " bytes"));
  }
  std::string digest = ToHex(hasher.Finish());
  if (digest != plan.global_model_sha256()) {
    return absl::DataLossError(absl::StrCat("global model has SHA-256 ", digest,
                                            " but the plan announced ",
                                            plan.global_model_sha256()));
  }
  ASSIGN_OR_RETURN(Model model, DecodeSafetensors(payload));
  RETURN_IF_ERROR(Annotate(model.Validate(), "global model"));
  cached_sha256_ = digest;
  cached_model_ = model;
  return model;
}

Status SiteSession::Train(const v1::RoundPlan& plan, const std::string& share_delivery) {
  RETURN_IF_ERROR(CheckPlan(plan, /*sends_update=*/true));
  if (plan.aggregation() == "secure") {
    if (!secagg_ || secagg_round_ != plan.round()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "round ", plan.round(), ": this site holds no key material for it (restarted?)"));
    }
    ASSIGN_OR_RETURN(ShareDelivery delivery, ShareDelivery::Parse(share_delivery));
    RETURN_IF_ERROR(secagg_->OnShareDelivery(delivery));
  }
  RETURN_IF_ERROR(EnsureTrainer(plan.model_name()));
  ASSIGN_OR_RETURN(Model global, FetchModel(plan));
  RETURN_IF_ERROR(trainer_->SetWeights(global));
  TrainSettings s;
  s.epochs = static_cast<int>(plan.training().epochs());
  s.batch_size = static_cast<int>(plan.training().batch_size());
  s.learning_rate = plan.training().learning_rate();
  s.momentum = plan.training().momentum();
  s.weight_decay = plan.training().weight_decay();
  s.seed = plan.training().seed();
  if (HasRecordPrivacy(plan)) {
    // The site's own randomness (CSPRNG) samples and noises; only the parameters are the plan's.
    const v1::RecordPrivacyPlan& r = plan.record_privacy();
    s.dp.clip_norm = r.clip_norm();
    s.dp.noise_multiplier = r.noise_multiplier();
    s.dp.sampling_rate = r.sampling_rate();
    s.dp.steps = r.steps();
  }
  ASSIGN_OR_RETURN(TrainResult result, trainer_->Train(train_, s));
  // Booked before anything of the update leaves: a crash after sending must not forget it.
  // A plan booked before (its upload failed and is sent again) is not checked or booked twice.
  if (booked_plans_.count(PlanSha256(plan)) == 0) {
    ASSIGN_OR_RETURN(PrivacyCost cost, CheckPrivacy(plan));
    RETURN_IF_ERROR(SpendPrivacy(plan, cost));
  }
  RETURN_IF_ERROR(spent_.Spend(plan, *egress_));
  if (plan.aggregation() == "secure") {
    spdlog::info("round {}: trained {} examples in {:.1f} s (loss {:.4f}); uploading masked",
                 plan.round(), result.num_examples, result.seconds, result.loss);
    return UploadMasked(plan, global, result.num_examples);
  }
  ASSIGN_OR_RETURN(Model delta, HostUpdate(global));
  if (plan.privacy().mechanism() == kCentralGaussian) {
    // The coordinator refuses updates longer than the plan's clip norm.
    const double norm = ClipUpdateForCentralGaussian(delta.values, plan.privacy().clip_norm());
    spdlog::info("round {}: update norm {:.4g} clipped to {:g}", plan.round(), norm,
                 plan.privacy().clip_norm());
  }
  std::string payload =
      EncodeSafetensors(delta, {{"round", std::to_string(plan.round())}, {"site", config_.name}});
  spdlog::info("round {}: trained {} examples in {:.1f} s (loss {:.4f}); uploading {} bytes",
               plan.round(), result.num_examples, result.seconds, result.loss, payload.size());
  return Upload(plan, payload, result.num_examples, result.loss, result.seconds);
}

Status SiteSession::Upload(const v1::RoundPlan& plan, const std::string& payload, int64_t examples,
                           double loss, double seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::time_point(
      std::chrono::milliseconds(plan.upload_deadline_unix_ms())));
  v1::UploadReply reply;
  auto writer = stub_->UploadUpdate(ctx.get(), &reply);
  v1::Chunk chunk;
  auto* header = chunk.mutable_header();
  header->set_round(plan.round());
  header->set_total_bytes(payload.size());
  header->set_sha256(ToHex(Sha256(payload)));
  header->set_num_examples(static_cast<uint64_t>(examples));
  header->set_train_loss(loss);
  header->set_train_seconds(seconds);
  ASSIGN_OR_RETURN(std::string sha, RecordSend(audit_events::kMessageUpload, plan.round(),
                                               header->total_bytes(), header->sha256()));
  bool ok = writer->Write(chunk);
  const size_t step =
      std::min<size_t>(plan.chunk_bytes() ? plan.chunk_bytes() : (1 << 20), max_chunk_bytes_);
  for (size_t off = 0; ok && off < payload.size(); off += step) {
    chunk.Clear();
    chunk.set_offset(off);
    chunk.set_data(payload.data() + off, std::min(step, payload.size() - off));
    ok = writer->Write(chunk);
  }
  if (ok) writer->WritesDone();
  RETURN_IF_ERROR(
      RecordOutcome(audit_events::kMessageUpload, plan.round(), sha,
                    FromGrpc(writer->Finish(), absl::StrCat("uploading round ", plan.round()))));
  spdlog::info("round {}: update accepted ({} bytes)", plan.round(), reply.bytes());
  return absl::OkStatus();
}

Status SiteSession::Evaluate(const v1::RoundPlan& plan) {
  RETURN_IF_ERROR(CheckPlan(plan, /*sends_update=*/false));
  RETURN_IF_ERROR(EnsureTrainer(plan.model_name()));
  ASSIGN_OR_RETURN(Model global, FetchModel(plan));
  RETURN_IF_ERROR(trainer_->SetWeights(global));
  ASSIGN_OR_RETURN(EvalResult result, trainer_->Evaluate(test_));
  v1::MetricsReport report;
  report.set_round(plan.round());
  report.set_num_examples(static_cast<uint64_t>(result.num_examples));
  report.set_loss(result.loss);
  report.set_accuracy(result.accuracy);
  report.set_seconds(result.seconds);
  auto ctx = ContextWithDeadline(config_.rpc_timeout_seconds);
  v1::MetricsReply reply;
  ASSIGN_OR_RETURN(std::string sha, RecordSend(audit_events::kMessageMetrics, plan.round(),
                                               report.SerializeAsString()));
  RETURN_IF_ERROR(RecordOutcome(
      audit_events::kMessageMetrics, plan.round(), sha,
      FromGrpc(stub_->ReportMetrics(ctx.get(), report, &reply), "reporting metrics")));
  spdlog::info("round {}: global model accuracy {:.4f} on {} local test examples", plan.round(),
               result.accuracy, result.num_examples);
  return absl::OkStatus();
}

}  // namespace hansa

namespace hansa {

StatusOr<SecAggParams> SiteSession::SecAggParamsFor(const v1::RoundPlan& plan,
                                                    uint32_t* self) const {
  const v1::SecAggPlan& sp = plan.secagg();
  ASSIGN_OR_RETURN(SecAggParams p, SecAggParamsOfPlan(plan, config_.name, self));
  if (p.malicious) {
    // Check every peer's certificate against the federation CA ourselves: the coordinator
    // must not be able to substitute a key it holds.
    if (sp.certificates_size() != plan.cohort_size()) {
      return absl::PermissionDeniedError("malicious-mode plan lacks the cohort's certificates");
    }
    ASSIGN_OR_RETURN(Certificate ca, Certificate::FromPem(tls_.ca_certificate_pem));
    for (int i = 0; i < sp.certificates_size(); ++i) {
      ASSIGN_OR_RETURN(Certificate cert, Certificate::FromPem(sp.certificates(i)));
      RETURN_IF_ERROR(VerifyCertificate(cert, ca, absl::Now(), CertificateUsage::kTlsClient));
      if (cert.Subject().common_name != plan.cohort(i)) {
        return absl::PermissionDeniedError(absl::StrCat("certificate ", i, " of the plan is '",
                                                        cert.Subject().common_name, "', not '",
                                                        plan.cohort(i), "'"));
      }
      ASSIGN_OR_RETURN(Ed25519PublicKey key,
                       Ed25519PublicKeyFromCertificatePem(sp.certificates(i)));
      p.signing_keys.push_back(key);
    }
  }
  return ResolveParams(p);
}

Status SiteSession::Submit(const v1::RoundPlan& plan, v1::Task::Kind stage,
                           const std::string& payload) {
  v1::SecAggSubmission m;
  m.set_round(plan.round());
  m.set_stage(stage);
  m.set_payload(payload);
  v1::SecAggAck ack;
  auto ctx = ContextWithDeadline(config_.rpc_timeout_seconds);
  ASSIGN_OR_RETURN(std::string sha,
                   RecordSend(audit_events::kMessageSecAgg, plan.round(), m.SerializeAsString()));
  return RecordOutcome(audit_events::kMessageSecAgg, plan.round(), sha,
                       FromGrpc(stub_->SubmitSecAgg(ctx.get(), m, &ack),
                                absl::StrCat("sending ", v1::Task::Kind_Name(stage))));
}

Status SiteSession::SecAggStage(const v1::Task& task) {
  const v1::RoundPlan& plan = task.plan();
  RETURN_IF_ERROR(CheckPlan(plan, /*sends_update=*/true));
  if (task.kind() == v1::Task::SECAGG_ADVERTISE) {
    uint32_t self = 0;
    ASSIGN_OR_RETURN(SecAggParams params, SecAggParamsFor(plan, &self));
    // The session keeps a pointer to the signing key: it lives as long as the site does.
    if (params.malicious && !signing_key_) {
      ASSIGN_OR_RETURN(Ed25519PrivateKey key, Ed25519PrivateKey::FromPem(tls_.private_key_pem));
      signing_key_ = std::move(key);
    }
    ASSIGN_OR_RETURN(
        secagg_, ClientSession::Create(params, self, params.malicious ? &*signing_key_ : nullptr));
    secagg_->set_mask_threads(MaskThreads());
    secagg_round_ = plan.round();
    ASSIGN_OR_RETURN(AdvertiseKeys keys, secagg_->Start());
    return Submit(plan, task.kind(), keys.Serialize());
  }
  if (!secagg_ || secagg_round_ != plan.round()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "round ", plan.round(), ": this site holds no key material for it (restarted?)"));
  }
  switch (task.kind()) {
    case v1::Task::SECAGG_SHARE: {
      ASSIGN_OR_RETURN(KeyDirectory dir, KeyDirectory::Parse(task.payload()));
      ASSIGN_OR_RETURN(ShareKeys shares, secagg_->OnKeyDirectory(dir));
      return Submit(plan, task.kind(), shares.Serialize());
    }
    case v1::Task::SECAGG_CONSISTENCY: {
      ASSIGN_OR_RETURN(SurvivorList list, SurvivorList::Parse(task.payload()));
      ASSIGN_OR_RETURN(ConsistencySignature sig, secagg_->OnSurvivorList(list));
      return Submit(plan, task.kind(), sig.Serialize());
    }
    case v1::Task::SECAGG_UNMASK: {
      ASSIGN_OR_RETURN(UnmaskRequest request, UnmaskRequest::Parse(task.payload()));
      ASSIGN_OR_RETURN(UnmaskResponse response, secagg_->OnUnmaskRequest(request));
      Status st = Submit(plan, task.kind(), response.Serialize());
      secagg_.reset();  // the round's secrets are gone once the site has answered
      return st;
    }
    default:
      return absl::InvalidArgumentError("not a secure-aggregation stage");
  }
}

StatusOr<Model> SiteSession::HostUpdate(const Model& global) {
  ASSIGN_OR_RETURN(Model local, trainer_->GetWeights());
  // The update is the change to the global model; that is what strategies and clipping use.
  Model delta = std::move(local);
  for (size_t i = 0; i < delta.values.size(); ++i) delta.values[i] -= global.values[i];
  RETURN_IF_ERROR(Annotate(delta.Validate(), "local update"));
  return delta;
}

StatusOr<std::vector<std::string>> SiteSession::MaskedChunks(const v1::RoundPlan& plan,
                                                             const Model& global, int64_t examples,
                                                             std::string* path) {
  if (!HasClientPrivacy(plan) && CudaDeviceAvailable()) {
    StatusOr<DeviceVector> update = trainer_->UpdateOnDevice();
    if (update.ok()) {
      ASSIGN_OR_RETURN(PlanEncoding e, PlanEncodingFor(plan, update->size, examples));
      RETURN_IF_ERROR(UseCudaDevice(update->device));
      SecretBytes rounding_seed(32);
      RETURN_IF_ERROR(RandBytes(rounding_seed.data(), rounding_seed.size()));
      DeviceMaskStats stats;
      StatusOr<std::vector<std::string>> chunks =
          MaskUpdateOnDevice(*secagg_, e.params, rounding_seed, update->data, update->size,
                             e.weight, e.values_per_chunk, &stats);
      if (chunks.ok()) {
        *path = absl::StrCat("GPU (cuda:", update->device, ")");
        spdlog::info(
            "round {}: update (L2 norm {:.4g}) masked on cuda:{} in {:.3f} s "
            "(quantize {:.3f} s, device wait {:.3f} s, chunks {:.3f} s)",
            plan.round(), stats.update_norm, update->device, stats.total, stats.quantize,
            stats.wait, stats.serialize);
        return chunks;
      }
      if (!absl::IsUnavailable(chunks.status())) {
        return Annotate(chunks.status(), "masking the update on the GPU");
      }
    } else if (!absl::IsUnavailable(update.status())) {
      return update.status();
    }
  }
  *path = "CPU";
  ASSIGN_OR_RETURN(Model delta, HostUpdate(global));
  return MaskUpdateForPlan(plan, *secagg_, delta.values, examples);
}

Status SiteSession::UploadMasked(const v1::RoundPlan& plan, const Model& global, int64_t examples) {
  const auto started = std::chrono::steady_clock::now();
  std::string path;
  ASSIGN_OR_RETURN(std::vector<std::string> chunks, MaskedChunks(plan, global, examples, &path));
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::time_point(
      std::chrono::milliseconds(plan.upload_deadline_unix_ms())));
  v1::UploadReply reply;
  auto writer = stub_->UploadUpdate(ctx.get(), &reply);
  v1::Chunk chunk;
  auto* header = chunk.mutable_header();
  *header = MaskedUploadHeader(plan.round(), chunks);
  ASSIGN_OR_RETURN(std::string sha, RecordSend(audit_events::kMessageUpload, plan.round(),
                                               header->total_bytes(), header->sha256()));
  bool ok = writer->Write(chunk);
  uint64_t offset = 0;
  for (size_t i = 0; ok && i < chunks.size(); ++i) {
    chunk.Clear();
    chunk.set_offset(offset);
    chunk.set_data(std::move(chunks[i]));
    offset += chunk.data().size();
    ok = writer->Write(chunk);
  }
  if (ok) writer->WritesDone();
  const double sent =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  RETURN_IF_ERROR(
      RecordOutcome(audit_events::kMessageUpload, plan.round(), sha,
                    FromGrpc(writer->Finish(), absl::StrCat("uploading round ", plan.round()))));
  spdlog::info(
      "round {}: masked update accepted ({} bytes; masked on the {} and sent in {:.3f} s "
      "after training)",
      plan.round(), reply.bytes(), path, sent);
  return absl::OkStatus();
}

}  // namespace hansa

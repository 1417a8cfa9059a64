#include "coordinator/round_engine.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/audit/record_text.h"
#include "common/crypto/random.h"
#include "common/fileio/fileio.h"
#include "common/logging/logging.h"
#include "common/privacy/central_gaussian.h"
#include "common/privacy/ddg_accountant.h"
#include "common/status/check.h"
#include "cuda/device.h"
#include "cuda/masked_upload.h"
#include "nlohmann/json.hpp"
#include "proto/plan_digest.h"
#include "proto/secagg_plan.h"
#include "spdlog/spdlog.h"

namespace hansa {
// ---------------------------------------------------------------------------------------------
// UploadSink

UploadSink::UploadSink(RoundEngine* engine, std::string site, int64_t round, int64_t attempt,
                       v1::TransferHeader header)
    : engine_(engine),
      site_(std::move(site)),
      round_(round),
      attempt_(attempt),
      header_(std::move(header)) {}

UploadSink::~UploadSink() {
  engine_->Unregister(this);
  absl::MutexLock lock(&mu_);
  if (folder_) folder_->Abort();
}

void UploadSink::Cancel(const std::string& why) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  if (folder_) folder_->Abort();
  folder_.reset();
  cancelled_ = absl::DeadlineExceededError(why);
}

Status UploadSink::Write(uint64_t offset, std::string_view data) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(cancelled_);
  if (finished_) return absl::FailedPreconditionError("upload already finished");
  if (data.size() > engine_->max_chunk_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk of ", data.size(), " bytes exceeds the cap of ", engine_->max_chunk_bytes()));
  }
  if (offset != received_) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk at offset ", offset, " but ", received_, " bytes arrived so far"));
  }
  if (received_ + data.size() > header_.total_bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("upload is longer than the announced ", header_.total_bytes(), " bytes"));
  }
  hasher_.Update(data);
  received_ += data.size();
  return Annotate(folder_->Fold(data), absl::StrCat("update from ", site_));
}

StatusOr<v1::UploadReply> UploadSink::Finish() {
  uint64_t bytes;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(cancelled_);
    if (received_ != header_.total_bytes()) {
      return absl::DataLossError(absl::StrCat("upload from ", site_, " ended after ", received_,
                                              " of ", header_.total_bytes(),
                                              " bytes (truncated stream)"));
    }
    RETURN_IF_ERROR(Annotate(folder_->Complete(), absl::StrCat("update from ", site_)));
    std::string digest = ToHex(hasher_.Finish());
    if (digest != header_.sha256()) {
      return absl::DataLossError(absl::StrCat("update from ", site_, " has SHA-256 ", digest,
                                              " but its header announced ", header_.sha256(),
                                              "; the payload was corrupted in transit"));
    }
    bytes = received_;
  }
  RETURN_IF_ERROR(engine_->CommitUpload(this, bytes));
  v1::UploadReply reply;
  reply.set_bytes(bytes);
  reply.set_sha256(header_.sha256());
  return reply;
}

// ---------------------------------------------------------------------------------------------
// Folders

namespace {

// A plaintext update: a safetensors delta, checked against the global model's tensors and
// folded into the weighted sum as it streams.
class PlaintextFolder : public UpdateFolder {
 public:
  // `clip_norm` > 0: the update's L2 norm must not exceed it (client-level privacy).
  PlaintextFolder(std::unique_ptr<StreamingAggregator::Contribution> contribution,
                  const ModelLayout& expected, double clip_norm = 0)
      : contribution_(std::move(contribution)), clip_norm_(clip_norm) {
    StreamingAggregator::Contribution* c = contribution_.get();
    double* squares = &squares_;
    decoder_ = std::make_unique<SafetensorsStreamDecoder>(
        [expected](const ModelLayout& layout, const TensorMetadata&) {
          return Annotate(layout.CheckSameAs(expected),
                          "update does not match the global model's tensors");
        },
        [c, squares](int64_t first, const uint8_t* bytes, size_t count) {
          const float* values = reinterpret_cast<const float*>(bytes);
          for (size_t i = 0; i < count; ++i) *squares += double{values[i]} * values[i];
          return c->Fold(first, values, count);
        },
        SafetensorsLimits{.max_header_bytes = 1 << 20,
                          .max_tensors = expected.size(),
                          .max_data_bytes = static_cast<uint64_t>(expected.TotalElements()) * 4});
  }
  Status Fold(std::string_view bytes) override { return decoder_->Feed(bytes); }
  Status Complete() override {
    RETURN_IF_ERROR(decoder_->Finish());
    const double norm = std::sqrt(squares_);
    if (clip_norm_ > 0 && norm > clip_norm_ * (1 + 1e-5)) {
      return absl::InvalidArgumentError(
          absl::StrCat("update has L2 norm ", norm, " but the plan clips updates to ", clip_norm_,
                       " (client-level privacy); clip before uploading"));
    }
    return absl::OkStatus();
  }
  Status Commit() override { return contribution_->Commit(); }
  void Abort() override { contribution_->Abort(); }

 private:
  std::unique_ptr<StreamingAggregator::Contribution> contribution_;
  std::unique_ptr<SafetensorsStreamDecoder> decoder_;
  const double clip_norm_;
  double squares_ = 0;
};

}  // namespace

// A secure update: one serialized MaskedInputChunk per wire chunk, folded into the SecAgg
// session's running sum; each is spilled so a failed upload can be withdrawn exactly.
class RoundEngine::SecureFolder : public UpdateFolder {
 public:
  SecureFolder(RoundEngine* engine, uint32_t site_id, uint64_t round,
               std::unique_ptr<SpillFile> spill)
      : engine_(engine), site_id_(site_id), round_(round), spill_(std::move(spill)) {}

  Status Fold(std::string_view bytes) override {
    ASSIGN_OR_RETURN(MaskedInputChunk chunk, MaskedInputChunk::Parse(bytes));
    if (chunk.sender != site_id_ || chunk.round != round_) {
      return absl::PermissionDeniedError(absl::StrCat("masked chunk claims site ", chunk.sender,
                                                      " round ", chunk.round, "; expected site ",
                                                      site_id_, " round ", round_));
    }
    {
      absl::MutexLock lock(&engine_->secagg_mu_);
      if (!engine_->secagg_) return absl::FailedPreconditionError("no secure round is open");
      RETURN_IF_ERROR(engine_->secagg_->OnMaskedInputChunk(chunk));
    }
    chunks_.push_back({spill_->size(), bytes.size()});
    RETURN_IF_ERROR(spill_->Append(bytes.data(), bytes.size()));
    folded_ += chunk.data.size();
    return absl::OkStatus();
  }

  Status Complete() override {
    absl::MutexLock lock(&engine_->secagg_mu_);
    uint64_t want = engine_->secagg_ ? engine_->secagg_->params().vector_length : 0;
    if (folded_ != want) {
      return absl::DataLossError(
          absl::StrCat("masked upload ended after ", folded_, " of ", want, " values (truncated)"));
    }
    return absl::OkStatus();
  }

  Status Commit() override {
    chunks_.clear();
    spill_.reset();
    return absl::OkStatus();
  }

  // If a chunk cannot be withdrawn, the partial input stays in the sum and the SecAgg session
  // refuses to close the masked-input stage: the round is retried, never released wrong.
  void Abort() override {
    absl::MutexLock lock(&engine_->secagg_mu_);
    for (auto it = chunks_.rbegin(); it != chunks_.rend() && engine_->secagg_; ++it) {
      std::string bytes(it->second, '\0');
      if (!spill_->ReadAt(it->first, bytes.data(), bytes.size()).ok()) break;
      auto chunk = MaskedInputChunk::Parse(bytes);
      if (!chunk.ok() || !engine_->secagg_->WithdrawMaskedChunk(*chunk).ok()) break;
    }
    chunks_.clear();
    spill_.reset();
  }

 private:
  RoundEngine* engine_;
  const uint32_t site_id_;
  const uint64_t round_;
  std::unique_ptr<SpillFile> spill_;
  std::vector<std::pair<uint64_t, size_t>> chunks_;  // spill offset, length
  uint64_t folded_ = 0;
};

// ---------------------------------------------------------------------------------------------
// RoundEngine

RoundEngine::RoundEngine(EngineOptions options) : options_(std::move(options)) {}

RoundEngine::~RoundEngine() = default;

StatusOr<std::unique_ptr<RoundEngine>> RoundEngine::Create(const EngineOptions& options,
                                                           const Model& initial) {
  if (options.min_sites < 1) return absl::InvalidArgumentError("min_sites must be at least 1");
  RETURN_IF_ERROR(CheckEngineStrategy(options.strategy, options.secure.enabled));
  if (options.privacy.enabled &&
      options.secure.enabled != (options.privacy.mechanism == kDistributedDiscreteGaussian)) {
    return absl::InvalidArgumentError(
        "the distributed discrete Gaussian needs secure aggregation (each site's noise alone "
        "is too small to protect it) and the central Gaussian plaintext aggregation");
  }
  std::unique_ptr<RoundEngine> engine(new RoundEngine(options));
  RETURN_IF_ERROR(MakeDirs(options.state_dir));
  RETURN_IF_ERROR(MakeDirs(options.state_dir + "/checkpoints"));
  ASSIGN_OR_RETURN(engine->store_, StateStore::Open(options.state_dir + "/state.db"));
  RETURN_IF_ERROR(engine->Resume(initial));
  RETURN_IF_ERROR(engine->RecordStart());
  return engine;
}

Status RoundEngine::OpenPrivacy(int64_t dimension) {
  PrivacyAccounts::Options ledgers;
  v1::RoundPlan priced;  // what every plan announces, priced once
  const PrivacyOptions& p = options_.privacy;
  if (p.enabled) {
    ddg_.dimension = dimension;
    ddg_.clip_norm = p.clip_norm;
    ddg_.granularity = p.granularity;
    ddg_.noise_multiplier = p.noise_multiplier;
    ddg_.min_survivors = p.min_survivors > 0 ? p.min_survivors : options_.min_sites;
    if (p.mechanism == kDistributedDiscreteGaussian) {
      RETURN_IF_ERROR(Annotate(ddg_.Validate(), "[privacy]"));
    } else if (p.mechanism != kCentralGaussian) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown privacy mechanism '", p.mechanism, "'"));
    }
    SetPrivacyPlan(ddg_, p.budget.delta, &privacy_plan_, p.mechanism.c_str());
    *priced.mutable_privacy() = privacy_plan_;
    ledgers.client = PrivacyAccounts::LedgerSpec{options_.state_dir + "/privacy.json", p.budget};
  }
  const RecordPrivacyOptions& r = options_.record_privacy;
  if (r.enabled) {
    RETURN_IF_ERROR(ResolveRecordPlan());
    *priced.mutable_record_privacy() = record_plan_;
    ledgers.record =
        PrivacyAccounts::LedgerSpec{options_.state_dir + "/record_privacy.json", r.budget};
  }
  StatusOr<RoundPrivacyCost> cost = PrivacyAccounts::Price(priced, dimension);
  RETURN_IF_ERROR(Annotate(cost.status(), "[privacy] / [record_privacy]"));
  round_cost_ = *std::move(cost);
  ASSIGN_OR_RETURN(accounts_, PrivacyAccounts::Open(ledgers));
  return absl::OkStatus();
}

Status RoundEngine::ResolveRecordPlan() {
  const RecordPrivacyOptions& r = options_.record_privacy;
  StatusOr<RecordPrivacyParams> resolved =
      ResolveRecordPrivacy(r, static_cast<int>(options_.training.epochs()), options_.rounds);
  RETURN_IF_ERROR(Annotate(resolved.status(), "[record_privacy]"));
  const RecordPrivacyParams& p = *resolved;
  if (r.noise_multiplier == 0) {
    spdlog::info(
        "record-level privacy: noise multiplier {:.4f} spends epsilon {:g} (delta {:g}) "
        "over {} rounds of {} DP-SGD steps at q = {:g}",
        p.noise_multiplier, r.budget.epsilon, r.budget.delta, options_.rounds, p.steps,
        p.sampling_rate);
  }
  record_plan_.set_clip_norm(p.clip_norm);
  record_plan_.set_noise_multiplier(p.noise_multiplier);
  record_plan_.set_sampling_rate(p.sampling_rate);
  record_plan_.set_steps(static_cast<uint32_t>(p.steps));
  record_plan_.set_delta(p.delta);
  return absl::OkStatus();
}

Status RoundEngine::NextRoundFits() const { return accounts_->CheckFits(round_cost_); }

Status RoundEngine::SpendPrivacy(int64_t round, int64_t attempt) {
  // Spent once the aggregate exists, before anything else is done with it. Every attempt that
  // produced one is an entry of its own (a retry is a new contribution, and its sum a new
  // release), also when the round runs again after a crash; only the same attempt booked twice
  // is recorded once.
  return accounts_->Book(round, attempt, round_cost_, [&](AuditEvent event) -> Status {
    event.fields["attempt"] = attempt;
    RETURN_IF_ERROR(Record(event));
    spdlog::info("round {}: {} privacy spent so far: epsilon {:.4g} at delta {:g}", round,
                 event.fields["guarantee"].get<std::string>(),
                 event.fields["epsilon"].get<double>(), event.fields["delta"].get<double>());
    return absl::OkStatus();
  });
}

Status RoundEngine::Record(const AuditEvent& event) const {
  if (!options_.audit) return absl::OkStatus();
  return Annotate(options_.audit->Append(event).status(),
                  absl::StrCat("writing the audit record '", event.name, "'"));
}

Status RoundEngine::RecordStart() {
  if (!options_.audit) return absl::OkStatus();
  if (options_.audit->size() > 0) {
    return Record(CoordinatorResumed(completed_round(), options_.audit->torn_tail_bytes()));
  }
  FederationStartedFields f;
  f.federation = options_.federation;
  f.config_sha256 = options_.config_sha256;
  f.coordinator = options_.audit->certificate().Subject().common_name;
  f.coordinator_country = options_.coordinator_country;
  f.model = options_.model;
  f.rounds = options_.rounds;
  f.min_sites = options_.min_sites;
  f.aggregation = options_.secure.enabled ? audit_events::kAggregationSecure
                                          : audit_events::kAggregationPlaintext;
  f.allowed_countries = options_.allowed_countries;
  AuditEvent started = FederationStarted(f);
  started.fields["strategy"] = options_.strategy.Label();
  return Record(started);
}

Status RoundEngine::RecordPlan() {
  plan_sha256_ = PlanSha256(plan_);
  RoundPlannedFields f;
  f.round = static_cast<int64_t>(plan_.round());
  f.attempt = round_attempt_ - 1;
  f.plan_sha256 = plan_sha256_;
  f.model_sha256 = plan_.global_model_sha256();
  f.cohort.assign(plan_.cohort().begin(), plan_.cohort().end());
  f.aggregation = plan_.aggregation();
  if (plan_.aggregation() == "secure") {
    const v1::SecAggPlan& sp = plan_.secagg();
    SecureAggregationFields a;
    a.num_sites = sp.num_sites();
    a.degree = sp.degree();
    a.threshold = sp.threshold();
    a.malicious = sp.malicious();
    a.ring_bits = sp.ring_bits();
    a.clip = sp.clip();
    a.quantization_bits = sp.bits();
    a.min_survivors = sp.min_survivors();
    f.secure_aggregation = a;
  }
  if (HasClientPrivacy(plan_)) {
    const v1::PrivacyPlan& p = plan_.privacy();
    f.privacy = nlohmann::json{{"mechanism", p.mechanism()},
                               {"clip", p.clip_norm()},
                               {"granularity", p.granularity()},
                               {"noise_multiplier", p.noise_multiplier()},
                               {"min_survivors", p.min_survivors()},
                               {"delta", p.delta()},
                               {"target_epsilon", options_.privacy.budget.epsilon}};
  }
  if (HasRecordPrivacy(plan_)) {
    const v1::RecordPrivacyPlan& r = plan_.record_privacy();
    f.record_privacy = nlohmann::json{{"mechanism", "dp_sgd"},
                                      {"clip", r.clip_norm()},
                                      {"noise_multiplier", r.noise_multiplier()},
                                      {"sampling_rate", r.sampling_rate()},
                                      {"steps", r.steps()},
                                      {"delta", r.delta()},
                                      {"target_epsilon", options_.record_privacy.budget.epsilon}};
  }
  return Record(RoundPlanned(f));
}

const char* RoundEngine::StageName(Phase phase) {
  switch (phase) {
    case Phase::kSecAggAdvertise:
      return "advertise_keys";
    case Phase::kSecAggShare:
      return "share_keys";
    case Phase::kTrain:
      return "upload";
    case Phase::kSecAggConsistency:
      return "consistency";
    case Phase::kSecAggUnmask:
      return "unmask";
    case Phase::kEvaluate:
      return "evaluate";
    case Phase::kIdle:
    case Phase::kDone:
      break;
  }
  return "idle";
}

Status RoundEngine::RecordDropouts(Phase phase) {
  for (const std::string& site : pending_) {
    RETURN_IF_ERROR(
        Record(SiteDropped(static_cast<int64_t>(plan_.round()), site, StageName(phase))));
  }
  return absl::OkStatus();
}

std::string RoundEngine::CheckpointPath(int64_t round) const {
  return absl::StrFormat("%s/checkpoints/round-%04d.safetensors", options_.state_dir, round);
}

std::string RoundEngine::StrategyStatePath(int64_t round) const {
  return absl::StrFormat("%s/checkpoints/strategy-%04d.safetensors", options_.state_dir, round);
}

Status CheckEngineStrategy(const StrategyOptions& strategy, bool secure_aggregation) {
  RETURN_IF_ERROR(CheckStrategyCompatible(strategy, secure_aggregation));
  const std::string& name = strategy.name;
  if (name == "fedavg" || name == "fedavgm" || name == "fedadam" || name == "fedyogi" ||
      name == "fedadagrad") {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "strategy '", name,
      "' is not available in a deployed federation yet (it needs every site's update, or "
      "site-side changes that the wire does not carry); use fedavg, fedavgm, fedadam, fedyogi "
      "or fedadagrad here, or run it with hansa simulate"));
}

Status RoundEngine::Resume(const Model& initial) {
  ASSIGN_OR_RETURN(std::optional<RoundRecord> last, store_->LastRound());
  if (!last) {
    RETURN_IF_ERROR(initial.Validate());
    ASSIGN_OR_RETURN(strategy_, Strategy::Create(options_.strategy, initial.layout));
    RETURN_IF_ERROR(OpenPrivacy(initial.layout.TotalElements()));
    RoundRecord record;
    record.round = 0;
    return PublishModel(0, initial, record);
  }
  TensorMetadata meta;
  ASSIGN_OR_RETURN(Model model, ReadSafetensorsFile(last->checkpoint, &meta));
  std::string payload =
      EncodeSafetensors(model, {{"round", std::to_string(last->round)}, {"model", options_.model}});
  std::string digest = ToHex(Sha256(payload));
  if (digest != last->model_sha256) {
    return absl::DataLossError(absl::StrCat("checkpoint ", last->checkpoint, " has SHA-256 ",
                                            digest, " but the state database recorded ",
                                            last->model_sha256, "; restore it from a backup"));
  }
  spdlog::info("resuming after round {} (checkpoint {})", last->round, last->checkpoint);
  ASSIGN_OR_RETURN(strategy_, Strategy::Create(options_.strategy, model.layout));
  RETURN_IF_ERROR(OpenPrivacy(model.layout.TotalElements()));
  if (last->round > 0 && strategy_->State().layout.size() > 0) {
    RETURN_IF_ERROR(Annotate(strategy_->LoadState(StrategyStatePath(last->round)),
                             absl::StrCat("resuming strategy '", options_.strategy.name, "'")));
  }
  absl::MutexLock lock(&mu_);
  global_ = std::move(model);
  payload_ = std::make_shared<const std::string>(std::move(payload));
  payload_sha256_ = digest;
  completed_round_ = last->round;
  last_record_ = *last;
  return absl::OkStatus();
}

Status RoundEngine::PublishModel(int64_t round, Model model, const RoundRecord& base) {
  std::string payload =
      EncodeSafetensors(model, {{"round", std::to_string(round)}, {"model", options_.model}});
  std::string digest = ToHex(Sha256(payload));
  std::string path = CheckpointPath(round);
  RETURN_IF_ERROR(WriteFileAtomically(path, payload));
  if (round > 0 && strategy_->State().layout.size() > 0) {
    RETURN_IF_ERROR(strategy_->SaveState(StrategyStatePath(round)));
  }
  if (round > 0) {
    // Recorded before the state store makes it the global model: after a crash in between,
    // the round is run again and recorded twice rather than served unrecorded.
    RETURN_IF_ERROR(Record(CheckpointWritten(round, path, digest)));
    RETURN_IF_ERROR(Record(AggregateReleased(round, digest, base.sites)));
  }
  RoundRecord record = base;
  record.round = round;
  record.model_sha256 = digest;
  record.checkpoint = path;
  RETURN_IF_ERROR(store_->RecordRound(record));
  absl::MutexLock lock(&mu_);
  global_ = std::move(model);
  payload_ = std::make_shared<const std::string>(std::move(payload));
  payload_sha256_ = digest;
  completed_round_ = round;
  last_record_ = record;
  return absl::OkStatus();
}

int64_t RoundEngine::completed_round() const {
  absl::MutexLock lock(&mu_);
  return completed_round_;
}

StatusOr<v1::JoinReply> RoundEngine::Join(const SiteIdentity& site) {
  const ParticipantFields who{site.name, site.organisation, site.country, site.fingerprint};
  const auto& allowed = options_.allowed_sites;
  if (std::find(allowed.begin(), allowed.end(), site.name) == allowed.end()) {
    std::string reason = absl::StrCat(
        "site '", site.name, "' is not part of federation '", options_.federation,
        "'; the federation operator must add it to [sites] allowed in coordinator.toml");
    RETURN_IF_ERROR(Record(SiteRefused(who, reason)));
    return absl::PermissionDeniedError(reason);
  }
  Status jurisdiction = CheckJurisdiction(site.name, site.country, options_.allowed_countries);
  if (!jurisdiction.ok()) {
    spdlog::warn("refused site {}: {}", site.name, jurisdiction.message());
    RETURN_IF_ERROR(Record(SiteRefused(who, std::string(jurisdiction.message()))));
    return jurisdiction;
  }
  RETURN_IF_ERROR(Record(SiteAdmitted(who)));
  absl::MutexLock lock(&mu_);
  if (joined_.count(site.name) == 0) {
    spdlog::info("site {} joined ({}, {}, certificate {})", site.name, site.organisation,
                 site.country, site.fingerprint.substr(0, 16));
  }
  joined_[site.name] = site;
  last_seen_[site.name] = absl::Now();
  changed_.SignalAll();
  v1::JoinReply reply;
  reply.set_site(site.name);
  reply.set_federation(options_.federation);
  reply.set_coordinator_country(options_.coordinator_country);
  reply.set_max_chunk_bytes(options_.max_chunk_bytes);
  return reply;
}

v1::Task::Kind RoundEngine::TaskKind(Phase phase) {
  switch (phase) {
    case Phase::kTrain:
      return v1::Task::TRAIN;
    case Phase::kEvaluate:
      return v1::Task::EVALUATE;
    case Phase::kSecAggAdvertise:
      return v1::Task::SECAGG_ADVERTISE;
    case Phase::kSecAggShare:
      return v1::Task::SECAGG_SHARE;
    case Phase::kSecAggConsistency:
      return v1::Task::SECAGG_CONSISTENCY;
    case Phase::kSecAggUnmask:
      return v1::Task::SECAGG_UNMASK;
    case Phase::kDone:
      return v1::Task::DONE;
    case Phase::kIdle:
      break;
  }
  return v1::Task::WAIT;
}

StatusOr<v1::Task> RoundEngine::NextTask(const std::string& site, absl::Duration wait) {
  absl::Time deadline = absl::Now() + wait;
  absl::MutexLock lock(&mu_);
  if (joined_.count(site) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("site '", site, "' asked for work before joining; call Join first"));
  }
  for (;;) {
    last_seen_[site] = absl::Now();
    v1::Task task;
    if (phase_ == Phase::kDone) {
      task.set_kind(v1::Task::DONE);
      task.set_message(absl::StrCat("federation finished after round ", completed_round_));
      return task;
    }
    if (phase_ != Phase::kIdle && pending_.count(site)) {
      task.set_kind(TaskKind(phase_));
      *task.mutable_plan() = plan_;
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
    if (shutdown_ || absl::Now() >= deadline) {
      task.set_kind(v1::Task::WAIT);
      return task;
    }
    changed_.WaitWithDeadline(&mu_, deadline);
  }
}

StatusOr<std::shared_ptr<const std::string>> RoundEngine::Download(const std::string& site,
                                                                   uint64_t round,
                                                                   const std::string& sha256) {
  absl::MutexLock lock(&mu_);
  // The digest names the model; `round` (the round the plan is for) only helps the message.
  if (sha256 != payload_sha256_) {
    return absl::FailedPreconditionError(
        absl::StrCat("model ", sha256.substr(0, 16), " asked for round ", round,
                     " is not the current global model (after round ", completed_round_,
                     "); ask for a new task"));
  }
  return payload_;
}

void RoundEngine::CountBytesDown(int64_t bytes) {
  absl::MutexLock lock(&mu_);
  bytes_down_ += bytes;
}

StatusOr<std::unique_ptr<UploadSink>> RoundEngine::BeginUpload(const std::string& site,
                                                               const v1::TransferHeader& header) {
  absl::MutexLock lock(&mu_);
  // A replay is named as one even when the round has moved past its upload phase since.
  if (header.round() == plan_.round() && uploads_.count(site)) {
    return RefuseUpload(site,
                        absl::StrCat("site '", site, "' already uploaded its update for round ",
                                     plan_.round(), " (replayed upload refused)"));
  }
  // One upload at a time: two streams of one site would both count (plaintext), or leave a
  // chunk that cannot be withdrawn (secure). Finished sinks are past this point already.
  for (const UploadSink* open : sinks_) {
    if (open->site_ == site && open->attempt_ == attempt_) {
      return RefuseUpload(
          site, absl::StrCat("site '", site, "' already has an upload for round ", plan_.round(),
                             " in progress; a second one at once is refused"));
    }
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
  if (plan_.aggregation() == "secure") {
    // The weight travels inside the masked vector; a count in the clear would reveal it.
    if (header.num_examples() != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "masked update header claims ", header.num_examples(),
          " examples; in secure aggregation a site's count must not travel in the clear"));
    }
  } else if (header.num_examples() == 0 ||
             header.num_examples() > static_cast<uint64_t>(options_.max_examples)) {
    return absl::InvalidArgumentError(
        absl::StrCat("update header claims ", header.num_examples(), " examples"));
  }
  // A masked upload carries ring words (up to 8 bytes) and a small header per chunk.
  uint64_t max_bytes = plan_.aggregation() == "secure"
                           ? plan_.secagg().vector_length() * 8 + (uint64_t{1} << 20)
                           : payload_->size() + (64 << 10);
  if (header.total_bytes() == 0 || header.total_bytes() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("update of ", header.total_bytes(),
                                                   " bytes announced; the global model is ",
                                                   payload_->size(), " bytes"));
  }
  if (!Sha256FromHex(header.sha256()).ok()) {
    return absl::InvalidArgumentError("update header has no valid SHA-256");
  }
  // The folder first: a sink destroyed here would unregister under our own lock.
  std::unique_ptr<UpdateFolder> folder;
  if (plan_.aggregation() == "secure") {
    RETURN_IF_ERROR(MakeDirs(options_.state_dir + "/spill"));
    ASSIGN_OR_RETURN(std::unique_ptr<SpillFile> spill,
                     SpillFile::Create(options_.state_dir + "/spill",
                                       absl::StrCat(site, "-", attempt_, "-masked")));
    auto id = site_ids_.find(site);
    if (id == site_ids_.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("site '", site, "' has no number in round ", plan_.round()));
    }
    folder = std::make_unique<SecureFolder>(this, id->second, plan_.round(), std::move(spill));
  } else {
    // Under client-level privacy every site weighs the same: the sensitivity is one update.
    const bool central = accounts_->client() != nullptr;
    ASSIGN_OR_RETURN(
        auto contribution,
        aggregator_->Begin(site, central ? 1.0 : static_cast<double>(header.num_examples())));
    folder = std::make_unique<PlaintextFolder>(std::move(contribution), global_.layout,
                                               central ? ddg_.clip_norm : 0);
  }
  std::unique_ptr<UploadSink> sink(new UploadSink(this, site, plan_.round(), attempt_, header));
  UploadSink* raw = sink.get();
  {
    absl::MutexLock sink_lock(&raw->mu_);
    raw->folder_ = std::move(folder);
  }
  sinks_.insert(raw);
  return sink;
}

Status RoundEngine::RefuseUpload(const std::string& site, const std::string& why) {
  spdlog::warn("round {}: {}", plan_.round(), why);
  RETURN_IF_ERROR(Record(UploadRefused(static_cast<int64_t>(plan_.round()), site, why)));
  return absl::AlreadyExistsError(why);
}

Status RoundEngine::CommitUpload(UploadSink* sink, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  absl::MutexLock sink_lock(&sink->mu_);
  RETURN_IF_ERROR(sink->cancelled_);
  if (phase_ != Phase::kTrain || attempt_ != sink->attempt_ || !sink->folder_) {
    return absl::DeadlineExceededError(
        absl::StrCat("round ", sink->round_, " closed before the upload finished"));
  }
  if (uploads_.count(sink->site_)) {  // the sink's destructor withdraws what it folded
    return absl::AlreadyExistsError(absl::StrCat(
        "site '", sink->site_, "' already committed its update for round ", sink->round_));
  }
  RETURN_IF_ERROR(Record(UpdateReceived(sink->round_, sink->site_, bytes, sink->header_.sha256())));
  RETURN_IF_ERROR(sink->folder_->Commit());
  sink->folder_.reset();
  sink->finished_ = true;
  uploads_[sink->site_] = sink->header_;
  pending_.erase(sink->site_);
  bytes_up_ += static_cast<int64_t>(bytes);
  if (plan_.aggregation() == "secure") {
    spdlog::info("round {}: masked update from {} ({} bytes)", sink->round_, sink->site_, bytes);
  } else {
    spdlog::info("round {}: update from {} ({} bytes, {} examples)", sink->round_, sink->site_,
                 bytes, sink->header_.num_examples());
  }
  changed_.SignalAll();
  return absl::OkStatus();
}

void RoundEngine::Unregister(UploadSink* sink) {
  absl::MutexLock lock(&mu_);
  sinks_.erase(sink);
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
  reports_[site] = report;
  pending_.erase(site);
  changed_.SignalAll();
  return absl::OkStatus();
}

void RoundEngine::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
  changed_.SignalAll();
}

bool RoundEngine::WaitUntil(absl::Time deadline, const std::function<bool()>& done) {
  while (!done()) {
    if (shutdown_) return false;
    if (absl::Now() >= deadline) return false;
    changed_.WaitWithDeadline(&mu_, std::min(deadline, absl::Now() + absl::Seconds(1)));
  }
  return true;
}

Status RoundEngine::WaitForSites(std::vector<std::string>* cohort) {
  absl::Time deadline = absl::Now() + options_.wait_for_sites;
  absl::Time next_log = absl::Now() + absl::Seconds(10);
  for (;;) {
    cohort->clear();
    absl::Time now = absl::Now();
    for (const auto& [name, seen] : last_seen_) {
      if (now - seen <= options_.site_idle) cohort->push_back(name);
    }
    if (static_cast<int>(cohort->size()) >= options_.min_sites) return absl::OkStatus();
    if (shutdown_) return absl::CancelledError("coordinator shutting down");
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("only ", cohort->size(), " of min_sites = ", options_.min_sites,
                       " sites connected within ", absl::FormatDuration(options_.wait_for_sites),
                       "; start more sites or lower [rounds] min_sites"));
    }
    if (now >= next_log) {
      spdlog::info("waiting for sites: {} of {} connected ({})", cohort->size(), options_.min_sites,
                   absl::StrJoin(*cohort, ", "));
      next_log = now + absl::Seconds(10);
    }
    changed_.WaitWithDeadline(&mu_, std::min(deadline, now + absl::Seconds(1)));
  }
}

void RoundEngine::ClosePhase(const std::string& why) {
  for (UploadSink* sink : sinks_) sink->Cancel(why);
  pending_.clear();
  payloads_.clear();
  phase_ = Phase::kIdle;
  changed_.SignalAll();
}

void RoundEngine::BeginPlan(int64_t round, const std::vector<std::string>& cohort) {
  ++attempt_;
  ++round_attempt_;
  bytes_up_ = 0;
  bytes_down_ = 0;
  uploads_.clear();
  consent_.clear();
  plan_sha256_.clear();
  plan_.Clear();
  plan_.set_round(round);
  plan_.set_model_name(options_.model);
  plan_.set_global_model_sha256(payload_sha256_);
  plan_.set_global_model_bytes(payload_->size());
  *plan_.mutable_training() = options_.training;
  // A retry trains from another seed: its update is a new contribution, never the one a site
  // may already have sent (which the site would refuse to send again).
  uint64_t seed = options_.training.seed() * 1000003 + static_cast<uint64_t>(round);
  if (round_attempt_ > 1) seed = seed * 1000033 + static_cast<uint64_t>(round_attempt_);
  plan_.mutable_training()->set_seed(seed);
  plan_.set_attempt(static_cast<uint32_t>(round_attempt_));
  for (const auto& s : cohort) plan_.add_cohort(s);
  plan_.set_chunk_bytes(options_.chunk_bytes);
  plan_.set_aggregation(options_.secure.enabled ? "secure" : "plaintext");
  if (accounts_->client()) *plan_.mutable_privacy() = privacy_plan_;
  if (accounts_->record()) *plan_.mutable_record_privacy() = record_plan_;
}

Status RoundEngine::RunStage(Phase phase, const std::vector<std::string>& sites,
                             std::map<std::string, std::string> payloads, absl::Time deadline) {
  pending_.clear();
  for (const std::string& site : sites) {
    auto answer = consent_.find(site);
    if (answer == consent_.end() || answer->second) pending_.insert(site);  // not declined
  }
  payloads_ = std::move(payloads);
  phase_ = phase;
  changed_.SignalAll();
  bool all = WaitUntil(deadline, [&] { return pending_.empty(); });
  if (shutdown_) return absl::CancelledError("coordinator shutting down");
  if (!all) {
    spdlog::warn("round {}: no answer in time from {} ({})", plan_.round(),
                 absl::StrJoin(pending_, ", "), v1::Task::Kind_Name(TaskKind(phase)));
  }
  return RecordDropouts(phase);
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
  const int64_t round = static_cast<int64_t>(plan_.round());
  if (response.accepted()) {
    RETURN_IF_ERROR(Record(SiteConsented(round, site)));
  } else {
    std::string reason = response.reason().empty() ? "no reason given" : response.reason();
    reason = RecordText(reason, 2048);  // a whole character at the cut, always UTF-8
    RETURN_IF_ERROR(Record(SiteDeclined(round, site, reason)));
    spdlog::warn("round {}: site {} refused the plan: {}", round, site, reason);
    pending_.erase(site);
    changed_.SignalAll();
  }
  consent_[site] = response.accepted();
  return absl::OkStatus();
}

StatusOr<std::optional<std::vector<float>>> RoundEngine::PlaintextAttempt(absl::Time deadline) {
  aggregator_ = std::make_unique<StreamingAggregator>(global_.layout.TotalElements(),
                                                      absl::StrCat(options_.state_dir, "/spill"));
  std::vector<std::string> cohort(plan_.cohort().begin(), plan_.cohort().end());
  RETURN_IF_ERROR(RecordPlan());
  if (Status st = RunStage(Phase::kTrain, cohort, {}, deadline); !st.ok()) {
    ClosePhase(std::string(st.message()));
    return st;
  }
  ClosePhase(absl::StrCat("round ", plan_.round(), " upload deadline passed"));
  std::unique_ptr<StreamingAggregator> result = std::move(aggregator_);
  if (result->committed() < options_.min_sites) {
    spdlog::warn("round {}: only {} of min_sites = {} updates arrived; retrying the round",
                 plan_.round(), result->committed(), options_.min_sites);
    return std::optional<std::vector<float>>();
  }
  ASSIGN_OR_RETURN(std::vector<float> mean, result->WeightedMean());
  if (accounts_->client()) {
    // Central Gaussian: noise on the sum of the clipped updates, then the plain mean.
    const double n = static_cast<double>(result->committed());
    std::vector<double> sum(mean.begin(), mean.end());
    for (double& x : sum) x *= n;
    CryptoUniformSource source;
    RETURN_IF_ERROR(AddCentralGaussianNoise(sum, ddg_.clip_norm, ddg_.noise_multiplier, source));
    for (size_t i = 0; i < mean.size(); ++i) mean[i] = static_cast<float>(sum[i] / n);
  }
  RETURN_IF_ERROR(SpendPrivacy(static_cast<int64_t>(plan_.round()), round_attempt_));
  return std::optional<std::vector<float>>(std::move(mean));
}

StatusOr<std::optional<std::vector<float>>> RoundEngine::SecureAttempt(
    const std::vector<std::string>& cohort) {
  const SecureOptions& so = options_.secure;
  const int cohort_size = static_cast<int>(cohort.size());
  const int bits = so.bits > 0 ? so.bits : DefaultQuantizationBits(cohort_size);
  EncodingParams encoding{so.clip, bits, cohort_size};
  SecAggParams params;
  params.round = plan_.round();
  params.num_sites = static_cast<uint32_t>(cohort.size());
  params.degree = so.degree;
  params.threshold = so.threshold;
  params.malicious = so.malicious;
  ASSIGN_OR_RETURN(params.ring, ChooseRing(encoding));
  params.vector_length = Encoder::EncodedSize(global_.values.size());
  params.min_survivors = static_cast<uint32_t>(MinimumSum());
  if (accounts_->client()) {
    // DDG integers: each site's are bounded by the rounded norm plus its noise (12 sigma);
    // the signed sum of the cohort must fit the ring.
    params.vector_length = static_cast<uint64_t>(ddg_.PaddedDimension());
    const double per_site = ddg_.RoundedNormBound() + 12 * std::sqrt(ddg_.SiteNoiseVariance());
    params.ring = per_site * static_cast<double>(cohort.size()) < std::ldexp(1.0, 30)
                      ? RingWidth::k32
                      : RingWidth::k64;
  }
  RETURN_IF_ERROR(RandBytes(params.round_seed.data(), params.round_seed.size()));
  site_ids_.clear();
  for (size_t i = 0; i < cohort.size(); ++i) {
    site_ids_[cohort[i]] = static_cast<uint32_t>(i + 1);
    if (so.malicious) {
      ASSIGN_OR_RETURN(Ed25519PublicKey key,
                       Ed25519PublicKeyFromCertificatePem(joined_[cohort[i]].certificate_pem));
      params.signing_keys.push_back(key);
    }
  }
  ASSIGN_OR_RETURN(params, ResolveParams(params));
  {
    absl::MutexLock lock(&secagg_mu_);
    ASSIGN_OR_RETURN(secagg_, ServerSession::Create(params));
    params = secagg_->params();  // with the commitment to the session's secret graph seed
  }
  v1::SecAggPlan* sp = plan_.mutable_secagg();
  sp->set_num_sites(params.num_sites);
  sp->set_degree(static_cast<uint32_t>(params.degree));
  sp->set_threshold(static_cast<uint32_t>(params.threshold));
  sp->set_malicious(params.malicious);
  sp->set_ring_bits(params.ring == RingWidth::k32 ? 32 : 64);
  sp->set_vector_length(params.vector_length);
  sp->set_round_seed(params.round_seed.data(), params.round_seed.size());
  sp->set_graph_seed_commitment(params.graph_seed_commitment.data(),
                                params.graph_seed_commitment.size());
  sp->set_clip(so.clip);
  sp->set_bits(static_cast<uint32_t>(bits));
  sp->set_max_examples(static_cast<uint64_t>(so.max_examples));
  sp->set_deadline_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(so.stage_timeout)));
  sp->set_min_survivors(params.min_survivors);
  if (params.malicious) {
    for (const auto& site : cohort) sp->add_certificates(joined_[site].certificate_pem);
  }
  spdlog::info("round {}: secure aggregation with n = {}, k = {}, t = {}, {}-bit ring{}",
               plan_.round(), params.num_sites, params.degree, params.threshold, sp->ring_bits(),
               params.malicious ? ", malicious-coordinator checks" : "");

  auto name_of = [&](uint32_t id) { return cohort[id - 1]; };
  auto names = [&](const std::vector<uint32_t>& ids) {
    std::vector<std::string> out;
    out.reserve(ids.size());
    for (uint32_t id : ids) out.push_back(name_of(id));
    return out;
  };
  auto broadcast = [](const std::vector<std::string>& sites, const std::string& payload) {
    std::map<std::string, std::string> out;
    for (const auto& s : sites) out[s] = payload;
    return out;
  };
  auto retry = [&](const Status& why) -> StatusOr<std::optional<std::vector<float>>> {
    spdlog::warn("round {}: {}; retrying the round", plan_.round(), why.message());
    absl::MutexLock lock(&secagg_mu_);
    secagg_.reset();
    return std::optional<std::vector<float>>();
  };
  auto stop = [&](const Status& why) -> StatusOr<std::optional<std::vector<float>>> {
    ClosePhase(std::string(why.message()));
    absl::MutexLock lock(&secagg_mu_);
    secagg_.reset();
    return why;
  };
  // Once a sum is unmasked, the sites' inputs are spent: whatever fails after that stops the
  // federation instead of retrying.
  auto fail_after_unmask = [&](const Status& why) -> StatusOr<std::optional<std::vector<float>>> {
    return Annotate(why, absl::StrCat("round ", plan_.round(),
                                      ": the sum was unmasked but cannot be used; not retrying, "
                                      "a retry would release a second sum of the same inputs"));
  };
  auto stage_deadline = [&] { return absl::Now() + so.stage_timeout; };

  if (Status st = RecordPlan(); !st.ok()) return stop(st);
  // AdvertiseKeys.
  if (Status st = RunStage(Phase::kSecAggAdvertise, cohort, {}, stage_deadline()); !st.ok()) {
    return stop(st);
  }
  ClosePhase("key advertisement closed");
  StatusOr<KeyDirectory> directory;
  std::vector<std::string> advertised;
  {
    absl::MutexLock lock(&secagg_mu_);
    directory = secagg_->CloseAdvertiseKeys();
    advertised = names(secagg_->participants().advertised);
  }
  if (!directory.ok()) return retry(directory.status());
  // ShareKeys.
  if (Status st = RunStage(Phase::kSecAggShare, advertised,
                           broadcast(advertised, directory->Serialize()), stage_deadline());
      !st.ok()) {
    return stop(st);
  }
  ClosePhase("key sharing closed");
  StatusOr<std::vector<ShareDelivery>> deliveries;
  {
    absl::MutexLock lock(&secagg_mu_);
    deliveries = secagg_->CloseShareKeys();
  }
  if (!deliveries.ok()) return retry(deliveries.status());
  // MaskedInput: train, encode, mask, upload.
  std::map<std::string, std::string> per_site;
  std::vector<std::string> trainers;
  for (const ShareDelivery& d : *deliveries) {
    per_site[name_of(d.receiver)] = d.Serialize();
    trainers.push_back(name_of(d.receiver));
  }
  absl::Time deadline = absl::Now() + options_.upload_timeout;
  plan_.set_upload_deadline_unix_ms(absl::ToUnixMillis(deadline));
  if (Status st = RunStage(Phase::kTrain, trainers, std::move(per_site), deadline); !st.ok()) {
    return stop(st);
  }
  ClosePhase(absl::StrCat("round ", plan_.round(), " upload deadline passed"));
  StatusOr<SurvivorList> survivors;
  {
    absl::MutexLock lock(&secagg_mu_);
    survivors = secagg_->CloseMaskedInput();
  }
  if (!survivors.ok()) return retry(survivors.status());
  std::vector<std::string> survivor_names = names(survivors->survivors);
  // ConsistencyCheck (malicious-coordinator mode).
  if (params.malicious) {
    if (Status st = RunStage(Phase::kSecAggConsistency, survivor_names,
                             broadcast(survivor_names, survivors->Serialize()), stage_deadline());
        !st.ok()) {
      return stop(st);
    }
    ClosePhase("consistency check closed");
  }
  // Unmask, only if the release it makes fits every budget (it is booked as soon as it exists).
  if (Status fits = NextRoundFits(); !fits.ok()) {
    return stop(Annotate(fits, absl::StrCat("round ", plan_.round(), " attempt ", round_attempt_,
                                            ": not unmasking")));
  }
  StatusOr<UnmaskRequest> request;
  {
    absl::MutexLock lock(&secagg_mu_);
    request = secagg_->StartUnmask();
  }
  if (!request.ok()) return retry(request.status());
  if (Status st = RunStage(Phase::kSecAggUnmask, survivor_names,
                           broadcast(survivor_names, request->Serialize()), stage_deadline());
      !st.ok()) {
    return stop(st);
  }
  ClosePhase("unmasking closed");
  const bool unmask_on_gpu = so.unmask_device == "auto" && CudaDeviceAvailable();
  StatusOr<SecAggResult> result;
  {
    absl::MutexLock lock(&secagg_mu_);
    result = unmask_on_gpu ? secagg_->Finish(ApplyMasksOnDevice) : secagg_->Finish();
    secagg_.reset();
  }
  if (!result.ok()) return retry(result.status());
  // The session closed the masked-input stage only with the minimum; a sum below it here
  // would be a broken invariant, and it is not released.
  if (static_cast<int>(result->survivors.size()) < MinimumSum()) {
    return absl::InternalError(absl::StrCat("round ", plan_.round(), ": a sum of ",
                                            result->survivors.size(),
                                            " inputs was unmasked, below "
                                            "the minimum of ",
                                            MinimumSum(), "; stopping"));
  }
  // The sum exists: a release, booked before anything else is done with it.
  RETURN_IF_ERROR(SpendPrivacy(static_cast<int64_t>(plan_.round()), round_attempt_));
  if (accounts_->client()) {
    // The survivors' clipped updates plus their noise, rotation and scaling undone.
    const int bits = params.ring == RingWidth::k64 ? 64 : 32;
    std::vector<uint64_t> words =
        params.ring == RingWidth::k64
            ? result->sum.w64
            : std::vector<uint64_t>(result->sum.w32.begin(), result->sum.w32.end());
    const std::string_view seed(reinterpret_cast<const char*>(params.round_seed.data()),
                                params.round_seed.size());
    StatusOr<std::vector<double>> sum =
        DdgDecodeSum(words, bits, ddg_, seed, static_cast<int64_t>(result->survivors.size()));
    if (!sum.ok()) return fail_after_unmask(sum.status());
    std::vector<float> mean(sum->size());
    for (size_t i = 0; i < mean.size(); ++i) {
      mean[i] = static_cast<float>((*sum)[i] / static_cast<double>(result->survivors.size()));
    }
    secure_examples_ = 0;  // no weights under client-level privacy: the clipped mean
    spdlog::info("round {}: unmasked the noised sum of {} sites (distributed discrete Gaussian)",
                 plan_.round(), result->survivors.size());
    return std::optional<std::vector<float>>(std::move(mean));
  }
  StatusOr<DecodedSum> decoded_or = DecodeSum(result->sum, result->survivors.size(), encoding);
  if (!decoded_or.ok()) return fail_after_unmask(decoded_or.status());
  DecodedSum decoded = *std::move(decoded_or);
  std::vector<float> mean = decoded.Mean();
  mean.resize(global_.values.size());  // drop the weight element
  spdlog::info(
      "round {}: unmasked the sum of {} sites (total weight {:.4f}; masks removed on "
      "the {})",
      plan_.round(), result->survivors.size(), decoded.total_weight, unmask_on_gpu ? "GPU" : "CPU");
  // Only the total is known: the sum of the weights, each examples / max_examples.
  secure_examples_ =
      std::llround(decoded.total_weight * static_cast<double>(options_.secure.max_examples));
  return std::optional<std::vector<float>>(std::move(mean));
}

int RoundEngine::MinimumSum() const {
  int minimum = options_.min_sites;
  if (accounts_->client()) minimum = std::max(minimum, static_cast<int>(ddg_.min_survivors));
  return minimum;
}

Status RoundEngine::RunTrainingRound(int64_t round) {
  absl::Time started = absl::Now();
  std::vector<float> mean_delta;
  Model next;
  RoundRecord record;
  {
    absl::MutexLock lock(&mu_);
    // Attempts count across restarts: a round re-planned after a crash is a retry, with a
    // training seed of its own, since sites may have sent the first attempt's update already.
    const std::string attempts_key = absl::StrCat("attempts/", round);
    ASSIGN_OR_RETURN(std::optional<std::string> stored, store_->Get(attempts_key));
    round_attempt_ = 0;
    if (stored && !absl::SimpleAtoi(*stored, &round_attempt_)) {
      return absl::DataLossError(
          absl::StrCat("state database: '", attempts_key, "' is '", *stored, "', not a number"));
    }
    // The cap counts this run's plans, so a coordinator restarted after it stopped here
    // tries again.
    for (int64_t planned = 0;; ++planned) {
      if (planned >= options_.max_attempts) {
        std::string why =
            absl::StrCat("round ", round, " got no aggregate in ", planned,
                         " attempts (rounds.max_attempts = ", options_.max_attempts,
                         "); training stops. Check that at least ", MinimumSum(),
                         " sites stay connected through a round, or raise the timeouts");
        RETURN_IF_ERROR(Record(RoundAbandoned(round, planned, why)));
        return absl::ResourceExhaustedError(why);
      }
      std::vector<std::string> cohort;
      RETURN_IF_ERROR(WaitForSites(&cohort));
      BeginPlan(round, cohort);
      RETURN_IF_ERROR(store_->Put(attempts_key, std::to_string(round_attempt_)));
      const int64_t attempt = round_attempt_;
      spdlog::info("round {} (attempt {}): {} sites: {}", round, attempt, cohort.size(),
                   absl::StrJoin(cohort, ", "));
      StatusOr<std::optional<std::vector<float>>> mean;
      if (options_.secure.enabled) {
        mean = SecureAttempt(cohort);
      } else {
        absl::Time deadline = absl::Now() + options_.upload_timeout;
        plan_.set_upload_deadline_unix_ms(absl::ToUnixMillis(deadline));
        mean = PlaintextAttempt(deadline);
      }
      if (!mean.ok()) return mean.status();
      if (mean->has_value()) {
        mean_delta = std::move(**mean);
        break;
      }
    }
    for (const auto& [site, header] : uploads_) {
      record.sites.push_back(site);
      record.examples += static_cast<int64_t>(header.num_examples());
    }
    if (options_.secure.enabled) record.examples = secure_examples_;
    record.bytes_up = bytes_up_;
    record.bytes_down = bytes_down_;
    next = global_;
  }
  // Server step: the strategy (FedAvg: global + server_lr * mean) on the sites' mean delta.
  Model mean;
  mean.layout = next.layout;
  mean.values = std::move(mean_delta);
  RoundInfo info{round, static_cast<int>(record.sites.size()),
                 static_cast<int>(options_.allowed_sites.size())};
  StatusOr<Model> stepped = strategy_->Apply(next, mean, info);
  if (!stepped.ok()) {
    return Annotate(stepped.status(),
                    absl::StrCat("server step of round ", round, "; refusing to publish it"));
  }
  next = *std::move(stepped);
  Status valid = next.Validate();
  if (!valid.ok()) {
    return Annotate(valid, absl::StrCat("aggregate of round ", round,
                                        " is not finite; refusing to publish it"));
  }
  record.seconds = absl::ToDoubleSeconds(absl::Now() - started);
  RETURN_IF_ERROR(PublishModel(round, std::move(next), record));
  spdlog::info("round {}: aggregated {} updates ({} examples) in {:.1f} s", round,
               record.sites.size(), record.examples, record.seconds);
  return absl::OkStatus();
}

Status RoundEngine::SubmitSecAgg(const std::string& site, const v1::SecAggSubmission& m) {
  absl::MutexLock lock(&mu_);
  if (phase_ == Phase::kIdle || TaskKind(phase_) != m.stage() || m.round() != plan_.round()) {
    return absl::FailedPreconditionError(absl::StrCat("no ", v1::Task::Kind_Name(m.stage()),
                                                      " message for round ", m.round(),
                                                      " is expected now"));
  }
  if (pending_.count(site) == 0) {
    return absl::AlreadyExistsError(absl::StrCat("site '", site, "' already answered ",
                                                 v1::Task::Kind_Name(m.stage()),
                                                 " (replay refused)"));
  }
  auto number = site_ids_.find(site);
  const bool secagg_stage = phase_ == Phase::kSecAggAdvertise || phase_ == Phase::kSecAggShare ||
                            phase_ == Phase::kSecAggConsistency || phase_ == Phase::kSecAggUnmask;
  if (!secagg_stage || number == site_ids_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("no secure-aggregation stage for site '",
                                                      site, "' is open in round ", plan_.round()));
  }
  const uint32_t id = number->second;
  auto from = [&](uint32_t sender) -> Status {
    if (sender == id) return absl::OkStatus();
    return absl::PermissionDeniedError(
        absl::StrCat("site '", site, "' (number ", id, ") sent a message signed as site ", sender));
  };
  Status st;
  {
    absl::MutexLock secagg_lock(&secagg_mu_);
    if (!secagg_) return absl::FailedPreconditionError("no secure round is open");
    switch (m.stage()) {
      case v1::Task::SECAGG_ADVERTISE: {
        ASSIGN_OR_RETURN(AdvertiseKeys msg, AdvertiseKeys::Parse(m.payload()));
        RETURN_IF_ERROR(from(msg.sender));
        st = secagg_->OnAdvertiseKeys(msg);
        break;
      }
      case v1::Task::SECAGG_SHARE: {
        ASSIGN_OR_RETURN(ShareKeys msg, ShareKeys::Parse(m.payload()));
        RETURN_IF_ERROR(from(msg.sender));
        st = secagg_->OnShareKeys(msg);
        break;
      }
      case v1::Task::SECAGG_CONSISTENCY: {
        ASSIGN_OR_RETURN(ConsistencySignature msg, ConsistencySignature::Parse(m.payload()));
        RETURN_IF_ERROR(from(msg.sender));
        st = secagg_->OnConsistencySignature(msg);
        break;
      }
      case v1::Task::SECAGG_UNMASK: {
        ASSIGN_OR_RETURN(UnmaskResponse msg, UnmaskResponse::Parse(m.payload()));
        RETURN_IF_ERROR(from(msg.sender));
        st = secagg_->OnUnmaskResponse(msg);
        break;
      }
      default:
        return absl::InvalidArgumentError("not a secure-aggregation stage");
    }
  }
  RETURN_IF_ERROR(st);
  bytes_up_ += static_cast<int64_t>(m.payload().size());
  pending_.erase(site);
  changed_.SignalAll();
  return absl::OkStatus();
}

Status RoundEngine::RunEvaluation(int64_t round) {
  absl::Time started = absl::Now();
  nlohmann::ordered_json line;
  {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> cohort;
    RETURN_IF_ERROR(WaitForSites(&cohort));
    reports_.clear();
    plan_.Clear();
    plan_.set_round(round);
    plan_.set_model_name(options_.model);
    plan_.set_global_model_sha256(payload_sha256_);
    plan_.set_global_model_bytes(payload_->size());
    plan_.set_chunk_bytes(options_.chunk_bytes);
    for (const auto& s : cohort) plan_.add_cohort(s);
    pending_ = std::set<std::string>(cohort.begin(), cohort.end());
    phase_ = Phase::kEvaluate;
    changed_.SignalAll();
    absl::Time deadline = absl::Now() + options_.evaluate_timeout;
    WaitUntil(deadline, [&] { return pending_.empty(); });
    if (shutdown_) {
      ClosePhase("coordinator shutting down");
      return absl::CancelledError("coordinator shutting down");
    }
    if (!pending_.empty()) {
      spdlog::warn("round {}: no evaluation from {}", round, absl::StrJoin(pending_, ", "));
      if (round > 0) RETURN_IF_ERROR(RecordDropouts(Phase::kEvaluate));
    }
    ClosePhase("evaluation deadline passed");
    double n = 0, correct = 0, loss = 0;
    nlohmann::ordered_json per_site = nlohmann::ordered_json::object();
    for (const auto& [site, r] : reports_) {
      n += static_cast<double>(r.num_examples());
      correct += r.accuracy() * static_cast<double>(r.num_examples());
      loss += r.loss() * static_cast<double>(r.num_examples());
      per_site[site] = {
          {"accuracy", r.accuracy()}, {"loss", r.loss()}, {"examples", r.num_examples()}};
    }
    line["round"] = round;
    line["sites"] = last_record_.sites.size();
    line["accuracy"] = n > 0 ? nlohmann::ordered_json(correct / n) : nullptr;
    line["loss"] = n > 0 ? nlohmann::ordered_json(loss / n) : nullptr;
    line["seconds"] = last_record_.seconds;
    line["bytes_up"] = last_record_.bytes_up;
    line["bytes_down"] = last_record_.bytes_down + bytes_down_;
    line["examples"] = last_record_.examples;
    line["evaluated_on"] = static_cast<int64_t>(n);
    line["evaluation_seconds"] = absl::ToDoubleSeconds(absl::Now() - started);
    line["model_sha256"] = payload_sha256_;
    if (const PrivacyLedger* client = accounts_->client()) {
      line["epsilon"] = client->Spent().epsilon;
      line["delta"] = client->budget().delta;
    }
    if (const PrivacyLedger* record = accounts_->record()) {
      line["record_epsilon"] = record->Spent().epsilon;
      line["record_delta"] = record->budget().delta;
    }
    line["per_site"] = per_site;
    bytes_down_ = 0;
  }
  RETURN_IF_ERROR(store_->RecordMetrics(round, line.dump()));
  {
    absl::MutexLock lock(&mu_);
    last_record_.metrics_json = line.dump();
  }
  return WriteMetricsFile();
}

Status RoundEngine::WriteMetricsFile() {
  ASSIGN_OR_RETURN(std::vector<std::string> lines, store_->AllMetrics());
  std::string text;
  for (const auto& l : lines) absl::StrAppend(&text, l, "\n");
  return WriteFileAtomically(options_.state_dir + "/metrics.jsonl", text);
}

Status RoundEngine::Run() {
  RETURN_IF_ERROR(WriteMetricsFile());
  for (;;) {
    int64_t round;
    bool evaluated;
    {
      absl::MutexLock lock(&mu_);
      round = completed_round_;
      evaluated = last_record_.metrics_json.has_value();
      if (shutdown_) return absl::CancelledError("coordinator shutting down");
    }
    if (!evaluated) {
      RETURN_IF_ERROR(RunEvaluation(round));
      continue;
    }
    if (round >= options_.rounds) break;
    if (Status fits = NextRoundFits(); !fits.ok()) {
      spdlog::warn("privacy budget: {}; training stops after round {}", fits.message(), round);
      break;
    }
    RETURN_IF_ERROR(RunTrainingRound(round + 1));
  }
  RETURN_IF_ERROR(Record(FederationFinished(options_.rounds)));
  absl::MutexLock lock(&mu_);
  phase_ = Phase::kDone;
  changed_.SignalAll();
  spdlog::info("federation finished: {} rounds", options_.rounds);
  return absl::OkStatus();
}

}  // namespace hansa

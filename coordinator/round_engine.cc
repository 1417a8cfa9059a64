#include "coordinator/round_engine.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/audit/events.h"
#include "common/audit/record.h"
#include "common/audit/record_text.h"
#include "common/fileio/fileio.h"
#include "common/logging/logging.h"
#include "common/plan/plan_readers.h"
#include "common/plan/plan_writer.h"
#include "common/plan/standardization.h"
#include "common/privacy/central_gaussian.h"
#include "common/privacy/uniform_source.h"
#include "coordinator/federation_status.h"
#include "coordinator/round_metrics.h"
#include "coordinator/round_records.h"
#include "coordinator/strategies/registry.h"
#include "proto/plan_digest.h"
#include "spdlog/spdlog.h"

namespace hansa {

Status CheckEngineStrategy(const StrategyOptions& strategy, bool secure_aggregation) {
  RETURN_IF_ERROR(CheckStrategyCompatible(strategy, secure_aggregation));
  if (FindStrategy(strategy.name)->deployable) return absl::OkStatus();
  std::vector<std::string> usable = DeployableStrategies();
  const std::string last = usable.back();
  usable.pop_back();
  return absl::InvalidArgumentError(absl::StrCat(
      "strategy '", strategy.name,
      "' is not available in a deployed federation yet (it needs every site's update, or "
      "site-side changes that the wire does not carry); use ",
      absl::StrJoin(usable, ", "), " or ", last, " here, or run it with hansa simulate"));
}

// ---------------------------------------------------------------------------------------------
// Start, resume, publish

RoundEngine::RoundEngine(EngineOptions options)
    : options_(std::move(options)),
      checkpoints_(options_.state_dir, options_.model),
      members_(options_.federation, options_.allowed_sites, options_.allowed_countries) {}

RoundEngine::~RoundEngine() = default;

namespace {

// Uploads in progress when a coordinator was killed left their spill files: no attempt of
// that run can be resumed, so none is needed, and each would hold up to a model's worth of
// disk until removed.
Status RemoveStaleSpill(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("removing the spill files of an earlier run in ", dir,
                                            ": ", ec.message(), "; remove them by hand"));
  }
  return absl::OkStatus();
}

}  // namespace

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
  if (options.standardization.features > 0 && !options.secure.enabled) {
    return absl::InvalidArgumentError(
        "pooled standardisation needs secure aggregation: in plaintext the coordinator would "
        "see each site's feature moments");
  }
  std::unique_ptr<RoundEngine> engine(new RoundEngine(options));
  RETURN_IF_ERROR(MakeDirs(options.state_dir));
  RETURN_IF_ERROR(MakeDirs(options.state_dir + "/checkpoints"));
  RETURN_IF_ERROR(RemoveStaleSpill(options.state_dir + "/spill"));
  ASSIGN_OR_RETURN(engine->store_, StateStore::Open(options.state_dir + "/state.db"));
  RETURN_IF_ERROR(engine->Resume(initial));
  RETURN_IF_ERROR(engine->RecordStart());
  return engine;
}

namespace {

constexpr char kStandardizationKey[] = "standardization";
// The figures of the round being published that no audit record holds (PublishingFact).
constexpr char kPublishingKey[] = "publishing";

std::string PublishingFact(const RoundRecord& r) {
  return nlohmann::json{{"round", r.round},           {"model_sha256", r.model_sha256},
                        {"examples", r.examples},     {"bytes_up", r.bytes_up},
                        {"bytes_down", r.bytes_down}, {"seconds", r.seconds}}
      .dump();
}

// Copies the figures of `fact` into `record` when it was written for the same round and model.
bool FillFromPublishingFact(const std::string& fact, RoundRecord* record) {
  nlohmann::json j = nlohmann::json::parse(fact, nullptr, false);
  try {
    if (j.at("round").get<int64_t>() != record->round ||
        j.at("model_sha256").get<std::string>() != record->model_sha256) {
      return false;
    }
    record->examples = j.at("examples").get<int64_t>();
    record->bytes_up = j.at("bytes_up").get<int64_t>();
    record->bytes_down = j.at("bytes_down").get<int64_t>();
    record->seconds = j.at("seconds").get<double>();
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

// The aggregate_released and the checkpoint_written records of rounds after the stored ones,
// newest first.
struct PastRecords {
  std::vector<AuditRecord> released;
  std::vector<AuditRecord> checkpointed;
};

// PastRecords of the log `log` past round `stored`, read from its end back to the release of a
// round at or before `stored`: a round is released only after the one before it was stored, so
// nothing older can be past it. Only the lines of those two events are parsed.
StatusOr<PastRecords> RecordsPast(std::string_view log, int64_t stored) {
  namespace ev = audit_events;
  const std::string released_tag = absl::StrCat("\"event\":\"", ev::kAggregateReleased, "\"");
  const std::string checkpoint_tag = absl::StrCat("\"event\":\"", ev::kCheckpointWritten, "\"");
  PastRecords past;
  std::string_view rest = log;
  if (!rest.empty() && rest.back() == '\n') rest.remove_suffix(1);
  while (!rest.empty()) {
    const size_t newline = rest.rfind('\n');
    const std::string_view line =
        newline == std::string_view::npos ? rest : rest.substr(newline + 1);
    rest = newline == std::string_view::npos ? std::string_view() : rest.substr(0, newline);
    const bool released = line.find(released_tag) != std::string_view::npos;
    if (!released && line.find(checkpoint_tag) == std::string_view::npos) continue;
    ASSIGN_OR_RETURN(AuditRecord record, ParseRecordLine(line));
    const nlohmann::json& round = record.fields["round"];
    if (!round.is_number_integer()) {
      return absl::DataLossError(
          absl::StrCat("audit record ", record.seq, " (", record.event, ") names no round"));
    }
    if (round.get<int64_t>() <= stored) {
      if (released) break;
      continue;
    }
    (released ? past.released : past.checkpointed).push_back(std::move(record));
  }
  return past;
}

StatusOr<std::string> StringField(const AuditRecord& record, const char* name) {
  auto it = record.fields.find(name);
  if (it == record.fields.end() || !it->is_string()) {
    return absl::DataLossError(
        absl::StrCat("audit record ", record.seq, " (", record.event, ") has no '", name, "'"));
  }
  return it->get<std::string>();
}

// Resume's error for an unstored release whose files cannot be adopted (`error` says why).
Status NotAdoptable(const RoundRecord& record, int64_t seq, const Checkpoints& checkpoints,
                    const Status& error) {
  const int64_t round = record.round;
  return absl::DataLossError(absl::StrCat(
      "round ", round, " was released (audit record ", seq, ", model ", record.model_sha256,
      ") but the coordinator stopped before the state database recorded it, and its files "
      "cannot be adopted: ",
      error.message(), ". The coordinator will not run round ", round,
      " again (a second aggregate of a released round); restore ", record.checkpoint,
      " and, if the strategy keeps state, ", checkpoints.StrategyStatePath(round),
      " from a backup, then restart"));
}

// The pooled standardisation as the state store keeps it (the audit record's fields).
StatusOr<v1::Standardization> ParseStandardization(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  v1::Standardization s;
  try {
    s.set_examples(j.at("examples").get<uint64_t>());
    for (double m : j.at("mean")) s.add_mean(m);
    for (double d : j.at("std")) s.add_std(d);
    RETURN_IF_ERROR(CheckStandardization(s, j.at("features").get<int64_t>()));
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat("state database: the pooled standardisation is unreadable: ", e.what()));
  }
  return s;
}

}  // namespace

Status RoundEngine::Resume(const Model& initial) {
  ASSIGN_OR_RETURN(std::optional<std::string> pooled, store_->Get(kStandardizationKey));
  if (pooled) {
    ASSIGN_OR_RETURN(v1::Standardization s, ParseStandardization(*pooled));
    absl::MutexLock lock(&mu_);
    standardization_ = std::move(s);
  }
  ASSIGN_OR_RETURN(std::optional<RoundRecord> last, store_->LastRound());
  ASSIGN_OR_RETURN(std::optional<UnstoredRelease> unstored,
                   ReleasedButNotStored(last ? last->round : -1));
  if (!last) {  // a release past no stored round was refused above
    RETURN_IF_ERROR(initial.Validate());
    ASSIGN_OR_RETURN(strategy_, Strategy::Create(options_.strategy, initial.layout));
    ASSIGN_OR_RETURN(privacy_, EnginePrivacy::Open(options_, initial.layout.TotalElements()));
    RoundRecord record;
    record.round = 0;
    return PublishModel(0, checkpoints_.Encode(0, initial), record);
  }
  if (unstored) last = unstored->record;
  // Why an unstored release cannot be adopted; `error` as it is otherwise.
  auto adopting = [&](const Status& error) {
    if (error.ok() || !unstored) return error;
    return NotAdoptable(unstored->record, unstored->seq, checkpoints_, error);
  };
  StatusOr<PublishedModel> published = checkpoints_.Load(*last);
  if (!published.ok()) return adopting(published.status());
  const ModelLayout& layout = published->layout;
  ASSIGN_OR_RETURN(strategy_, Strategy::Create(options_.strategy, layout));
  ASSIGN_OR_RETURN(privacy_, EnginePrivacy::Open(options_, layout.TotalElements()));
  if (last->round > 0 && strategy_->State().layout.size() > 0) {
    RETURN_IF_ERROR(
        adopting(Annotate(strategy_->LoadState(checkpoints_.StrategyStatePath(last->round)),
                          absl::StrCat("resuming strategy '", options_.strategy.name, "'"))));
  }
  if (unstored) {
    // Its privacy cost was booked before the release; the store now completes the round.
    RETURN_IF_ERROR(store_->RecordRound(*last));
    spdlog::warn(
        "round {} was released (audit record {}) but the coordinator stopped before the state "
        "database recorded it: adopting its checkpoint {} instead of running the round again",
        last->round, unstored->seq, last->checkpoint);
  }
  spdlog::info("resuming after round {} (checkpoint {})", last->round, last->checkpoint);
  absl::MutexLock lock(&mu_);
  global_ = *std::move(published);
  completed_round_ = last->round;
  last_record_ = *std::move(last);
  return absl::OkStatus();
}

StatusOr<std::optional<RoundEngine::UnstoredRelease>> RoundEngine::ReleasedButNotStored(
    int64_t stored) {
  if (!options_.audit) return std::optional<UnstoredRelease>();
  const std::string& path = options_.audit->path();
  // AuditLog::Open read the whole log and checked its chain and signatures, and its lock keeps
  // other writers out: the records are the engine's own.
  ASSIGN_OR_RETURN(std::string log, ReadFile(path));
  ASSIGN_OR_RETURN(PastRecords past, RecordsPast(log, stored));
  if (past.released.empty()) {
    // A checkpoint_written without its release (a stop between the two records) released
    // nothing: the round runs again, as a retry, like one stopped before its checkpoint.
    return std::optional<UnstoredRelease>();
  }
  const AuditRecord& release = past.released.front();
  const int64_t round = release.fields["round"].get<int64_t>();
  if (past.released.size() > 1 || round != stored + 1) {
    return absl::DataLossError(absl::StrCat(
        "audit log ", path, " released round ", round, " (record ", release.seq,
        ") but the state database ",
        stored < 0 ? std::string("holds no round") : absl::StrCat("ends at round ", stored),
        ": it is older than the audit log (removed, or restored from an older backup). "
        "Restore state.db from the backup the audit log belongs with; the coordinator does not "
        "run a released round again, as that would release a second aggregate of it"));
  }
  UnstoredRelease out;
  out.seq = release.seq;
  RoundRecord& record = out.record;
  record.round = round;
  ASSIGN_OR_RETURN(record.model_sha256, StringField(release, "model_sha256"));
  const AuditRecord* checkpoint = nullptr;
  for (const AuditRecord& c : past.checkpointed) {
    if (c.fields["round"] == round) {
      checkpoint = &c;
      break;
    }
  }
  StatusOr<std::string> checkpointed =
      checkpoint ? StringField(*checkpoint, "sha256") : StatusOr<std::string>(std::string());
  if (!checkpointed.ok() || *checkpointed != record.model_sha256) {
    return absl::DataLossError(absl::StrCat(
        "audit log ", path, " released round ", round, " (record ", release.seq,
        ") without a checkpoint_written record of its model ", record.model_sha256,
        "; the state database does not hold the round either. Restore the state dir and the "
        "audit log from one backup"));
  }
  record.checkpoint = checkpoints_.ModelPath(round);
  try {
    record.sites = release.fields.at("sites").get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("audit log ", path, ", record ", release.seq,
                                            ": the released sites are unreadable: ", e.what()));
  }
  ASSIGN_OR_RETURN(std::optional<std::string> fact, store_->Get(kPublishingKey));
  if (!fact || !FillFromPublishingFact(*fact, &record)) {
    spdlog::warn(
        "round {}: the state database lost the figures of its release; its examples, "
        "bytes and seconds read 0 in metrics.jsonl",
        round);
  }
  return std::optional<UnstoredRelease>(std::move(out));
}

Status RoundEngine::PublishModel(int64_t round, PublishedModel published, const RoundRecord& base) {
  RoundRecord record = base;
  record.round = round;
  record.model_sha256 = published.sha256;
  record.checkpoint = checkpoints_.ModelPath(round);
  RETURN_IF_ERROR(checkpoints_.Write(round, &published, *strategy_));
  if (round > 0) {
    // Released (on record) before the state store makes it the global model, so nothing is
    // served unrecorded. A coordinator stopped in between adopts the round at its restart
    // (Resume), with the figures kept here first, rather than releasing a second aggregate.
    RETURN_IF_ERROR(store_->Put(kPublishingKey, PublishingFact(record)));
    RETURN_IF_ERROR(Record(CheckpointWritten(round, record.checkpoint, published.sha256)));
    RETURN_IF_ERROR(Record(AggregateReleased(round, published.sha256, base.sites)));
  }
  RETURN_IF_ERROR(store_->RecordRound(record));
  if (options_.status && round > 0) {
    options_.status->RoundReleased(round, static_cast<int64_t>(base.sites.size()), 0,
                                   options_.clock->Now());
  }
  absl::MutexLock lock(&mu_);
  global_ = std::move(published);
  completed_round_ = round;
  last_record_ = std::move(record);
  return absl::OkStatus();
}

int64_t RoundEngine::completed_round() const {
  absl::MutexLock lock(&mu_);
  return completed_round_;
}

StatusOr<Model> RoundEngine::global_model() const {
  PublishedModel global;
  {
    absl::MutexLock lock(&mu_);
    global = global_;  // the payload is shared, not copied: the copy below runs unlocked
  }
  Model model = global.ToModel();
  global.payload.EvictAll();
  return model;
}

// ---------------------------------------------------------------------------------------------
// Audit records

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
  return Record(FederationStartedOf(options_));
}

Status RoundEngine::RecordPlan() {
  plan_sha256_ = PlanSha256(plan_);
  return Record(RoundPlannedOf(plan_, plan_sha256_, round_attempt_ - 1, options_));
}

Status RoundEngine::RecordDropouts(Phase phase) {
  for (const std::string& site : pending_) {
    RETURN_IF_ERROR(
        Record(SiteDropped(static_cast<int64_t>(plan_.round()), site, StageName(phase))));
    if (options_.status) options_.status->SiteDropped(site, StageName(phase));
  }
  return absl::OkStatus();
}

Status RoundEngine::SpendPrivacy() {
  if (statistics_step_) return absl::OkStatus();  // the statistics step spends no budget
  // Spent once the aggregate exists, before anything else is done with it. Every attempt that
  // produced one is an entry of its own (a retry is a new contribution, and its sum a new
  // release), also when the round runs again after a crash; only the same attempt booked twice
  // is recorded once.
  const auto round = static_cast<int64_t>(plan_.round());
  const int64_t attempt = round_attempt_;
  return privacy_->Book(round, attempt, [&](AuditEvent event) -> Status {
    event.fields["attempt"] = attempt;
    RETURN_IF_ERROR(Record(event));
    if (options_.status) {
      // Each guarantee against its own budget: record-level DP-SGD has one of its own.
      const std::string guarantee = event.fields["guarantee"].get<std::string>();
      const double budget = guarantee == "record-level" ? options_.record_privacy.budget.epsilon
                                                        : options_.privacy.budget.epsilon;
      options_.status->PrivacySpent(guarantee, event.fields["epsilon"].get<double>(), budget,
                                    event.fields["delta"].get<double>());
    }
    spdlog::info("round {}: {} privacy spent so far: epsilon {:.4g} at delta {:g}", round,
                 event.fields["guarantee"].get<std::string>(),
                 event.fields["epsilon"].get<double>(), event.fields["delta"].get<double>());
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------------------------------------
// Driver: stages and waits

void RoundEngine::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
  changed_.SignalAll();
}

bool RoundEngine::WaitUntil(absl::Time deadline, const std::function<bool()>& done) {
  while (!done()) {
    if (shutdown_) return false;
    if (options_.clock->Now() >= deadline) return false;
    changed_.WaitWithDeadline(&mu_, options_.clock->WaitDeadline(std::min(
                                        deadline, options_.clock->Now() + absl::Seconds(1))));
  }
  return true;
}

bool RoundEngine::OnlyLostPending() const {
  return std::all_of(pending_.begin(), pending_.end(),
                     [&](const std::string& site) { return lost_.count(site) > 0; });
}

Status RoundEngine::WaitForSites(std::vector<std::string>* cohort) {
  absl::Time deadline = options_.clock->Now() + options_.wait_for_sites;
  absl::Time next_log = options_.clock->Now() + absl::Seconds(10);
  for (;;) {
    absl::Time now = options_.clock->Now();
    *cohort = members_.Active(now, options_.site_idle);
    cohort->erase(std::remove_if(cohort->begin(), cohort->end(),
                                 [&](const std::string& site) { return lost_.count(site) > 0; }),
                  cohort->end());
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
    changed_.WaitWithDeadline(
        &mu_, options_.clock->WaitDeadline(std::min(deadline, now + absl::Seconds(1))));
  }
}

void RoundEngine::ClosePhase(const std::string& why) {
  uploads_.CancelAll(why);
  pending_.clear();
  payloads_.clear();
  phase_ = Phase::kIdle;
  changed_.SignalAll();
}

void RoundEngine::BeginPlan(int64_t round, const std::vector<std::string>& cohort) {
  if (options_.status) options_.status->PlanOpened(round, cohort, options_.clock->Now());
  ++attempt_;
  ++round_attempt_;
  bytes_up_ = 0;
  bytes_down_ = 0;
  uploads_.ClearCommitted();
  consent_.clear();
  plan_sha256_.clear();
  RoundPlanInputs in;
  in.basics = PlanBasicsOf(round, cohort);
  // A retry trains from another seed (TrainingSeed): a new contribution.
  in.attempt = static_cast<uint32_t>(round_attempt_);
  in.training = &options_.training;
  in.secure = options_.secure.enabled;
  if (statistics_step_) {
    // Moments, not training: no privacy mechanism applies and no budget is spent.
    in.statistics_features = static_cast<uint32_t>(options_.standardization.features);
  } else {
    in.privacy = privacy_->client_plan();
    in.record_privacy = privacy_->record_plan();
  }
  plan_ = MakeRoundPlan(in);
}

PlanBasics RoundEngine::PlanBasicsOf(int64_t round, const std::vector<std::string>& cohort) const {
  PlanBasics b;
  b.round = static_cast<uint64_t>(round);
  b.model_name = options_.model;
  b.global_model_sha256 = global_.sha256;
  b.global_model_bytes = global_.payload.size();
  b.cohort = &cohort;
  b.chunk_bytes = options_.chunk_bytes;
  b.task = &options_.task;
  b.standardization = standardization_ ? &*standardization_ : nullptr;
  b.study = &options_.study;
  return b;
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
  if (options_.status) options_.status->StageBegan(StageName(phase), options_.clock->Now());
  changed_.SignalAll();
  bool all = WaitUntil(deadline, [&] { return OnlyLostPending(); });
  if (shutdown_) return absl::CancelledError("coordinator shutting down");
  if (!all) {
    spdlog::warn("round {}: no answer in time from {} ({})", plan_.round(),
                 absl::StrJoin(pending_, ", "), v1::Task::Kind_Name(StageTaskKind(phase)));
  }
  return RecordDropouts(phase);
}

// ---------------------------------------------------------------------------------------------
// Driver: training rounds

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
  // The sum's memory goes as the mean is formed; the aggregator goes with this function.
  ASSIGN_OR_RETURN(std::vector<float> mean, result->TakeWeightedMean());
  if (privacy_->client_level()) {
    // Central Gaussian: noise on the sum of the clipped updates, then the plain mean.
    const DdgParams& ddg = privacy_->ddg();
    const double n = static_cast<double>(result->committed());
    CryptoUniformSource csprng;
    std::optional<SeededUniformSource> seeded;
    if (!options_.privacy.central_noise_seed.empty()) {
      seeded.emplace(absl::StrCat(options_.privacy.central_noise_seed, " round ", plan_.round(),
                                  " attempt ", plan_.attempt()));
    }
    UniformSource& source = seeded ? static_cast<UniformSource&>(*seeded) : csprng;
    // In blocks of an even length, so the noise is drawn in pairs exactly as over the whole
    // vector, without a double-precision copy of the model.
    constexpr size_t kBlock = size_t{1} << 16;
    std::vector<double> sum;
    for (size_t lo = 0; lo < mean.size(); lo += kBlock) {
      const size_t count = std::min(kBlock, mean.size() - lo);
      sum.assign(mean.begin() + static_cast<std::ptrdiff_t>(lo),
                 mean.begin() + static_cast<std::ptrdiff_t>(lo + count));
      for (double& x : sum) x *= n;
      RETURN_IF_ERROR(AddCentralGaussianNoise(sum, ddg.clip_norm, ddg.noise_multiplier, source));
      for (size_t i = 0; i < count; ++i) mean[lo + i] = static_cast<float>(sum[i] / n);
    }
  }
  RETURN_IF_ERROR(SpendPrivacy());
  return std::optional<std::vector<float>>(std::move(mean));
}

StatusOr<std::optional<std::vector<float>>> RoundEngine::SecureAttempt(
    const std::vector<std::string>& cohort) {
  SecureAttemptInput in;
  // The moments: each site's sums with weight 1, on their own clip and quantization.
  SecureOptions moments = options_.secure;
  moments.clip = statistics_clip_;
  moments.bits = options_.standardization.bits;
  moments.max_examples = 1;
  in.keep_sum = statistics_step_;
  in.options = statistics_step_ ? &moments : &options_.secure;
  in.cohort = &cohort;
  if (options_.secure.malicious) {
    for (const auto& site : cohort) in.certificates.push_back(members_.Certificate(site));
  }
  in.model_values = static_cast<size_t>(global_.layout.TotalElements());
  in.minimum_sum = MinimumSum();
  in.ddg = privacy_->client_level() && !statistics_step_ ? &privacy_->ddg() : nullptr;
  in.upload_timeout = options_.upload_timeout;
  ASSIGN_OR_RETURN(std::optional<SecureMean> sum, secure_.Attempt(in, &plan_, *this));
  if (!sum) return std::optional<std::vector<float>>();
  secure_examples_ = sum->examples;
  if (statistics_step_) statistics_sum_ = std::move(sum->sum);
  return std::optional<std::vector<float>>(std::move(sum->mean));
}

int RoundEngine::MinimumSum() const {
  int minimum = options_.min_sites;
  if (privacy_->client_level()) {
    minimum = std::max(minimum, static_cast<int>(privacy_->ddg().min_survivors));
  }
  return minimum;
}

StatusOr<std::vector<float>> RoundEngine::AggregateRound(int64_t round) {
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
  for (int64_t planned = 0; planned < options_.max_attempts; ++planned) {
    std::vector<std::string> cohort;
    if (Status waited = WaitForSites(&cohort); !waited.ok()) {
      // Too few sites came back (after a dropout or a restart): the round ends on record, as
      // when its attempts run out, rather than with an audit log that stops mid-round.
      if (absl::IsDeadlineExceeded(waited)) {
        RETURN_IF_ERROR(Record(RoundAbandoned(round, planned, std::string(waited.message()))));
      }
      return waited;
    }
    BeginPlan(round, cohort);
    RETURN_IF_ERROR(store_->Put(attempts_key, std::to_string(round_attempt_)));
    spdlog::info("round {} (attempt {}): {} sites: {}", round, round_attempt_, cohort.size(),
                 absl::StrJoin(cohort, ", "));
    StatusOr<std::optional<std::vector<float>>> mean;
    if (options_.secure.enabled) {
      mean = SecureAttempt(cohort);
    } else {
      absl::Time deadline = options_.clock->Now() + options_.upload_timeout;
      SetUploadDeadline(deadline, &plan_);
      mean = PlaintextAttempt(deadline);
    }
    if (!mean.ok()) return mean.status();
    if (mean->has_value()) return **std::move(mean);
  }
  std::string why = absl::StrCat("round ", round, " got no aggregate in ", options_.max_attempts,
                                 " attempts (rounds.max_attempts = ", options_.max_attempts,
                                 "); training stops. Check that at least ", MinimumSum(),
                                 " sites stay connected through a round, or raise the timeouts");
  RETURN_IF_ERROR(Record(RoundAbandoned(round, options_.max_attempts, why)));
  return absl::ResourceExhaustedError(why);
}

Status RoundEngine::RunTrainingRound(int64_t round) {
  absl::Time started = options_.clock->Now();
  Model mean;
  PublishedModel global;  // the payload shared with global_, not copied
  RoundRecord record;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(mean.values, AggregateRound(round));
    for (const auto& [site, header] : uploads_.committed()) {
      record.sites.push_back(site);
      record.examples += static_cast<int64_t>(header.num_examples());
    }
    if (options_.secure.enabled) record.examples = secure_examples_;
    record.bytes_up = bytes_up_;
    record.bytes_down = bytes_down_;
    global = global_;
  }
  // Server step: the strategy (FedAvg: global + server_lr * mean) on the sites' mean delta,
  // reading the global model from its payload and writing the next one into the mean's own
  // buffer: the aggregate's sum is gone by now, so the step holds the payload and the mean.
  RETURN_IF_ERROR(Annotate(global.layout.CheckSameAs(strategy_->model_layout()),
                           absl::StrCat("global model before round ", round)));
  mean.layout = strategy_->UpdateLayout();
  RoundInfo info{round, static_cast<int>(record.sites.size()),
                 static_cast<int>(options_.allowed_sites.size())};
  StatusOr<Model> next = strategy_->ApplyToMean(global.values(), std::move(mean), info);
  global.payload.EvictAll();  // read through: a mapped payload's pages go back to its file
  if (!next.ok()) {
    return Annotate(next.status(),
                    absl::StrCat("server step of round ", round, "; refusing to publish it"));
  }
  Status valid = next->Validate();
  if (!valid.ok()) {
    return Annotate(valid, absl::StrCat("aggregate of round ", round,
                                        " is not finite; refusing to publish it"));
  }
  // Consumed as it is encoded: the old payload (still served until the new one is published),
  // the next model's values and the new payload stay near two model sizes together.
  PublishedModel published = checkpoints_.Encode(round, *std::move(next));
  global = PublishedModel();  // global_ (and a download in progress) may still hold it
  record.seconds = absl::ToDoubleSeconds(options_.clock->Now() - started);
  RETURN_IF_ERROR(PublishModel(round, std::move(published), record));
  spdlog::info("round {}: aggregated {} updates ({} examples) in {:.1f} s", round,
               record.sites.size(), record.examples, record.seconds);
  return absl::OkStatus();
}

StatusOr<v1::Standardization> RoundEngine::PoolMoments(double clip,
                                                       std::vector<std::string>* sites) {
  const int64_t features = options_.standardization.features;
  // The sites download a zero "model" of the moments' size and send their moments as its
  // update; the global model waits.
  Model zeros;
  zeros.layout = ModelLayout({{"feature_moments", DType::kF32, {MomentValues(features)}}});
  zeros.values.assign(static_cast<size_t>(MomentValues(features)), 0.0f);
  PublishedModel model = std::move(global_);
  global_ = checkpoints_.Encode(0, std::move(zeros));
  statistics_step_ = true;
  statistics_clip_ = clip;
  StatusOr<std::vector<float>> pooled = AggregateRound(0);
  sites->clear();
  for (const auto& [site, header] : uploads_.committed()) sites->push_back(site);
  statistics_step_ = false;
  global_ = std::move(model);
  RETURN_IF_ERROR(pooled.status());
  StatusOr<v1::Standardization> out = PooledStandardization(statistics_sum_, features);
  statistics_sum_.clear();
  return out;
}

Status RoundEngine::RunStandardization() {
  const int64_t features = options_.standardization.features;
  absl::MutexLock lock(&mu_);
  spdlog::info("pooled standardisation of {} features: the sites send their moments", features);
  std::vector<std::string> sites;
  ASSIGN_OR_RETURN(v1::Standardization standardization,
                   PoolMoments(options_.standardization.clip, &sites));
  nlohmann::json fields = {{"features", features},
                           {"examples", standardization.examples()},
                           {"sites", sites},
                           {"mean", standardization.mean()},
                           {"std", standardization.std()}};
  RETURN_IF_ERROR(Record(AuditEvent{"standardization_pooled", fields}));
  RETURN_IF_ERROR(store_->Put(kStandardizationKey, fields.dump()));
  spdlog::info("pooled standardisation over {} rows of {} sites", standardization.examples(),
               sites.size());
  standardization_ = std::move(standardization);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Driver: evaluation and the run

Status RoundEngine::RunEvaluation(int64_t round) {
  absl::Time started = options_.clock->Now();
  nlohmann::ordered_json line;
  {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> cohort;
    RETURN_IF_ERROR(WaitForSites(&cohort));
    reports_.clear();
    evaluation_declined_.clear();
    plan_ = MakeEvaluationPlan(PlanBasicsOf(round, cohort));
    pending_ = std::set<std::string>(cohort.begin(), cohort.end());
    phase_ = Phase::kEvaluate;
    if (options_.status)
      options_.status->StageBegan(StageName(Phase::kEvaluate), options_.clock->Now());
    changed_.SignalAll();
    absl::Time deadline = options_.clock->Now() + options_.evaluate_timeout;
    WaitUntil(deadline, [&] { return OnlyLostPending(); });
    if (shutdown_) {
      ClosePhase("coordinator shutting down");
      return absl::CancelledError("coordinator shutting down");
    }
    if (!pending_.empty()) {
      spdlog::warn("round {}: no evaluation from {}", round, absl::StrJoin(pending_, ", "));
      if (round > 0) RETURN_IF_ERROR(RecordDropouts(Phase::kEvaluate));
    }
    ClosePhase("evaluation deadline passed");
    line = MetricsLine({round, &last_record_, &reports_, bytes_down_,
                        absl::ToDoubleSeconds(options_.clock->Now() - started), global_.sha256,
                        &privacy_->accounts()});
    bytes_down_ = 0;
  }
  if (options_.status) {
    const auto figure = [&line](const char* key) {
      auto it = line.find(key);
      return it != line.end() && it->is_number() ? it->get<double>()
                                                 : std::numeric_limits<double>::quiet_NaN();
    };
    options_.status->RoundEvaluated(round, figure("accuracy"), figure("loss"));
    options_.status->StageBegan(StageName(Phase::kIdle), options_.clock->Now());
  }
  const std::string text = line.dump();
  RETURN_IF_ERROR(store_->RecordMetrics(round, text));
  {
    absl::MutexLock lock(&mu_);
    last_record_.metrics_json = text;
  }
  // The file was made whole from the store when the run started; this round adds its line.
  return AppendMetricsLine(options_.state_dir, text);
}

Status RoundEngine::Run() {
  Status run = RunRounds();
  absl::MutexLock lock(&mu_);
  return storage_error_.ok() ? run : storage_error_;
}

void RoundEngine::StopOnStorageError(const Status& error) {
  absl::MutexLock lock(&mu_);
  if (storage_error_.ok()) {
    storage_error_ = Annotate(error, "the coordinator stops: its state cannot be written");
  }
  shutdown_ = true;
  changed_.SignalAll();
}

Status RoundEngine::RunRounds() {
  RETURN_IF_ERROR(WriteMetricsFile(*store_, options_.state_dir));
  for (;;) {
    int64_t round;
    bool evaluated;
    {
      absl::MutexLock lock(&mu_);
      round = completed_round_;
      evaluated = last_record_.metrics_json.has_value();
      if (shutdown_) return absl::CancelledError("coordinator shutting down");
    }
    if (round == 0 && options_.standardization.features > 0) {
      bool pooled;
      {
        absl::MutexLock lock(&mu_);
        pooled = standardization_.has_value();
      }
      if (!pooled) RETURN_IF_ERROR(RunStandardization());
    }
    if (!evaluated) {
      RETURN_IF_ERROR(RunEvaluation(round));
      continue;
    }
    if (round >= options_.rounds) break;
    if (Status fits = privacy_->NextRoundFits(); !fits.ok()) {
      spdlog::warn("privacy budget: {}; training stops after round {}", fits.message(), round);
      break;
    }
    RETURN_IF_ERROR(RunTrainingRound(round + 1));
  }
  {
    absl::MutexLock close(&close_mu_);
    RETURN_IF_ERROR(Record(FederationFinished(options_.rounds)));
    closed_ = true;
  }
  if (options_.status) options_.status->StageBegan(StageName(Phase::kDone), options_.clock->Now());
  absl::MutexLock lock(&mu_);
  phase_ = Phase::kDone;
  changed_.SignalAll();
  spdlog::info("federation finished: {} rounds", options_.rounds);
  return absl::OkStatus();
}

}  // namespace hansa

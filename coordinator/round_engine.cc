#include "coordinator/round_engine.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/fileio/fileio.h"
#include "common/logging/logging.h"
#include "nlohmann/json.hpp"
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
  if (contribution_) contribution_->Abort();
}

void UploadSink::Cancel(const std::string& why) {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  if (contribution_) contribution_->Abort();
  contribution_.reset();
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
  return Annotate(decoder_->Feed(data), absl::StrCat("update from ", site_));
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
    RETURN_IF_ERROR(Annotate(decoder_->Finish(), absl::StrCat("update from ", site_)));
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
// RoundEngine

RoundEngine::RoundEngine(EngineOptions options) : options_(std::move(options)) {}

RoundEngine::~RoundEngine() = default;

StatusOr<std::unique_ptr<RoundEngine>> RoundEngine::Create(const EngineOptions& options,
                                                           const Model& initial) {
  if (options.min_sites < 1) return absl::InvalidArgumentError("min_sites must be at least 1");
  std::unique_ptr<RoundEngine> engine(new RoundEngine(options));
  RETURN_IF_ERROR(MakeDirs(options.state_dir));
  RETURN_IF_ERROR(MakeDirs(options.state_dir + "/checkpoints"));
  ASSIGN_OR_RETURN(engine->store_, StateStore::Open(options.state_dir + "/state.db"));
  RETURN_IF_ERROR(engine->Resume(initial));
  return engine;
}

std::string RoundEngine::CheckpointPath(int64_t round) const {
  return absl::StrFormat("%s/checkpoints/round-%04d.safetensors", options_.state_dir, round);
}

Status RoundEngine::Resume(const Model& initial) {
  ASSIGN_OR_RETURN(std::optional<RoundRecord> last, store_->LastRound());
  if (!last) {
    RETURN_IF_ERROR(initial.Validate());
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
  const auto& allowed = options_.allowed_sites;
  if (std::find(allowed.begin(), allowed.end(), site.name) == allowed.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "site '", site.name, "' is not part of federation '", options_.federation,
        "'; the federation operator must add it to [sites] allowed in coordinator.toml"));
  }
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
    if ((phase_ == Phase::kTrain || phase_ == Phase::kEvaluate) && pending_.count(site)) {
      task.set_kind(phase_ == Phase::kTrain ? v1::Task::TRAIN : v1::Task::EVALUATE);
      *task.mutable_plan() = plan_;
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
  if (phase_ != Phase::kTrain || header.round() != plan_.round()) {
    return absl::FailedPreconditionError(absl::StrCat("no upload for round ", header.round(),
                                                      " is expected now; ask for a new task"));
  }
  if (uploads_.count(site)) {
    return absl::AlreadyExistsError(absl::StrCat("site '", site,
                                                 "' already uploaded its update for round ",
                                                 plan_.round(), " (replayed upload refused)"));
  }
  if (pending_.count(site) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("site '", site, "' is not in the cohort of round ", plan_.round()));
  }
  if (header.num_examples() == 0 ||
      header.num_examples() > static_cast<uint64_t>(options_.max_examples)) {
    return absl::InvalidArgumentError(
        absl::StrCat("update header claims ", header.num_examples(), " examples"));
  }
  uint64_t max_bytes = payload_->size() + (64 << 10);
  if (header.total_bytes() == 0 || header.total_bytes() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("update of ", header.total_bytes(),
                                                   " bytes announced; the global model is ",
                                                   payload_->size(), " bytes"));
  }
  if (!Sha256FromHex(header.sha256()).ok()) {
    return absl::InvalidArgumentError("update header has no valid SHA-256");
  }
  std::unique_ptr<UploadSink> sink(new UploadSink(this, site, plan_.round(), attempt_, header));
  ASSIGN_OR_RETURN(auto contribution,
                   aggregator_->Begin(site, static_cast<double>(header.num_examples())));
  ModelLayout expected = global_.layout;
  UploadSink* raw = sink.get();
  absl::MutexLock sink_lock(&raw->mu_);
  raw->contribution_ = std::move(contribution);
  raw->decoder_ = std::make_unique<SafetensorsStreamDecoder>(
      [expected](const ModelLayout& layout, const TensorMetadata&) {
        return Annotate(layout.CheckSameAs(expected),
                        "update does not match the global model's tensors");
      },
      [raw](int64_t first, const uint8_t* bytes, size_t count) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return raw->contribution_->Fold(first, reinterpret_cast<const float*>(bytes), count);
      },
      SafetensorsLimits{.max_header_bytes = 1 << 20,
                        .max_tensors = expected.size(),
                        .max_data_bytes = static_cast<uint64_t>(expected.TotalElements()) * 4});
  sinks_.insert(raw);
  return sink;
}

Status RoundEngine::CommitUpload(UploadSink* sink, uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  absl::MutexLock sink_lock(&sink->mu_);
  RETURN_IF_ERROR(sink->cancelled_);
  if (phase_ != Phase::kTrain || attempt_ != sink->attempt_ || !sink->contribution_) {
    return absl::DeadlineExceededError(
        absl::StrCat("round ", sink->round_, " closed before the upload finished"));
  }
  RETURN_IF_ERROR(sink->contribution_->Commit());
  sink->contribution_.reset();
  sink->finished_ = true;
  uploads_[sink->site_] = sink->header_;
  pending_.erase(sink->site_);
  bytes_up_ += static_cast<int64_t>(bytes);
  spdlog::info("round {}: update from {} ({} bytes, {} examples)", sink->round_, sink->site_, bytes,
               sink->header_.num_examples());
  changed_.SignalAll();
  return absl::OkStatus();
}

void RoundEngine::Unregister(UploadSink* sink) {
  absl::MutexLock lock(&mu_);
  sinks_.erase(sink);
}

Status RoundEngine::ReportMetrics(const std::string& site, const v1::MetricsReport& report) {
  absl::MutexLock lock(&mu_);
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
  phase_ = Phase::kIdle;
  changed_.SignalAll();
}

Status RoundEngine::RunTrainingRound(int64_t round) {
  absl::Time started = absl::Now();
  std::unique_ptr<StreamingAggregator> result;
  std::vector<std::string> contributors;
  int64_t examples = 0;
  {
    absl::MutexLock lock(&mu_);
    for (int64_t attempt = 1;; ++attempt) {
      std::vector<std::string> cohort;
      RETURN_IF_ERROR(WaitForSites(&cohort));
      ++attempt_;
      bytes_up_ = 0;
      bytes_down_ = 0;
      uploads_.clear();
      aggregator_ = std::make_unique<StreamingAggregator>(
          global_.layout.TotalElements(), absl::StrCat(options_.state_dir, "/spill"));
      plan_.Clear();
      plan_.set_round(round);
      plan_.set_model_name(options_.model);
      plan_.set_global_model_sha256(payload_sha256_);
      plan_.set_global_model_bytes(payload_->size());
      *plan_.mutable_training() = options_.training;
      plan_.mutable_training()->set_seed(options_.training.seed() * 1000003 + round);
      for (const auto& s : cohort) plan_.add_cohort(s);
      plan_.set_chunk_bytes(options_.chunk_bytes);
      absl::Time deadline = absl::Now() + options_.upload_timeout;
      plan_.set_upload_deadline_unix_ms(absl::ToUnixMillis(deadline));
      plan_.set_aggregation("plaintext");
      pending_ = std::set<std::string>(cohort.begin(), cohort.end());
      phase_ = Phase::kTrain;
      changed_.SignalAll();
      spdlog::info("round {} (attempt {}): training with {} sites: {}", round, attempt,
                   cohort.size(), absl::StrJoin(cohort, ", "));

      bool all = WaitUntil(deadline, [&] { return pending_.empty(); });
      if (shutdown_) {
        ClosePhase("coordinator shutting down");
        return absl::CancelledError("coordinator shutting down");
      }
      if (!all) {
        spdlog::warn("round {}: upload deadline passed; left out: {}", round,
                     absl::StrJoin(pending_, ", "));
      }
      ClosePhase(absl::StrCat("round ", round, " upload deadline passed"));
      int committed = aggregator_->committed();
      if (committed >= options_.min_sites) {
        result = std::move(aggregator_);
        for (const auto& [site, header] : uploads_) {
          contributors.push_back(site);
          examples += static_cast<int64_t>(header.num_examples());
        }
        break;
      }
      spdlog::warn("round {}: only {} of min_sites = {} updates arrived; retrying the round", round,
                   committed, options_.min_sites);
      aggregator_.reset();
    }
  }
  // Server step: FedAvg of the sites' deltas, scaled by the server learning rate.
  ASSIGN_OR_RETURN(std::vector<float> mean_delta, result->WeightedMean());
  Model next;
  RoundRecord record;
  {
    absl::MutexLock lock(&mu_);
    next = global_;
    record.bytes_up = bytes_up_;
    record.bytes_down = bytes_down_;
  }
  const float lr = static_cast<float>(options_.server_learning_rate);
  for (size_t i = 0; i < next.values.size(); ++i) next.values[i] += lr * mean_delta[i];
  Status valid = next.Validate();
  if (!valid.ok()) {
    return Annotate(valid, absl::StrCat("aggregate of round ", round,
                                        " is not finite; refusing to publish it"));
  }
  record.sites = contributors;
  record.examples = examples;
  record.seconds = absl::ToDoubleSeconds(absl::Now() - started);
  RETURN_IF_ERROR(PublishModel(round, std::move(next), record));
  spdlog::info("round {}: aggregated {} updates ({} examples) in {:.1f} s", round,
               contributors.size(), examples, record.seconds);
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
    RETURN_IF_ERROR(RunTrainingRound(round + 1));
  }
  absl::MutexLock lock(&mu_);
  phase_ = Phase::kDone;
  changed_.SignalAll();
  spdlog::info("federation finished: {} rounds", options_.rounds);
  return absl::OkStatus();
}

}  // namespace hansa

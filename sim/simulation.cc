#include "sim/simulation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/link/engine_link.h"
#include "common/config/config.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/model/models.h"
#include "common/partition/random.h"
#include "common/plan/plan_writer.h"
#include "common/privacy/accounts.h"
#include "common/privacy/central_gaussian.h"
#include "common/privacy/rdp.h"
#include "common/privacy/uniform_source.h"
#include "common/secagg/client.h"
#include "common/tensor/safetensors.h"
#include "coordinator/federation_status.h"
#include "coordinator/round_engine.h"
#include "coordinator/round_metrics.h"
#include "nlohmann/json.hpp"
#include "sim/loopback.h"
#include "sim/svg_plot.h"
#include "sim/virtual_site.h"
#include "sim/workers.h"

namespace hansa {
namespace {
// `live`: the sites still in the run (a lost worker's are not admitted).
EngineOptions OneRoundEngine(const SimulationConfig& config, const std::string& dir,
                             const std::vector<VirtualSite>& sites, const std::vector<bool>& live,
                             int64_t round) {
  EngineOptions o;
  o.federation = "simulation";
  o.state_dir = dir;
  o.model = config.model;
  if (IsScriptModelName(config.model)) {
    o.task.set_kind(std::string(TaskKindName(config.task.kind)));
    o.task.set_loss(std::string(LossName(config.task.loss)));
    o.task.set_buffers(std::string(BuffersName(config.task.buffers)));
  }
  for (size_t i = 0; i < sites.size(); ++i) {
    if (live[i]) o.allowed_sites.push_back(sites[i].name);
  }
  o.allowed_countries = {kSimulatedCountry};
  o.rounds = 1;
  o.min_sites = config.MinSites();
  o.wait_for_sites = absl::Minutes(5);
  o.upload_timeout = absl::Hours(72);
  o.evaluate_timeout = absl::Minutes(10);
  o.site_idle = absl::Hours(72);
  o.training.set_epochs(static_cast<uint32_t>(config.training.epochs));
  o.training.set_batch_size(static_cast<uint32_t>(config.training.batch_size));
  o.training.set_learning_rate(config.training.learning_rate);
  o.training.set_momentum(config.training.momentum);
  o.training.set_weight_decay(config.training.weight_decay);
  o.training.set_seed(config.seed);
  o.secure = config.secure;
  if (config.client_privacy.enabled) {
    // The engine adds the noise and averages unweighted; the simulator keeps the account over
    // rounds (each round's engine is fresh), so the engine's own budget never binds.
    o.privacy.enabled = true;
    o.privacy.mechanism = "central_gaussian";
    o.privacy.clip_norm = config.client_privacy.clip_norm;
    o.privacy.noise_multiplier = config.client_privacy.noise_multiplier;
    o.privacy.budget = {1e300, config.client_privacy.delta};
    // The noise repeats by the run's seed, as the rest of a simulated run does.
    o.privacy.central_noise_seed = absl::StrCat("hansa simulate central noise ",
                                                Mix(config.seed, kCentralNoiseSeed), " ", round);
  }
  return o;
}

struct RoundOutcome {
  Model mean;  // the engine's example-weighted mean update (UpdateLayout)
  uint64_t bytes_up = 0, bytes_down = 0;
};

// A run's federation of certificates, made when its sites need them: over gRPC (transport
// "grpc": one server and one connection per site for the whole run, as deployed sites stay
// connected across rounds, pointed at each round's engine in turn), or for malicious-mode
// SecAgg+, where each site signs with its certificate's key.
struct LoopbackRun {
  std::unique_ptr<LoopbackFederation> federation;
  bool serve = false;                            // transport "grpc"
  std::unique_ptr<RemoteSites> remote;           // workers: the other ranks' sites
  std::unique_ptr<LoopbackServer> server;        // started with the first round's engine
  std::vector<std::unique_ptr<SiteLink>> links;  // destroyed before the server

  // The sites this process runs: [first, first + count).
  std::pair<int, int> Local(int sites) const {
    return remote ? remote->local() : std::make_pair(0, sites);
  }
};

// Ends a round's turn of the loopback server before the round's engine goes: after a good
// round the server only forgets the engine (every call has returned); after a failed one a
// call may still be inside the engine, so the server shuts down (waiting for its handlers) and
// the run, which fails anyway, loses its connections.
struct LoopbackTurn {
  LoopbackRun* run = nullptr;
  bool round_ok = false;
  ~LoopbackTurn() {
    if (!run || !run->server) return;
    if (round_ok) {
      run->server->Retarget(nullptr);
    } else {
      run->links.clear();
      run->server.reset();
    }
  }
};

// The round's links for the sites run here (`local`): in process into `engine`, or the
// loopback run's gRPC connections, made at the first round and pointed at each round's engine.
// With workers the server runs whatever the transport: the other ranks' sites connect to it.
StatusOr<std::vector<SiteLink*>> RoundLinks(RoundEngine* engine, LoopbackRun* loopback,
                                            const std::vector<VirtualSite>& sites,
                                            std::pair<int, int> local,
                                            std::vector<std::unique_ptr<SiteLink>>* in_process) {
  std::vector<SiteLink*> links;
  if (loopback && (loopback->serve || loopback->remote)) {
    if (!loopback->server) {
      ASSIGN_OR_RETURN(loopback->server,
                       loopback->federation->Serve(
                           engine, loopback->remote ? loopback->remote->listen() : "127.0.0.1:0"));
      for (int i = local.first; loopback->serve && i < local.first + local.second; ++i) {
        ASSIGN_OR_RETURN(auto link, loopback->federation->Connect(i, *loopback->server));
        loopback->links.push_back(std::move(link));
      }
      if (loopback->remote) RETURN_IF_ERROR(loopback->remote->Publish(*loopback->server));
    } else {
      loopback->server->Retarget(engine);
    }
  }
  if (loopback && loopback->serve) {
    for (const auto& link : loopback->links) links.push_back(link.get());
    return links;
  }
  for (int i = local.first; i < local.first + local.second; ++i) {
    SiteIdentity id;
    id.name = sites[i].name;
    id.organisation = "simulation";
    id.country = kSimulatedCountry;
    id.fingerprint = std::string(16, '0');
    // What the gRPC service would take from the TLS handshake.
    if (loopback) id.certificate_pem = loopback->federation->site_tls(i).certificate_pem;
    in_process->push_back(EngineSiteLink(engine, id));
    links.push_back(in_process->back().get());
  }
  return links;
}

// With min_sites below the sites still in the run, the engine would plan as soon as min_sites
// had joined: the round waits until every live site has (or the round ends, or 5 minutes
// pass: the engine's own wait then decides), so the cohort is the same every run.
void AwaitJoins(const FederationStatusBoard& board, const RoundEngine& engine, RemoteSites* remote,
                const std::vector<VirtualSite>& sites) {
  const auto deadline = SimClock::now() + std::chrono::minutes(5);
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    const FederationStatus status = board.Snapshot();
    bool all = true;
    for (size_t i = 0; i < sites.size() && all; ++i) {
      all = status.sites.count(sites[i].name) > 0 ||
            (remote != nullptr && !remote->Live(static_cast<int>(i)));
    }
    if (all || engine.shutting_down() || SimClock::now() > deadline) return;
    if (remote != nullptr && !remote->Check().ok()) return;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(5));
  }
}

// Which sites' updates are in the round's aggregate: those whose upload the engine committed
// in the round's last attempt (a site that dropped out is not). A lost worker's sites that
// did not report get the bytes the engine received from them.
void MarkParticipants(const FederationStatusBoard& board, std::vector<VirtualSite>* sites) {
  const FederationStatus status = board.Snapshot();
  for (VirtualSite& s : *sites) {
    auto it = status.sites.find(s.name);
    s.took_part = it != status.sites.end() && it->second.round_uploaded;
    if (!s.reported && it != status.sites.end()) {
      s.bytes_up = static_cast<uint64_t>(it->second.round_upload_bytes);
    }
  }
}

// Runs one round through a fresh one-round engine holding `extended` (the model and the
// strategy's broadcast tensors) and returns the engine's aggregate.
StatusOr<RoundOutcome> RunEngineRound(const SimulationConfig& config, const Strategy& strategy,
                                      SimulationBackend* backend, SlotPool* pool, int64_t round,
                                      const Model& extended, const std::string& dir,
                                      LoopbackRun* loopback, std::vector<VirtualSite>* sites) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  RemoteSites* remote = loopback ? loopback->remote.get() : nullptr;
  std::vector<bool> live(sites->size(), true);
  int live_count = 0;
  for (size_t i = 0; i < sites->size(); ++i) {
    VirtualSite& s = (*sites)[i];
    live[i] = remote == nullptr || remote->Live(static_cast<int>(i));
    live_count += live[i] ? 1 : 0;
    s.took_part = true;
    s.reported = true;
  }
  EngineOptions options = OneRoundEngine(config, dir, *sites, live, round);
  // Only where a site may drop out: who took part is then the engine's to say.
  std::shared_ptr<FederationStatusBoard> board;
  if (config.MinSites() < static_cast<int>(sites->size())) {
    board = std::make_shared<FederationStatusBoard>();
    options.status = board;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<RoundEngine> engine, RoundEngine::Create(options, extended));
  LoopbackTurn loopback_turn{loopback};  // destroyed before the engine
  std::vector<std::unique_ptr<SiteLink>> in_process;
  RoundSites round_sites;
  round_sites.engine = engine.get();
  const std::pair<int, int> local = loopback ? loopback->Local(static_cast<int>(sites->size()))
                                             : std::make_pair(0, static_cast<int>(sites->size()));
  ASSIGN_OR_RETURN(round_sites.links,
                   RoundLinks(engine.get(), loopback, *sites, local, &in_process));
  if (remote) RETURN_IF_ERROR(remote->StartRound(round, engine.get(), &round_sites));
  round_sites.backend = backend;
  round_sites.strategy = &strategy;
  round_sites.config = &config;
  round_sites.round = round;
  round_sites.pool = pool;
  if (config.secure.malicious) {
    for (size_t i = 0; i < sites->size(); ++i) {
      round_sites.tls.push_back(loopback->federation->site_tls(static_cast<int>(i)));
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SiteThreads> threads, SiteThreads::Start(round_sites, sites));
  if (board && config.MinSites() < live_count) AwaitJoins(*board, *engine, remote, *sites);
  Status run = engine->Run();
  if (!run.ok()) threads->Abandon();
  const Status joined = threads->Join();
  // A worker's failure first: it is why the engine or the sites here stopped.
  if (remote) {
    RETURN_IF_ERROR(Annotate(remote->FinishRound(round, sites), absl::StrCat("round ", round)));
  }
  RETURN_IF_ERROR(joined);
  RETURN_IF_ERROR(Annotate(run, absl::StrCat("round ", round)));
  loopback_turn.round_ok = true;
  if (board) MarkParticipants(*board, sites);
  ASSIGN_OR_RETURN(Model published, engine->global_model());
  RoundOutcome out;
  out.mean.layout = extended.layout;
  out.mean.values.resize(extended.values.size());
  for (size_t i = 0; i < extended.values.size(); ++i) {
    out.mean.values[i] = published.values[i] - extended.values[i];
  }
  const uint64_t model_bytes =
      EncodeSafetensorsHeader(extended.layout, {}).size() + extended.values.size() * sizeof(float);
  for (const VirtualSite& s : *sites) {
    if (!s.took_part) continue;
    out.bytes_up += s.bytes_up;
    out.bytes_down += model_bytes;
  }
  std::filesystem::remove_all(dir, ec);
  return out;
}

// The model followed by what the strategy broadcasts (SCAFFOLD's c) or zeros for its other
// extra tensors (FedNova's coefficient), in UpdateLayout() order.
Model Extend(const Model& global, const Strategy& strategy) {
  Model out;
  out.layout = strategy.UpdateLayout();
  out.values = global.values;
  out.values.resize(out.layout.TotalElements(), 0.0f);
  if (auto c = strategy.ServerBroadcast()) {
    std::copy(c->values.begin(), c->values.end(), out.values.begin() + global.values.size());
  }
  return out;
}

Status WritePartitionCsv(const std::string& path, const Partition& p,
                         const std::vector<uint8_t>& labels, int classes) {
  auto counts = ClassCounts(p, labels, classes);
  std::string text = "site,examples,noise_std";
  for (int c = 0; c < classes; ++c) absl::StrAppend(&text, ",class_", c);
  text += "\n";
  for (size_t s = 0; s < counts.size(); ++s) {
    absl::StrAppend(&text, s, ",", p.sites[s].size(), ",", p.noise_std[s]);
    for (int64_t v : counts[s]) absl::StrAppend(&text, ",", v);
    text += "\n";
  }
  return WriteFileAtomically(path, text);
}

nlohmann::ordered_json ConfigJson(const SimulationConfig& c) {
  nlohmann::ordered_json j;
  j["model"] = c.model;
  if (!c.script_file.empty()) {
    j["model_file"] = c.script_file;
    j["task"] = {{"kind", TaskKindName(c.task.kind)},
                 {"loss", LossName(c.task.loss)},
                 {"buffers", BuffersName(c.task.buffers)}};
  }
  j["sites"] = c.sites;
  j["rounds"] = c.rounds;
  j["partition"] = c.PartitionName();
  j["strategy"] = c.strategy.Label();
  j["seed"] = c.seed;
  j["pool"] = c.pool;
  j["transport"] = TransportName(c.transport);
  if (c.min_sites > 0) j["min_sites"] = c.min_sites;
  j["training"] = {{"epochs", c.training.epochs},
                   {"batch_size", c.training.batch_size},
                   {"learning_rate", c.training.learning_rate},
                   {"momentum", c.training.momentum},
                   {"weight_decay", c.training.weight_decay}};
  if (c.client_privacy.enabled) {
    j["client_privacy"] = {{"mechanism", "central_gaussian"},
                           {"clip_norm", c.client_privacy.clip_norm},
                           {"noise_multiplier", c.client_privacy.noise_multiplier},
                           {"delta", c.client_privacy.delta}};
  }
  if (c.record_privacy.enabled) {
    const RecordPrivacyOptions& r = c.record_privacy;
    j["record_privacy"] = {
        {"clip_norm", r.clip_norm},         {"noise_multiplier", r.noise_multiplier},
        {"sampling_rate", r.sampling_rate}, {"steps_per_round", r.steps},
        {"epsilon", r.budget.epsilon},      {"delta", r.budget.delta}};
  }
  return j;
}

}  // namespace

const char* TransportName(Transport transport) {
  return transport == Transport::kGrpc ? "grpc" : "in-process";
}

std::string SimulationConfig::PartitionName() const {
  return site_rows.empty() && !one_file_per_site ? partition.Name() : "files";
}

std::string SimulationConfig::Label() const {
  return absl::StrCat(strategy.Label(), " / ", PartitionName(), " / seed ", seed);
}

StatusOr<Model> SimulationBackend::StartingModel(const SimulationConfig& config) {
  return InitialModel(config.model, config.seed);
}

Status SimulationBackend::Standardize(const std::vector<std::vector<int64_t>>&, int64_t features,
                                      FeatureMoments*) {
  if (features == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "pooled standardisation needs rows of features; this backend has none");
}

namespace {

// One file per site: site i holds the next site_rows[i] examples of the training set.
StatusOr<Partition> FilePartition(const SimulationConfig& config, int64_t examples) {
  Partition p;
  int64_t next = 0;
  for (int64_t rows : config.site_rows) {
    std::vector<int64_t> site(static_cast<size_t>(rows));
    for (int64_t& i : site) i = next++;
    p.sites.push_back(std::move(site));
    p.noise_std.push_back(0);
  }
  if (next != examples || p.num_sites() != config.sites) {
    return absl::InvalidArgumentError(absl::StrCat("one file per site: ", config.site_rows.size(),
                                                   " files of ", next,
                                                   " rows in all, but the run has ", config.sites,
                                                   " sites and ", examples, " training examples"));
  }
  return p;
}

// The run's virtual sites over `config`'s partition of the training labels, or one file per
// site (written to partition.csv).
StatusOr<std::vector<VirtualSite>> MakeSites(const SimulationConfig& config,
                                             const std::vector<uint8_t>& train_labels,
                                             const std::string& run_dir) {
  StatusOr<Partition> made = config.site_rows.empty()
                                 ? MakePartition(train_labels, config.classes, config.sites,
                                                 config.partition, Mix(config.seed, kPartitionSeed))
                                 : FilePartition(config, static_cast<int64_t>(train_labels.size()));
  RETURN_IF_ERROR(made.status());
  Partition& partition = *made;
  if (!run_dir.empty()) {
    RETURN_IF_ERROR(
        WritePartitionCsv(run_dir + "/partition.csv", partition, train_labels, config.classes));
  }
  std::vector<VirtualSite> sites(partition.num_sites());
  for (int i = 0; i < partition.num_sites(); ++i) {
    sites[i].name = absl::StrFormat("site-%03d", i);
    sites[i].indices = std::move(partition.sites[i]);
    sites[i].noise_std = partition.noise_std[i];
    sites[i].noise_seed = Mix(Mix(config.seed, kNoiseSeed), static_cast<uint64_t>(i));
  }
  return sites;
}

// What a run cannot simulate faithfully, refused before it starts.
Status CheckRunnable(const SimulationConfig& config, const Strategy& strategy) {
  RETURN_IF_ERROR(CheckStrategyCompatible(config.strategy, config.secure.enabled));
  if (config.task.buffers == Buffers::kLocal) {
    // Virtual sites share a pool of trainers, so a module's buffers would pass between sites.
    return absl::UnimplementedError(
        "model.buffers = \"local\" is not simulated: the virtual sites share trainers, and "
        "with them a model's buffers; use \"average\"");
  }
  if (config.secure.enabled && config.client_privacy.enabled) {
    return absl::InvalidArgumentError(
        "simulated client-level privacy (the central Gaussian) needs plaintext aggregation");
  }
  if (config.client_privacy.enabled && strategy.needs_individual_updates()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy '", config.strategy.name,
        "' looks at every site's update, which client-level privacy does not protect; use a "
        "strategy that needs only the noisy mean"));
  }
  return absl::OkStatus();
}

// Pooled standardisation (config.standardize_features) from the sites' feature moments: the
// pooled mean and std, written to run.json as a deployment's audit log records them; null
// without it.
StatusOr<nlohmann::ordered_json> StandardizeSites(const SimulationConfig& config,
                                                  const std::vector<VirtualSite>& sites,
                                                  SimulationBackend* backend) {
  std::vector<std::vector<int64_t>> indices;
  for (const VirtualSite& s : sites) indices.push_back(s.indices);
  FeatureMoments pooled;
  RETURN_IF_ERROR(Annotate(backend->Standardize(indices, config.standardize_features, &pooled),
                           "pooled standardisation"));
  if (config.standardize_features == 0) return nlohmann::ordered_json();
  std::vector<double> mean, std;
  RETURN_IF_ERROR(pooled.MeanAndStd(&mean, &std));
  return nlohmann::ordered_json{{"rows", pooled.count}, {"mean", mean}, {"std", std}};
}

// run.json: the resolved run and, once it has finished (`result` given), "complete": true and
// its result. Written last, it is the mark that the run is done (RunComplete).
Status WriteRunJson(const SimulationConfig& config, const std::vector<VirtualSite>& sites,
                    const nlohmann::ordered_json& standardization, const RunResult* result,
                    const std::string& run_dir) {
  nlohmann::ordered_json run = ConfigJson(config);
  run["sites_examples"] = nlohmann::json::array();
  for (const VirtualSite& s : sites) run["sites_examples"].push_back(s.indices.size());
  if (!standardization.is_null()) run["standardization"] = standardization;
  if (result != nullptr && !result->lost_workers.empty()) {
    run["lost_workers"] = result->lost_workers;
  }
  run["complete"] = result != nullptr;
  if (result != nullptr) {
    run["result"] = {{"best_accuracy", result->best_accuracy},
                     {"final_accuracy", result->final_accuracy},
                     {"seconds", result->seconds}};
  }
  return WriteFileAtomically(run_dir + "/run.json", run.dump(2) + "\n");
}

// `config` with record-level privacy resolved into the trainer's DP-SGD settings, as a deployed
// plan would carry them.
StatusOr<SimulationConfig> WithRecordPrivacy(const SimulationConfig& config) {
  SimulationConfig run = config;
  if (config.record_privacy.enabled) {
    ASSIGN_OR_RETURN(
        RecordPrivacyParams p,
        ResolveRecordPrivacy(config.record_privacy, config.training.epochs, config.rounds));
    run.training.dp.clip_norm = p.clip_norm;
    run.training.dp.noise_multiplier = p.noise_multiplier;
    run.training.dp.sampling_rate = p.sampling_rate;
    run.training.dp.steps = p.steps;
  }
  return run;
}

// The run's privacy accounts, kept as a deployed coordinator keeps its own (PrivacyAccounts,
// ledgers in the run's folder): each round is priced from the plan a deployment would announce
// and booked, and the metrics carry the epsilon spent so far. Without privacy: no ledger.
class RunPrivacy {
 public:
  static StatusOr<RunPrivacy> Open(const SimulationConfig& run, int64_t dimension,
                                   const std::string& run_dir) {
    // No budget of the simulator's own: the record-level one was met when the noise was chosen
    // (ResolveRecordPrivacy), the client-level one is what the metrics report.
    constexpr double kUnbounded = 1e300;
    PrivacyAccounts::Options options;
    v1::RoundPlan plan;
    if (run.client_privacy.enabled) {
      const ClientPrivacyOptions& c = run.client_privacy;
      DdgParams params;
      params.dimension = dimension;
      params.clip_norm = c.clip_norm;
      params.noise_multiplier = c.noise_multiplier;
      SetPrivacyPlan(params, c.delta, plan.mutable_privacy(), kCentralGaussian);
      options.client =
          PrivacyAccounts::LedgerSpec{run_dir + "/privacy.json", {kUnbounded, c.delta}};
    }
    if (run.training.dp.enabled()) {
      const RecordDpSettings& dp = run.training.dp;
      RecordPrivacyParams params{dp.clip_norm, dp.noise_multiplier, dp.sampling_rate, dp.steps,
                                 run.record_privacy.budget.delta};
      SetRecordPrivacyPlan(params, plan.mutable_record_privacy());
      options.record =
          PrivacyAccounts::LedgerSpec{run_dir + "/record_privacy.json", {kUnbounded, params.delta}};
    }
    // A run starts its ledgers afresh, also in a folder an earlier run wrote.
    for (const auto& spec : {options.client, options.record}) {
      if (spec) std::filesystem::remove(spec->path);
    }
    ASSIGN_OR_RETURN(PrivacyAccounts accounts, PrivacyAccounts::Open(options));
    ASSIGN_OR_RETURN(RoundPrivacyCost cost, PrivacyAccounts::Price(plan, dimension));
    return RunPrivacy(std::move(accounts), std::move(cost));
  }

  // Books round `m->round` and puts the epsilons spent so far into `m`.
  Status Book(RoundMetrics* m) {
    RETURN_IF_ERROR(accounts_.Book(m->round, 1, cost_, [](const AuditEvent&) {
      return absl::OkStatus();  // a simulation keeps no audit log
    }));
    if (accounts_.client() != nullptr) m->client_epsilon = accounts_.client()->Spent().epsilon;
    if (accounts_.record() != nullptr) m->record_epsilon = accounts_.record()->Spent().epsilon;
    return absl::OkStatus();
  }

 private:
  RunPrivacy(PrivacyAccounts accounts, RoundPrivacyCost cost)
      : accounts_(std::move(accounts)), cost_(std::move(cost)) {}
  PrivacyAccounts accounts_;
  RoundPrivacyCost cost_;  // every round costs the same
};

// The central evaluation's counts (confusion matrix, score histograms, regression sums), checked
// as the coordinator checks a site's.
StatusOr<EvaluationCounts> CountsOf(const EvalResult& eval) {
  StatusOr<EvaluationCounts> counts =
      EvaluationCounts::Of(eval.num_examples, eval.classes, eval.confusion, eval.positive_scores,
                           eval.negative_scores, eval.regression);
  if (!counts.ok()) return Annotate(counts.status(), "the test set's evaluation");
  return counts;
}

// One line of metrics.jsonl; the clinical figures are written as the coordinator writes them.
nlohmann::ordered_json MetricsLine(const SimulationConfig& run, const RoundMetrics& m,
                                   const EvalResult& eval, const EvaluationCounts& counts,
                                   const RoundOutcome& outcome,
                                   const std::vector<VirtualSite>& sites) {
  nlohmann::ordered_json line;
  double train_seconds = 0;
  int64_t examples = 0;
  nlohmann::ordered_json per_site = nlohmann::ordered_json::object();
  std::vector<std::string> dropped;
  size_t took_part = 0;
  for (const VirtualSite& s : sites) {
    if (!s.took_part) {
      dropped.push_back(s.name);
      continue;
    }
    ++took_part;
    examples += static_cast<int64_t>(s.indices.size());
    if (!s.reported) {  // its worker was lost before it told its figures
      per_site[s.name] = {{"examples", s.indices.size()}, {"reported", false}};
      continue;
    }
    train_seconds += s.result.seconds;
    per_site[s.name] = {{"examples", s.indices.size()},
                        {"train_loss", s.result.loss},
                        {"steps", s.result.steps},
                        {"seconds", s.result.seconds}};
  }
  line["round"] = m.round;
  line["sites"] = took_part;
  line["accuracy"] = eval.accuracy;
  line["loss"] = eval.loss;
  WriteClinicalMetrics(counts, &line);
  line["seconds"] = m.seconds;
  line["train_seconds"] = train_seconds;
  line["evaluation_seconds"] = eval.seconds;
  line["bytes_up"] = outcome.bytes_up;
  line["bytes_down"] = outcome.bytes_down;
  line["examples"] = examples;
  line["evaluated_on"] = eval.num_examples;
  if (run.training.dp.enabled()) {
    line["record_epsilon"] = m.record_epsilon;
    line["record_delta"] = run.record_privacy.budget.delta;
  }
  if (run.client_privacy.enabled) {
    line["epsilon"] = m.client_epsilon;
    line["delta"] = run.client_privacy.delta;
  }
  line["per_site"] = per_site;
  if (!dropped.empty()) line["dropped"] = dropped;  // sites whose update is not in the round
  return line;
}

// The strategy's server step on the round's outcome: the next global model.
StatusOr<Model> ServerStep(Strategy& strategy, const Model& global, int64_t round,
                           const RoundOutcome& outcome, const std::vector<VirtualSite>& sites) {
  const auto took_part =
      std::count_if(sites.begin(), sites.end(), [](const VirtualSite& s) { return s.took_part; });
  const RoundInfo info{round, static_cast<int>(took_part), static_cast<int>(sites.size())};
  if (!strategy.needs_individual_updates()) return strategy.Apply(global, outcome.mean, info);
  std::vector<WeightedUpdate> updates;
  for (const VirtualSite& s : sites) {
    updates.push_back({&s.update, static_cast<double>(s.indices.size())});
  }
  return strategy.ApplyIndividual(global, updates, info);
}

// final.safetensors, strategy.safetensors and the run's accuracy and loss plots.
Status WriteRunOutputs(const SimulationConfig& config, const RunResult& result, const Model& global,
                       const Strategy& strategy, const std::string& run_dir) {
  RETURN_IF_ERROR(WriteSafetensorsFile(run_dir + "/final.safetensors", global,
                                       {{"model", config.model}, {"run", config.Label()}}));
  RETURN_IF_ERROR(strategy.SaveState(run_dir + "/strategy.safetensors"));
  PlotSpec acc{absl::StrCat("accuracy: ", config.Label()), "round", "test accuracy", {}};
  PlotSpec loss{absl::StrCat("loss: ", config.Label()), "round", "test loss", {}};
  PlotSeries a{config.strategy.Label(), {}}, l{config.strategy.Label(), {}};
  for (const RoundMetrics& m : result.rounds) {
    a.y.push_back(m.accuracy);
    l.y.push_back(m.loss);
  }
  acc.series.push_back(a);
  loss.series.push_back(l);
  RETURN_IF_ERROR(WriteFileAtomically(run_dir + "/accuracy.svg", LinePlotSvg(acc)));
  return WriteFileAtomically(run_dir + "/loss.svg", LinePlotSvg(loss));
}

}  // namespace

StatusOr<PreparedRun> PrepareRun(const SimulationConfig& config,
                                 const std::vector<uint8_t>& train_labels,
                                 SimulationBackend* backend, const std::string& run_dir) {
  PreparedRun p;
  ASSIGN_OR_RETURN(p.sites, MakeSites(config, train_labels, run_dir));
  ASSIGN_OR_RETURN(p.global, backend->StartingModel(config));
  ASSIGN_OR_RETURN(p.strategy, Strategy::Create(config.strategy, p.global.layout));
  RETURN_IF_ERROR(CheckRunnable(config, *p.strategy));
  ASSIGN_OR_RETURN(p.standardization, StandardizeSites(config, p.sites, backend));
  ASSIGN_OR_RETURN(p.run, WithRecordPrivacy(config));
  return p;
}

StatusOr<RunResult> RunSimulation(const SimulationConfig& config,
                                  const std::vector<uint8_t>& train_labels,
                                  SimulationBackend* backend, const std::string& run_dir,
                                  const ProgressFn& progress, CellWorkers* workers) {
  const auto started = SimClock::now();
  if (config.sites < 1 || config.rounds < 1 || config.pool < 1) {
    return absl::InvalidArgumentError(absl::StrCat("simulation needs sites, rounds and pool >= 1 (",
                                                   config.sites, ", ", config.rounds, ", ",
                                                   config.pool, ")"));
  }
  RETURN_IF_ERROR(MakeDirs(run_dir));
  ASSIGN_OR_RETURN(PreparedRun prepared, PrepareRun(config, train_labels, backend, run_dir));
  std::vector<VirtualSite>& sites = prepared.sites;
  Model& global = prepared.global;
  Strategy* strategy = prepared.strategy.get();
  const SimulationConfig& run = prepared.run;
  RETURN_IF_ERROR(WriteRunJson(config, sites, prepared.standardization, nullptr, run_dir));
  std::unique_ptr<LoopbackRun> loopback;
  if (config.transport == Transport::kGrpc || config.secure.malicious || workers != nullptr) {
    std::vector<std::string> names;
    for (const VirtualSite& s : sites) names.push_back(s.name);
    loopback = std::make_unique<LoopbackRun>();
    loopback->serve = config.transport == Transport::kGrpc;
    ASSIGN_OR_RETURN(loopback->federation, LoopbackFederation::Create(names, kSimulatedCountry));
    if (workers != nullptr) {
      ASSIGN_OR_RETURN(loopback->remote, RemoteSites::Start(workers, config, *strategy,
                                                            *loopback->federation, names));
    }
  }
  ASSIGN_OR_RETURN(RunPrivacy privacy,
                   RunPrivacy::Open(run, global.layout.TotalElements(), run_dir));
  SlotPool pool(config.pool);
  RunResult result;
  result.config = config;
  std::string metrics;
  for (int64_t round = 1; round <= config.rounds; ++round) {
    const auto round_start = SimClock::now();
    const Model extended = Extend(global, *strategy);
    ASSIGN_OR_RETURN(RoundOutcome outcome,
                     RunEngineRound(run, *strategy, backend, &pool, round, extended,
                                    run_dir + "/engine", loopback.get(), &sites));
    ASSIGN_OR_RETURN(global, ServerStep(*strategy, global, round, outcome, sites));
    ASSIGN_OR_RETURN(EvalResult eval, backend->Evaluate(0, global));
    ASSIGN_OR_RETURN(const EvaluationCounts counts, CountsOf(eval));
    RoundMetrics m{round, eval.accuracy, eval.loss, SecondsSince(round_start)};
    RETURN_IF_ERROR(privacy.Book(&m));
    result.rounds.push_back(m);
    absl::StrAppend(&metrics, MetricsLine(run, m, eval, counts, outcome, sites).dump(), "\n");
    RETURN_IF_ERROR(WriteFileAtomically(run_dir + "/metrics.jsonl", metrics));
    if (progress) {
      Progress p;
      p.label = config.Label();
      p.round = round;
      p.rounds = config.rounds;
      p.accuracy = eval.accuracy;
      p.elapsed_seconds = SecondsSince(started);
      p.remaining_seconds = p.elapsed_seconds / static_cast<double>(round) *
                            static_cast<double>(config.rounds - round);
      progress(p);
    }
  }
  result.seconds = SecondsSince(started);
  for (const RoundMetrics& m : result.rounds) {
    result.best_accuracy = std::max(result.best_accuracy, m.accuracy);
  }
  result.final_accuracy = result.rounds.back().accuracy;
  if (loopback && loopback->remote) result.lost_workers = loopback->remote->LostWorkers();
  RETURN_IF_ERROR(WriteRunOutputs(config, result, global, *strategy, run_dir));
  RETURN_IF_ERROR(WriteRunJson(config, sites, prepared.standardization, &result, run_dir));
  result.final_model = std::move(global);
  return result;
}

namespace {

StatusOr<nlohmann::json> ReadRunJson(const std::string& run_dir) {
  ASSIGN_OR_RETURN(const std::string text, ReadFile(run_dir + "/run.json", size_t{64} << 20));
  nlohmann::json run = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!run.is_object()) {
    return absl::DataLossError(absl::StrCat(run_dir, "/run.json is not a JSON object"));
  }
  return run;
}

// A number of a parsed JSON object, or DataLoss naming the file and key.
StatusOr<double> Number(const nlohmann::json& object, const char* key, const std::string& file) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number()) {
    return absl::DataLossError(absl::StrCat(file, " has no number '", key, "'"));
  }
  return it->get<double>();
}

}  // namespace

bool RunComplete(const std::string& run_dir) {
  StatusOr<nlohmann::json> run = ReadRunJson(run_dir);
  if (!run.ok()) return false;
  auto it = run->find("complete");
  return it != run->end() && it->is_boolean() && it->get<bool>();
}

StatusOr<RunResult> LoadRunResult(const SimulationConfig& config, const std::string& run_dir) {
  ASSIGN_OR_RETURN(const nlohmann::json run, ReadRunJson(run_dir));
  const std::string run_json = run_dir + "/run.json";
  auto complete = run.find("complete");
  if (complete == run.end() || !complete->is_boolean() || !complete->get<bool>()) {
    return absl::FailedPreconditionError(
        absl::StrCat(run_dir, " holds no finished run (its run.json is not \"complete\")"));
  }
  auto result_json = run.find("result");
  if (result_json == run.end() || !result_json->is_object()) {
    return absl::DataLossError(absl::StrCat(run_json, " is complete but has no result"));
  }
  RunResult result;
  result.config = config;
  ASSIGN_OR_RETURN(result.best_accuracy, Number(*result_json, "best_accuracy", run_json));
  ASSIGN_OR_RETURN(result.final_accuracy, Number(*result_json, "final_accuracy", run_json));
  ASSIGN_OR_RETURN(result.seconds, Number(*result_json, "seconds", run_json));
  const std::string metrics_file = run_dir + "/metrics.jsonl";
  ASSIGN_OR_RETURN(const std::string metrics, ReadFile(metrics_file, size_t{1} << 30));
  size_t start = 0;
  while (start < metrics.size()) {
    size_t end = metrics.find('\n', start);
    if (end == std::string::npos) end = metrics.size();
    const nlohmann::json line =
        nlohmann::json::parse(metrics.begin() + start, metrics.begin() + end, nullptr, false);
    const std::string where = absl::StrCat(metrics_file, " line ", result.rounds.size() + 1);
    if (!line.is_object()) return absl::DataLossError(absl::StrCat(where, " is not JSON"));
    RoundMetrics m;
    ASSIGN_OR_RETURN(const double round, Number(line, "round", where));
    m.round = static_cast<int64_t>(round);
    ASSIGN_OR_RETURN(m.accuracy, Number(line, "accuracy", where));
    ASSIGN_OR_RETURN(m.loss, Number(line, "loss", where));
    ASSIGN_OR_RETURN(m.seconds, Number(line, "seconds", where));
    if (line.contains("record_epsilon")) {
      ASSIGN_OR_RETURN(m.record_epsilon, Number(line, "record_epsilon", where));
    }
    if (line.contains("epsilon")) {
      ASSIGN_OR_RETURN(m.client_epsilon, Number(line, "epsilon", where));
    }
    if (m.round != static_cast<int64_t>(result.rounds.size()) + 1) {
      return absl::DataLossError(absl::StrCat(where, " is round ", m.round));
    }
    result.rounds.push_back(m);
    start = end + 1;
  }
  if (static_cast<int64_t>(result.rounds.size()) != config.rounds) {
    return absl::DataLossError(absl::StrCat(metrics_file, " has ", result.rounds.size(),
                                            " rounds; the run has ", config.rounds));
  }
  return result;
}

}  // namespace hansa

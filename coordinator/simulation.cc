#include "coordinator/simulation.h"

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
#include "client/models.h"
#include "common/config/config.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/partition/random.h"
#include "common/privacy/central_gaussian.h"
#include "common/privacy/rdp.h"
#include "common/privacy/uniform_source.h"
#include "common/secagg/client.h"
#include "common/tensor/safetensors.h"
#include "coordinator/round_engine.h"
#include "coordinator/site_link.h"
#include "coordinator/svg_plot.h"
#include "nlohmann/json.hpp"
#include "proto/secagg_plan.h"

namespace hansa {
namespace {

// Virtual sites have no certificate; they all carry this pseudo-jurisdiction.
constexpr char kSimulatedCountry[] = "EU";

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Independent streams derived from the run's seed, one per purpose.
uint64_t Mix(uint64_t a, uint64_t b) {
  PortableRandom r(a ^ (0x9e3779b97f4a7c15ull * (b + 1)));
  r.Next();
  return r.Next();
}

// What a virtual site's draws (shuffling, rounding, DP-SGD noise) are keyed by: the round, and
// for a retry also its attempt, so that a retry is a new contribution and never the update
// the site may already have sent (the first attempt keeps the round, so runs repeat as before).
uint64_t DrawKey(int64_t round, const v1::RoundPlan& plan) {
  const auto r = static_cast<uint64_t>(round);
  return plan.attempt() > 1 ? Mix(r, plan.attempt()) : r;
}
enum SeedPurpose : uint64_t {
  kPartitionSeed = 1,
  kShuffleSeed = 2,
  kNoiseSeed = 3,
  kDpSeed = 4,
  kRoundingSeed = 5,
};

std::string SafeName(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_';
    out += ok ? c : '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

std::string Fixed(double v, int digits = 4) { return absl::StrFormat("%.*f", digits, v); }

// ---------------------------------------------------------------------------------------------
// Torch backend

class TorchBackend : public SimulationBackend {
 public:
  TorchBackend(const Dataset* train, const Dataset* test) : train_(train), test_(test) {}
  std::vector<std::unique_ptr<Trainer>> trainers;

  StatusOr<Model> Train(int slot, const Model& start, const std::vector<int64_t>& indices,
                        const TrainSettings& settings, TrainResult* result) override {
    Trainer* t = trainers.at(slot).get();
    ASSIGN_OR_RETURN(Dataset data, Subset(*train_, indices));
    RETURN_IF_ERROR(t->SetWeights(start));
    ASSIGN_OR_RETURN(*result, t->Train(data, settings));
    return t->GetWeights();
  }
  StatusOr<EvalResult> Evaluate(int slot, const Model& model) override {
    Trainer* t = trainers.at(slot).get();
    RETURN_IF_ERROR(t->SetWeights(model));
    return t->Evaluate(*test_);
  }

 private:
  const Dataset* train_;
  const Dataset* test_;
};

// ---------------------------------------------------------------------------------------------
// One round: a one-round RoundEngine and the virtual sites as threads driving it.

// Hands out at most `size` trainer slots at a time.
class SlotPool {
 public:
  explicit SlotPool(int size) {
    for (int i = size - 1; i >= 0; --i) free_.push_back(i);
  }
  int Acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !free_.empty(); });
    int slot = free_.back();
    free_.pop_back();
    return slot;
  }
  void Release(int slot) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(slot);
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> free_;
};

// Sites upload in index order, so the engine sums in the same order every run.
class UploadTurn {
 public:
  // False when the round was abandoned while waiting.
  bool Wait(int site) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return next_ == site || abandoned_; });
    return !abandoned_;
  }
  void Done() {
    std::lock_guard<std::mutex> lock(mu_);
    ++next_;
    cv_.notify_all();
  }
  void Abandon() {
    std::lock_guard<std::mutex> lock(mu_);
    abandoned_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int next_ = 0;
  bool abandoned_ = false;
};

struct VirtualSite {
  std::string name;
  std::vector<int64_t> indices;
  double noise_std = 0;
  uint64_t noise_seed = 0;
  std::vector<float> control;  // SCAFFOLD c_i, kept across rounds
  // This round's outcome.
  TrainResult result;
  std::vector<float> update;  // kept only for aggregators that need individual updates
  uint64_t bytes_up = 0;
  std::unique_ptr<ClientSession> secagg;  // this round's SecAgg+ session (secure runs)
};

struct RoundContext {
  RoundEngine* engine = nullptr;
  std::vector<SiteLink*> links;  // one per site, in site order
  SimulationBackend* backend = nullptr;
  const Strategy* strategy = nullptr;
  const SimulationConfig* config = nullptr;
  int64_t round = 0;
  SlotPool* pool = nullptr;
  UploadTurn turn;
  std::mutex mu;
  Status first_error;  // guarded by mu
};

// A secure run's upload: the update encoded (rounding seeded from the run's seed) and masked
// by the site's session, as MaskedInputChunks under their header (MaskedUploadHeader).
StatusOr<std::vector<std::string>> MaskedUpload(const RoundContext& ctx, int index,
                                                VirtualSite* site, const v1::RoundPlan& plan,
                                                const std::vector<float>& update,
                                                v1::TransferHeader* header) {
  const std::string label =
      absl::StrCat("hansa simulate rounding ", Mix(ctx.config->seed, kRoundingSeed), " ",
                   DrawKey(ctx.round, plan), " ", index);
  const Sha256Digest digest = Sha256(label);
  const SecretBytes rounding_seed(std::string(digest.begin(), digest.end()));
  ASSIGN_OR_RETURN(std::vector<std::string> chunks,
                   MaskUpdateForPlan(plan, *site->secagg, update,
                                     static_cast<int64_t>(site->indices.size()), &rounding_seed));
  header->MergeFrom(MaskedUploadHeader(plan.round(), chunks));
  return chunks;
}

Status TrainAndUpload(RoundContext* ctx, int index, VirtualSite* site, const v1::Task& task) {
  const v1::RoundPlan& plan = task.plan();
  const SimulationConfig& config = *ctx->config;
  if (config.secure.enabled) {
    if (!site->secagg) return absl::FailedPreconditionError("training task before key sharing");
    ASSIGN_OR_RETURN(ShareDelivery delivery, ShareDelivery::Parse(task.payload()));
    RETURN_IF_ERROR(Annotate(site->secagg->OnShareDelivery(delivery), site->name));
  }
  const Strategy& strategy = *ctx->strategy;
  SiteLink* link = ctx->links[index];
  ASSIGN_OR_RETURN(auto payload, link->Download(plan));
  ASSIGN_OR_RETURN(Model extended, DecodeSafetensors(*payload));
  const ModelLayout& layout = strategy.model_layout();
  const size_t n = static_cast<size_t>(layout.TotalElements());
  Model global;
  global.layout = layout;
  global.values.assign(extended.values.begin(), extended.values.begin() + n);
  const ClientRecipe recipe = strategy.recipe();

  TrainSettings s = config.training;
  s.seed = Mix(Mix(config.seed, kShuffleSeed), DrawKey(ctx->round, plan) * 1000003 + index);
  s.input_noise_std = site->noise_std;
  s.noise_seed = site->noise_seed;
  s.proximal_mu = recipe.proximal_mu;
  if (s.dp.enabled()) {
    s.dp.randomness = std::make_shared<SeededUniformSource>(
        absl::StrCat("hansa simulate dp-sgd ", Mix(config.seed, kDpSeed), " ",
                     DrawKey(ctx->round, plan), " ", index));
  }
  std::vector<float> server_c;
  if (recipe.scaffold) {
    server_c.assign(extended.values.begin() + n, extended.values.begin() + 2 * n);
    if (site->control.empty()) site->control.assign(n, 0.0f);
    auto correction = std::make_shared<std::vector<float>>(n);
    for (size_t i = 0; i < n; ++i) (*correction)[i] = server_c[i] - site->control[i];
    s.scaffold_correction = std::move(correction);
  }
  const int slot = ctx->pool->Acquire();
  StatusOr<Model> local = ctx->backend->Train(slot, global, site->indices, s, &site->result);
  ctx->pool->Release(slot);
  RETURN_IF_ERROR(Annotate(local.status(), absl::StrCat(site->name, " training")));

  std::vector<float> update(extended.values.size(), 0.0f);
  for (size_t i = 0; i < n; ++i) update[i] = local->values[i] - global.values[i];
  if (recipe.scaffold) {
    std::vector<float> delta_c = ScaffoldControlDelta(server_c, global.values, local->values,
                                                      site->result.steps, s.learning_rate);
    for (size_t i = 0; i < n; ++i) {
      update[n + i] = delta_c[i];
      site->control[i] += delta_c[i];
    }
  }
  if (recipe.fednova) {
    const double a = FedNovaCoefficient(site->result.steps, s.momentum);
    for (size_t i = 0; i < n; ++i) update[i] = static_cast<float>(update[i] / a);
    update[n] = static_cast<float>(a / kFedNovaScale);
  }
  if (config.client_privacy.enabled) {
    // As a deployed site does: the engine refuses updates longer than the clip norm.
    ClipUpdateForCentralGaussian(update, config.client_privacy.clip_norm);
  }
  Model delta;
  delta.layout = extended.layout;
  delta.values = std::move(update);
  RETURN_IF_ERROR(Annotate(delta.Validate(), absl::StrCat(site->name, " update")));
  if (strategy.needs_individual_updates()) site->update = delta.values;
  v1::TransferHeader header;
  header.set_round(plan.round());
  header.set_train_loss(site->result.loss);
  header.set_train_seconds(site->result.seconds);
  // The wire pieces: safetensors cut to the plan's chunk size, or the masked chunks.
  std::vector<std::string> pieces;
  if (config.secure.enabled) {
    ASSIGN_OR_RETURN(pieces, MaskedUpload(*ctx, index, site, plan, delta.values, &header));
  } else {
    const std::string bytes = EncodeSafetensors(delta);
    header.set_num_examples(static_cast<uint64_t>(site->indices.size()));
    header.set_total_bytes(bytes.size());
    header.set_sha256(ToHex(Sha256(bytes)));
    const size_t step = plan.chunk_bytes() ? plan.chunk_bytes() : (1 << 20);
    for (size_t off = 0; off < bytes.size(); off += step) pieces.push_back(bytes.substr(off, step));
  }

  if (!ctx->turn.Wait(index)) return absl::CancelledError("round abandoned");
  Status st = [&]() -> Status {
    // A secure site accepted the plan when it advertised its keys.
    if (!config.secure.enabled) RETURN_IF_ERROR(link->Accept(plan));
    return link->Upload(header, pieces);
  }();
  ctx->turn.Done();
  site->bytes_up = header.total_bytes();
  return Annotate(st, absl::StrCat(site->name, " upload"));
}

// The SecAgg+ stages of a virtual site, as hansa-client answers them.
Status SecAggStage(RoundContext* ctx, int index, VirtualSite* site, const v1::Task& task) {
  const v1::RoundPlan& plan = task.plan();
  SiteLink* link = ctx->links[index];
  v1::SecAggSubmission m;
  m.set_round(plan.round());
  m.set_stage(task.kind());
  switch (task.kind()) {
    case v1::Task::SECAGG_ADVERTISE: {
      RETURN_IF_ERROR(link->Accept(plan));
      uint32_t self = 0;
      ASSIGN_OR_RETURN(SecAggParams params, SecAggParamsOfPlan(plan, site->name, &self));
      ASSIGN_OR_RETURN(site->secagg, ClientSession::Create(params, self, nullptr));
      ASSIGN_OR_RETURN(AdvertiseKeys keys, site->secagg->Start());
      m.set_payload(keys.Serialize());
      break;
    }
    case v1::Task::SECAGG_SHARE: {
      if (!site->secagg) return absl::FailedPreconditionError("key directory before advertising");
      ASSIGN_OR_RETURN(KeyDirectory directory, KeyDirectory::Parse(task.payload()));
      ASSIGN_OR_RETURN(ShareKeys shares, site->secagg->OnKeyDirectory(directory));
      m.set_payload(shares.Serialize());
      break;
    }
    case v1::Task::SECAGG_UNMASK: {
      if (!site->secagg) return absl::FailedPreconditionError("unmask request before uploading");
      ASSIGN_OR_RETURN(UnmaskRequest request, UnmaskRequest::Parse(task.payload()));
      ASSIGN_OR_RETURN(UnmaskResponse response, site->secagg->OnUnmaskRequest(request));
      site->secagg.reset();
      m.set_payload(response.Serialize());
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("stage ", v1::Task::Kind_Name(task.kind()), " is not simulated"));
  }
  return Annotate(link->SubmitSecAgg(m),
                  absl::StrCat(site->name, " ", v1::Task::Kind_Name(task.kind())));
}

void SiteLoop(RoundContext* ctx, int index, VirtualSite* site) {
  auto fail = [&](const Status& st) {
    {
      std::lock_guard<std::mutex> lock(ctx->mu);
      if (ctx->first_error.ok()) ctx->first_error = st;
    }
    ctx->turn.Abandon();
    ctx->engine->Shutdown();
  };
  SiteLink* link = ctx->links[index];
  if (Status join = link->Join(); !join.ok()) return fail(Annotate(join, site->name));
  for (;;) {
    auto task = link->NextTask(absl::Milliseconds(250));
    if (!task.ok()) return fail(Annotate(task.status(), site->name));
    {
      std::lock_guard<std::mutex> lock(ctx->mu);
      if (!ctx->first_error.ok()) return;
    }
    switch (task->kind()) {
      case v1::Task::DONE:
        return;
      case v1::Task::TRAIN: {
        Status st = TrainAndUpload(ctx, index, site, *task);
        if (!st.ok()) return fail(st);
        break;
      }
      case v1::Task::SECAGG_ADVERTISE:
      case v1::Task::SECAGG_SHARE:
      case v1::Task::SECAGG_CONSISTENCY:
      case v1::Task::SECAGG_UNMASK: {
        Status st = SecAggStage(ctx, index, site, *task);
        if (!st.ok()) return fail(st);
        break;
      }
      case v1::Task::EVALUATE: {
        // The simulator evaluates centrally; the engine's own evaluation gets a placeholder.
        v1::MetricsReport r;
        r.set_round(task->plan().round());
        r.set_num_examples(1);
        r.set_accuracy(0);
        r.set_loss(0);
        Status st = link->ReportMetrics(r);
        if (!st.ok() && !absl::IsAlreadyExists(st) && !absl::IsFailedPrecondition(st)) {
          return fail(st);
        }
        break;
      }
      default:
        break;  // WAIT
    }
  }
}

EngineOptions OneRoundEngine(const SimulationConfig& config, const std::string& dir,
                             const std::vector<VirtualSite>& sites) {
  EngineOptions o;
  o.federation = "simulation";
  o.state_dir = dir;
  o.model = config.model;
  for (const VirtualSite& s : sites) o.allowed_sites.push_back(s.name);
  o.allowed_countries = {kSimulatedCountry};
  o.rounds = 1;
  o.min_sites = static_cast<int>(sites.size());
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
  }
  return o;
}

struct RoundOutcome {
  Model mean;  // the engine's example-weighted mean update (UpdateLayout)
  uint64_t bytes_up = 0, bytes_down = 0;
};

// A loopback run's gRPC side: one server and one connection per site for the whole run (as
// deployed sites stay connected across rounds), pointed at each round's engine in turn.
struct LoopbackRun {
  std::unique_ptr<LoopbackFederation> federation;
  std::unique_ptr<LoopbackServer> server;        // started with the first round's engine
  std::vector<std::unique_ptr<SiteLink>> links;  // destroyed before the server
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

// Runs one round through a fresh one-round engine holding `extended` (the model and the
// strategy's broadcast tensors) and returns the engine's aggregate.
StatusOr<RoundOutcome> RunEngineRound(const SimulationConfig& config, const Strategy& strategy,
                                      SimulationBackend* backend, SlotPool* pool, int64_t round,
                                      const Model& extended, const std::string& dir,
                                      LoopbackRun* loopback, std::vector<VirtualSite>* sites) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  ASSIGN_OR_RETURN(std::unique_ptr<RoundEngine> engine,
                   RoundEngine::Create(OneRoundEngine(config, dir, *sites), extended));
  LoopbackTurn loopback_turn{loopback};  // destroyed before the engine
  RoundContext ctx;
  ctx.engine = engine.get();
  std::vector<std::unique_ptr<SiteLink>> in_process;
  if (!loopback) {
    for (const VirtualSite& s : *sites) {
      SiteIdentity id;
      id.name = s.name;
      id.organisation = "simulation";
      id.country = kSimulatedCountry;
      id.fingerprint = std::string(16, '0');
      in_process.push_back(EngineSiteLink(engine.get(), id));
      ctx.links.push_back(in_process.back().get());
    }
  } else if (!loopback->server) {
    ASSIGN_OR_RETURN(loopback->server, loopback->federation->Serve(engine.get()));
    for (size_t i = 0; i < sites->size(); ++i) {
      ASSIGN_OR_RETURN(auto link,
                       loopback->federation->Connect(static_cast<int>(i), *loopback->server));
      loopback->links.push_back(std::move(link));
    }
  } else {
    loopback->server->Retarget(engine.get());
  }
  if (loopback) {
    for (const auto& link : loopback->links) ctx.links.push_back(link.get());
  }
  ctx.backend = backend;
  ctx.strategy = &strategy;
  ctx.config = &config;
  ctx.round = round;
  ctx.pool = pool;
  std::vector<std::thread> threads;
  for (size_t i = 0; i < sites->size(); ++i) {
    threads.emplace_back(SiteLoop, &ctx, static_cast<int>(i), &(*sites)[i]);
  }
  Status run = engine->Run();
  if (!run.ok()) {
    ctx.turn.Abandon();
    engine->Shutdown();
  }
  for (auto& t : threads) t.join();
  RETURN_IF_ERROR(ctx.first_error);
  RETURN_IF_ERROR(Annotate(run, absl::StrCat("round ", round)));
  loopback_turn.round_ok = true;
  ASSIGN_OR_RETURN(Model published,
                   ReadSafetensorsFile(dir + "/checkpoints/round-0001.safetensors"));
  RoundOutcome out;
  out.mean.layout = extended.layout;
  out.mean.values.resize(extended.values.size());
  for (size_t i = 0; i < extended.values.size(); ++i) {
    out.mean.values[i] = published.values[i] - extended.values[i];
  }
  const uint64_t model_bytes =
      EncodeSafetensorsHeader(extended.layout, {}).size() + extended.values.size() * sizeof(float);
  for (const VirtualSite& s : *sites) {
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
                         const std::vector<uint8_t>& labels) {
  auto counts = ClassCounts(p, labels, static_cast<int>(kBuiltinNumClasses));
  std::string text = "site,examples,noise_std";
  for (int c = 0; c < kBuiltinNumClasses; ++c) absl::StrAppend(&text, ",class_", c);
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
  j["sites"] = c.sites;
  j["rounds"] = c.rounds;
  j["partition"] = c.partition.Name();
  j["strategy"] = c.strategy.Label();
  j["seed"] = c.seed;
  j["pool"] = c.pool;
  j["transport"] = TransportName(c.transport);
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

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

double SampleStd(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = Mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

struct Group {
  std::string strategy, partition;
  std::vector<const RunResult*> runs;
};

std::vector<Group> GroupRuns(const std::vector<RunResult>& runs) {
  std::vector<Group> groups;
  for (const RunResult& r : runs) {
    const std::string s = r.config.strategy.Label(), p = r.config.partition.Name();
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const Group& g) { return g.strategy == s && g.partition == p; });
    if (it == groups.end()) {
      groups.push_back({s, p, {}});
      it = groups.end() - 1;
    }
    it->runs.push_back(&r);
  }
  return groups;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

const char* TransportName(Transport transport) {
  return transport == Transport::kGrpc ? "grpc" : "in-process";
}

std::string SimulationConfig::Label() const {
  return absl::StrCat(strategy.Label(), " / ", partition.Name(), " / seed ", seed);
}

std::string SimulationConfig::DirName() const {
  return absl::StrCat(SafeName(strategy.Label()), "__", SafeName(partition.Name()), "__seed", seed);
}

std::vector<SimulationConfig> ExperimentConfig::Runs() const {
  std::vector<SimulationConfig> out;
  for (const PartitionSpec& p : partitions) {
    for (const StrategyOptions& s : strategies) {
      for (uint64_t seed : seeds) {
        SimulationConfig c = base;
        c.partition = p;
        c.strategy = s;
        c.seed = seed;
        if (p.kind == PartitionKind::kPooled) c.sites = 1;
        out.push_back(c);
      }
    }
  }
  return out;
}

StatusOr<std::unique_ptr<SimulationBackend>> CreateTorchBackend(const Dataset* train,
                                                                const Dataset* test,
                                                                const std::string& model,
                                                                const std::string& device,
                                                                int threads, int pool) {
  auto backend = std::make_unique<TorchBackend>(train, test);
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  if (threads == 0 && pool > 1) threads = std::max(1, cores / pool);
  for (int i = 0; i < std::max(1, pool); ++i) {
    ASSIGN_OR_RETURN(auto trainer, Trainer::Create(TrainerOptions{model, device, threads}));
    backend->trainers.push_back(std::move(trainer));
  }
  return std::unique_ptr<SimulationBackend>(std::move(backend));
}

StatusOr<RunResult> RunSimulation(const SimulationConfig& config,
                                  const std::vector<uint8_t>& train_labels,
                                  SimulationBackend* backend, const std::string& run_dir,
                                  const ProgressFn& progress) {
  const auto started = Clock::now();
  if (config.sites < 1 || config.rounds < 1 || config.pool < 1) {
    return absl::InvalidArgumentError(absl::StrCat("simulation needs sites, rounds and pool >= 1 (",
                                                   config.sites, ", ", config.rounds, ", ",
                                                   config.pool, ")"));
  }
  RETURN_IF_ERROR(MakeDirs(run_dir));
  ASSIGN_OR_RETURN(Partition partition,
                   MakePartition(train_labels, static_cast<int>(kBuiltinNumClasses), config.sites,
                                 config.partition, Mix(config.seed, kPartitionSeed)));
  RETURN_IF_ERROR(WritePartitionCsv(run_dir + "/partition.csv", partition, train_labels));
  std::vector<VirtualSite> sites(partition.num_sites());
  for (int i = 0; i < partition.num_sites(); ++i) {
    sites[i].name = absl::StrFormat("site-%03d", i);
    sites[i].indices = std::move(partition.sites[i]);
    sites[i].noise_std = partition.noise_std[i];
    sites[i].noise_seed = Mix(Mix(config.seed, kNoiseSeed), static_cast<uint64_t>(i));
  }
  ASSIGN_OR_RETURN(Model global, InitialModel(config.model, config.seed));
  ASSIGN_OR_RETURN(std::unique_ptr<Strategy> strategy,
                   Strategy::Create(config.strategy, global.layout));
  RETURN_IF_ERROR(CheckStrategyCompatible(config.strategy, config.secure.enabled));
  if (config.secure.enabled && config.client_privacy.enabled) {
    return absl::InvalidArgumentError(
        "simulated client-level privacy (the central Gaussian) needs plaintext aggregation");
  }
  if (config.client_privacy.enabled && strategy->needs_individual_updates()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy '", config.strategy.name,
        "' looks at every site's update, which client-level privacy does not protect; use a "
        "strategy that needs only the noisy mean"));
  }
  {
    nlohmann::ordered_json run = ConfigJson(config);
    run["sites_examples"] = nlohmann::json::array();
    for (const VirtualSite& s : sites) run["sites_examples"].push_back(s.indices.size());
    RETURN_IF_ERROR(WriteFileAtomically(run_dir + "/run.json", run.dump(2) + "\n"));
  }
  // Record-level privacy: the trainer's DP-SGD settings, as a deployed plan would carry them.
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
  std::unique_ptr<LoopbackRun> loopback;
  if (config.transport == Transport::kGrpc) {
    std::vector<std::string> names;
    for (const VirtualSite& s : sites) names.push_back(s.name);
    loopback = std::make_unique<LoopbackRun>();
    ASSIGN_OR_RETURN(loopback->federation, LoopbackFederation::Create(names, kSimulatedCountry));
  }
  SlotPool pool(config.pool);
  RunResult result;
  result.config = config;
  std::string metrics;
  for (int64_t round = 1; round <= config.rounds; ++round) {
    const auto round_start = Clock::now();
    const Model extended = Extend(global, *strategy);
    ASSIGN_OR_RETURN(RoundOutcome outcome,
                     RunEngineRound(run, *strategy, backend, &pool, round, extended,
                                    run_dir + "/engine", loopback.get(), &sites));
    const RoundInfo info{round, static_cast<int>(sites.size()), static_cast<int>(sites.size())};
    if (strategy->needs_individual_updates()) {
      std::vector<WeightedUpdate> updates;
      for (const VirtualSite& s : sites) {
        updates.push_back({&s.update, static_cast<double>(s.indices.size())});
      }
      ASSIGN_OR_RETURN(global, strategy->ApplyIndividual(global, updates, info));
    } else {
      ASSIGN_OR_RETURN(global, strategy->Apply(global, outcome.mean, info));
    }
    ASSIGN_OR_RETURN(EvalResult eval, backend->Evaluate(0, global));
    RoundMetrics m{round, eval.accuracy, eval.loss, SecondsSince(round_start)};
    const RecordDpSettings& dp = run.training.dp;
    if (dp.enabled()) {
      ASSIGN_OR_RETURN(
          PrivacySpent spent,
          SampledGaussianEpsilon(dp.sampling_rate, dp.noise_multiplier, dp.steps * round,
                                 config.record_privacy.budget.delta));
      m.record_epsilon = spent.epsilon;
    }
    if (config.client_privacy.enabled) {
      const int n = static_cast<int>(sites.size());
      ASSIGN_OR_RETURN(PrivacySpent spent,
                       CentralGaussianEpsilon(n, n, config.client_privacy.noise_multiplier, round,
                                              config.client_privacy.delta));
      m.client_epsilon = spent.epsilon;
    }
    result.rounds.push_back(m);

    nlohmann::ordered_json line;
    double train_seconds = 0;
    int64_t examples = 0;
    nlohmann::ordered_json per_site = nlohmann::ordered_json::object();
    for (const VirtualSite& s : sites) {
      train_seconds += s.result.seconds;
      examples += static_cast<int64_t>(s.indices.size());
      per_site[s.name] = {{"examples", s.indices.size()},
                          {"train_loss", s.result.loss},
                          {"steps", s.result.steps},
                          {"seconds", s.result.seconds}};
    }
    line["round"] = round;
    line["sites"] = sites.size();
    line["accuracy"] = eval.accuracy;
    line["loss"] = eval.loss;
    line["seconds"] = m.seconds;
    line["train_seconds"] = train_seconds;
    line["evaluation_seconds"] = eval.seconds;
    line["bytes_up"] = outcome.bytes_up;
    line["bytes_down"] = outcome.bytes_down;
    line["examples"] = examples;
    line["evaluated_on"] = eval.num_examples;
    if (dp.enabled()) {
      line["record_epsilon"] = m.record_epsilon;
      line["record_delta"] = config.record_privacy.budget.delta;
    }
    if (config.client_privacy.enabled) {
      line["epsilon"] = m.client_epsilon;
      line["delta"] = config.client_privacy.delta;
    }
    line["per_site"] = per_site;
    absl::StrAppend(&metrics, line.dump(), "\n");
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
  RETURN_IF_ERROR(WriteSafetensorsFile(run_dir + "/final.safetensors", global,
                                       {{"model", config.model}, {"run", config.Label()}}));
  RETURN_IF_ERROR(strategy->SaveState(run_dir + "/strategy.safetensors"));
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
  RETURN_IF_ERROR(WriteFileAtomically(run_dir + "/loss.svg", LinePlotSvg(loss)));
  result.final_model = std::move(global);
  return result;
}

StatusOr<std::vector<RunResult>> RunExperiment(const ExperimentConfig& experiment,
                                               const std::string& out_dir,
                                               const ProgressFn& progress) {
  const auto started = Clock::now();
  RETURN_IF_ERROR(MakeDirs(out_dir));
  RETURN_IF_ERROR(WriteFileAtomically(out_dir + "/experiment.toml", experiment.ResolvedToml()));
  ASSIGN_OR_RETURN(Dataset train, LoadMnistStyle(experiment.data_dir, Split::kTrain));
  ASSIGN_OR_RETURN(Dataset test, LoadMnistStyle(experiment.data_dir, Split::kTest));
  if (experiment.train_limit > 0) train = Head(train, experiment.train_limit);
  if (experiment.test_limit > 0) test = Head(test, experiment.test_limit);
  const std::vector<SimulationConfig> runs = experiment.Runs();
  int max_pool = 1;
  for (const auto& c : runs) max_pool = std::max(max_pool, c.pool);
  ASSIGN_OR_RETURN(auto backend,
                   CreateTorchBackend(&train, &test, experiment.base.model, experiment.device,
                                      experiment.threads, max_pool));
  std::vector<RunResult> results;
  double done_rounds = 0, total_rounds = 0;
  for (const auto& c : runs) total_rounds += static_cast<double>(c.rounds);
  for (size_t i = 0; i < runs.size(); ++i) {
    ProgressFn wrapped = [&](const Progress& p) {
      if (!progress) return;
      Progress q = p;
      q.run = static_cast<int>(i + 1);
      q.runs = static_cast<int>(runs.size());
      const double elapsed = SecondsSince(started);
      const double finished = done_rounds + static_cast<double>(p.round);
      q.elapsed_seconds = elapsed;
      q.remaining_seconds = elapsed / finished * (total_rounds - finished);
      progress(q);
    };
    ASSIGN_OR_RETURN(RunResult r, RunSimulation(runs[i], train.labels, backend.get(),
                                                out_dir + "/" + runs[i].DirName(), wrapped));
    done_rounds += static_cast<double>(runs[i].rounds);
    r.final_model = Model{};  // on disk; not kept for the whole sweep
    results.push_back(std::move(r));
    RETURN_IF_ERROR(WriteFileAtomically(out_dir + "/summary.csv", SummaryCsv(results)));
    RETURN_IF_ERROR(
        WriteFileAtomically(out_dir + "/summary.md", SummaryMarkdown(experiment.name, results)));
  }
  // One accuracy plot per partition comparing the strategies (mean over seeds).
  std::vector<Group> groups = GroupRuns(results);
  std::map<std::string, PlotSpec> plots;
  for (const Group& g : groups) {
    PlotSpec& plot = plots[g.partition];
    plot.title = absl::StrCat(experiment.name, ": ", g.partition);
    plot.y_label = "test accuracy";
    PlotSeries series{g.strategy, {}};
    const size_t rounds = g.runs[0]->rounds.size();
    for (size_t k = 0; k < rounds; ++k) {
      std::vector<double> v;
      for (const RunResult* r : g.runs) v.push_back(r->rounds[k].accuracy);
      series.y.push_back(Mean(v));
    }
    plot.series.push_back(series);
  }
  for (const auto& [partition, plot] : plots) {
    RETURN_IF_ERROR(WriteFileAtomically(
        absl::StrCat(out_dir, "/accuracy__", SafeName(partition), ".svg"), LinePlotSvg(plot)));
  }
  return results;
}

namespace {

// The epsilon of one guarantee a group's runs spent (`field` of RoundMetrics), or "" without
// it.
std::string FinalEpsilon(const Group& g, double RoundMetrics::*field) {
  const double epsilon = g.runs[0]->rounds.back().*field;
  return epsilon > 0 ? Fixed(epsilon, 3) : "";
}

// The privacy columns the summaries have: only those some run used.
struct PrivacyColumns {
  bool record = false, client = false;
  explicit PrivacyColumns(const std::vector<RunResult>& runs) {
    for (const RunResult& r : runs) {
      record = record || r.config.record_privacy.enabled;
      client = client || r.config.client_privacy.enabled;
    }
  }
  // The header cells (`csv`: ",record_epsilon"; else " record ε |") and a group's cells.
  std::string Header(bool csv) const {
    return absl::StrCat(record ? (csv ? ",record_epsilon" : " record ε |") : "",
                        client ? (csv ? ",client_epsilon" : " client ε |") : "");
  }
  std::string Rule() const { return absl::StrCat(record ? "---:|" : "", client ? "---:|" : ""); }
  std::string Cells(const Group& g, bool csv) const {
    std::string out;
    if (record) {
      absl::StrAppend(&out, csv ? "," : " ", FinalEpsilon(g, &RoundMetrics::record_epsilon),
                      csv ? "" : " |");
    }
    if (client) {
      absl::StrAppend(&out, csv ? "," : " ", FinalEpsilon(g, &RoundMetrics::client_epsilon),
                      csv ? "" : " |");
    }
    return out;
  }
};

}  // namespace

std::string SummaryCsv(const std::vector<RunResult>& runs) {
  const PrivacyColumns privacy(runs);
  std::string out = absl::StrCat(
      "strategy,partition,seeds,rounds,best_accuracy_mean,best_accuracy_std,"
      "final_accuracy_mean,final_accuracy_std,seconds_mean",
      privacy.Header(true), "\n");
  for (const Group& g : GroupRuns(runs)) {
    std::vector<double> best, final_acc, seconds;
    for (const RunResult* r : g.runs) {
      best.push_back(r->best_accuracy);
      final_acc.push_back(r->final_accuracy);
      seconds.push_back(r->seconds);
    }
    absl::StrAppend(&out, "\"", g.strategy, "\",\"", g.partition, "\",", g.runs.size(), ",",
                    g.runs[0]->rounds.size(), ",", Fixed(Mean(best)), ",", Fixed(SampleStd(best)),
                    ",", Fixed(Mean(final_acc)), ",", Fixed(SampleStd(final_acc)), ",",
                    Fixed(Mean(seconds), 1), privacy.Cells(g, true), "\n");
  }
  return out;
}

std::string SummaryMarkdown(const std::string& title, const std::vector<RunResult>& runs) {
  const PrivacyColumns privacy(runs);
  std::string out = absl::StrCat(
      "# ", title, "\n\nTest accuracy of the global model, mean ± std over seeds.\n\n",
      "| partition | strategy | seeds | rounds | best accuracy | final accuracy | "
      "seconds per run |",
      privacy.Header(false), "\n", "|---|---|---:|---:|---:|---:|---:|", privacy.Rule(), "\n");
  for (const Group& g : GroupRuns(runs)) {
    std::vector<double> best, final_acc, seconds;
    for (const RunResult* r : g.runs) {
      best.push_back(r->best_accuracy);
      final_acc.push_back(r->final_accuracy);
      seconds.push_back(r->seconds);
    }
    absl::StrAppend(&out, "| ", g.partition, " | ", g.strategy, " | ", g.runs.size(), " | ",
                    g.runs[0]->rounds.size(), " | ", Fixed(Mean(best)), " ± ",
                    Fixed(SampleStd(best)), " | ", Fixed(Mean(final_acc)), " ± ",
                    Fixed(SampleStd(final_acc)), " | ", Fixed(Mean(seconds), 0), " |",
                    privacy.Cells(g, false), "\n");
  }
  return out;
}

}  // namespace hansa

#include "sim/virtual_site.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/link/forwarding_link.h"
#include "client/local_trainer.h"
#include "client/site_session.h"
#include "common/crypto/sha256.h"
#include "common/partition/random.h"
#include "common/privacy/uniform_source.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

uint64_t Mix(uint64_t a, uint64_t b) {
  PortableRandom r(a ^ (0x9e3779b97f4a7c15ull * (b + 1)));
  r.Next();
  return r.Next();
}

namespace {

// What a virtual site's draws (shuffling, rounding, DP-SGD noise) are keyed by: the round, and
// for a retry also its attempt, so that a retry is a new contribution and never the update
// the site may already have sent (the first attempt keeps the round, so runs repeat as before).
uint64_t DrawKey(int64_t round, const v1::RoundPlan& plan) {
  const auto r = static_cast<uint64_t>(round);
  return plan.attempt() > 1 ? Mix(r, plan.attempt()) : r;
}

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
  bool abandoned() {
    std::lock_guard<std::mutex> lock(mu_);
    return abandoned_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int next_ = 0;
  bool abandoned_ = false;
};

// A site's link that waits for the site's turn to upload and counts what it sent.
class TurnLink final : public ForwardingLink {
 public:
  // `index`: the site's place among those run here.
  TurnLink(SiteLink* link, UploadTurn* turn, const RoundSites* round, int index, VirtualSite* site)
      : ForwardingLink(link), turn_(turn), round_(round), index_(index), site_(site) {}
  StatusOr<v1::UploadReply> Upload(const v1::RoundPlan& plan, const v1::TransferHeader& header,
                                   const std::vector<std::string_view>& pieces) override {
    if (!turn_->Wait(index_)) return absl::CancelledError("round abandoned");
    if (index_ == 0 && round_->earlier_uploads_done) RETURN_IF_ERROR(WaitForEarlierSites());
    StatusOr<v1::UploadReply> reply = ForwardingLink::Upload(plan, header, pieces);
    turn_->Done();
    site_->bytes_up = header.total_bytes();
    if (index_ + 1 == static_cast<int>(round_->links.size()) && round_->uploads_done) {
      round_->uploads_done();
    }
    return reply;
  }

 private:
  // Another process's sites upload before this one's: polled, so that an abandoned round ends
  // the wait.
  Status WaitForEarlierSites() {
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
      ASSIGN_OR_RETURN(const bool done, round_->earlier_uploads_done());
      if (done) return absl::OkStatus();
      if (turn_->abandoned()) return absl::CancelledError("round abandoned");
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(10));
    }
  }

  UploadTurn* const turn_;
  const RoundSites* const round_;
  const int index_;
  VirtualSite* const site_;
};

// A virtual site's training: its slice of the shared data set through a pooled trainer, with
// the strategy's site-side recipe, drawing from the run's seed. The downloaded model is the
// model followed by the strategy's broadcast tensors (Extend in simulation.cc); so is the update.
class VirtualSiteTrainer final : public LocalTrainer {
 public:
  VirtualSiteTrainer(const RoundSites* round, int index, VirtualSite* site)
      : round_(round), index_(index), site_(site) {}

  StatusOr<TrainResult> Train(const v1::RoundPlan& plan, const Model& extended) override;
  StatusOr<std::vector<float>> HostUpdate(Model extended) override { return update_; }
  StatusOr<EvalResult> Evaluate(const v1::RoundPlan&, const Model&) override {
    return absl::UnimplementedError("virtual sites do not evaluate; the simulator does");
  }
  void Leaving(const std::vector<float>& update) override {
    if (round_->strategy->needs_individual_updates()) site_->update = update;
  }

 private:
  TrainSettings Settings(const v1::RoundPlan& plan) const;

  const RoundSites* const round_;
  const int index_;
  VirtualSite* const site_;
  std::vector<float> update_;
};

TrainSettings VirtualSiteTrainer::Settings(const v1::RoundPlan& plan) const {
  const SimulationConfig& config = *round_->config;
  TrainSettings s = config.training;
  s.seed = Mix(Mix(config.seed, kShuffleSeed), DrawKey(round_->round, plan) * 1000003 + index_);
  s.input_noise_std = site_->noise_std;
  s.noise_seed = site_->noise_seed;
  s.proximal_mu = round_->strategy->recipe().proximal_mu;
  if (s.dp.enabled()) {
    s.dp.randomness = std::make_shared<SeededUniformSource>(
        absl::StrCat("hansa simulate dp-sgd ", Mix(config.seed, kDpSeed), " ",
                     DrawKey(round_->round, plan), " ", index_));
  }
  return s;
}

StatusOr<TrainResult> VirtualSiteTrainer::Train(const v1::RoundPlan& plan, const Model& extended) {
  const Strategy& strategy = *round_->strategy;
  const ModelLayout& layout = strategy.model_layout();
  const size_t n = static_cast<size_t>(layout.TotalElements());
  Model global;
  global.layout = layout;
  global.values.assign(extended.values.begin(), extended.values.begin() + n);
  const ClientRecipe recipe = strategy.recipe();
  TrainSettings s = Settings(plan);
  std::vector<float> server_c;
  if (recipe.scaffold) {
    server_c.assign(extended.values.begin() + n, extended.values.begin() + 2 * n);
    if (site_->control.empty()) site_->control.assign(n, 0.0f);
    auto correction = std::make_shared<std::vector<float>>(n);
    for (size_t i = 0; i < n; ++i) (*correction)[i] = server_c[i] - site_->control[i];
    s.scaffold_correction = std::move(correction);
  }
  const int slot = round_->pool->Acquire();
  StatusOr<Model> local = round_->backend->Train(slot, global, site_->indices, s, &site_->result);
  round_->pool->Release(slot);
  RETURN_IF_ERROR(Annotate(local.status(), absl::StrCat(site_->name, " training")));

  update_.assign(extended.values.size(), 0.0f);
  for (size_t i = 0; i < n; ++i) update_[i] = local->values[i] - global.values[i];
  if (recipe.scaffold) {
    std::vector<float> delta_c = ScaffoldControlDelta(server_c, global.values, local->values,
                                                      site_->result.steps, s.learning_rate);
    for (size_t i = 0; i < n; ++i) {
      update_[n + i] = delta_c[i];
      site_->control[i] += delta_c[i];
    }
  }
  if (recipe.fednova) {
    const double a = FedNovaCoefficient(site_->result.steps, s.momentum);
    for (size_t i = 0; i < n; ++i) update_[i] = static_cast<float>(update_[i] / a);
    update_[n] = static_cast<float>(a / kFedNovaScale);
  }
  TrainResult result = site_->result;
  result.num_examples = static_cast<int64_t>(site_->indices.size());
  return result;
}

SiteSessionOptions SessionOptions(const RoundSites& round, int index, const VirtualSite& site) {
  const SimulationConfig& config = *round.config;
  SiteSessionOptions o;
  o.name = site.name;
  // The simulator's sites accept what its engine plans.
  o.policy.allowed_models = {config.model};
  if (IsScriptModelName(config.model)) {
    // The site's copy is the run's file; every value of the run's layout is a parameter or an
    // averaged buffer, so the update has the layout's size (UpdateValues).
    o.policy.script_models[config.model] =
        ScriptModel{config.script_file, round.strategy->model_layout().TotalElements(), 0};
  }
  o.policy.require_secure_aggregation = false;
  o.policy.min_cohort = 1;
  o.policy.min_secagg_degree = 1;
  o.policy.min_secagg_threshold = 1;
  if (!round.tls.empty()) {
    o.ca_certificate_pem = round.tls[index].ca_certificate_pem;
    o.private_key_pem = round.tls[index].private_key_pem;
  }
  o.reconnect_seconds = 0;
  o.poll_wait = absl::Milliseconds(250);
  o.stop_on_task_error = true;
  o.evaluate = false;
  const uint64_t rounding = Mix(config.seed, kRoundingSeed);
  const int64_t r = round.round;
  o.rounding_seed = [rounding, r, index](const v1::RoundPlan& plan) {
    const Sha256Digest digest = Sha256(
        absl::StrCat("hansa simulate rounding ", rounding, " ", DrawKey(r, plan), " ", index));
    return SecretBytes(std::string(digest.begin(), digest.end()));
  };
  return o;
}

}  // namespace

SlotPool::SlotPool(int size) {
  for (int i = size - 1; i >= 0; --i) free_.push_back(i);
}

int SlotPool::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !free_.empty(); });
  int slot = free_.back();
  free_.pop_back();
  return slot;
}

void SlotPool::Release(int slot) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(slot);
  cv_.notify_one();
}

struct SiteThreads::Shared {
  RoundSites round;
  UploadTurn turn;
  std::vector<std::unique_ptr<TurnLink>> links;
  std::vector<std::unique_ptr<VirtualSiteTrainer>> trainers;
  std::vector<std::unique_ptr<SiteSession>> sessions;
  std::mutex mu;
  Status first_error;  // guarded by mu

  void Fail(const Status& st) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!first_error.ok()) return;
      first_error = st;
    }
    turn.Abandon();
    if (round.engine != nullptr) round.engine->Shutdown();
    for (const auto& s : sessions) s->Stop();
  }
};

SiteThreads::SiteThreads() : shared_(std::make_unique<Shared>()) {}

StatusOr<std::unique_ptr<SiteThreads>> SiteThreads::Start(const RoundSites& round,
                                                          std::vector<VirtualSite>* sites) {
  std::unique_ptr<SiteThreads> threads(new SiteThreads());
  Shared& sh = *threads->shared_;
  sh.round = round;
  const size_t here = round.links.size();
  if (round.first < 0 || round.first + here > sites->size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sites ", round.first, "..", round.first + here - 1, " of ", sites->size()));
  }
  for (size_t i = 0; i < here; ++i) {
    const int index = round.first + static_cast<int>(i);  // the seeds' and the names' index
    VirtualSite* site = &(*sites)[index];
    sh.links.push_back(
        std::make_unique<TurnLink>(round.links[i], &sh.turn, &sh.round, static_cast<int>(i), site));
    sh.trainers.push_back(std::make_unique<VirtualSiteTrainer>(&sh.round, index, site));
    ASSIGN_OR_RETURN(auto session,
                     SiteSession::Create(SessionOptions(round, index, *site), sh.links.back().get(),
                                         sh.trainers.back().get()));
    sh.sessions.push_back(std::move(session));
  }
  for (size_t i = 0; i < here; ++i) {
    threads->threads_.emplace_back([&sh, i, site = &(*sites)[round.first + i]] {
      Status st = sh.sessions[i]->Run();
      if (!st.ok()) sh.Fail(Annotate(st, site->name));
    });
  }
  return threads;
}

void SiteThreads::Abandon() {
  shared_->turn.Abandon();
  if (shared_->round.engine != nullptr) shared_->round.engine->Shutdown();
  for (const auto& s : shared_->sessions) s->Stop();
}

Status SiteThreads::Join() {
  for (auto& t : threads_) t.join();
  threads_.clear();
  std::lock_guard<std::mutex> lock(shared_->mu);
  return shared_->first_error;
}

SiteThreads::~SiteThreads() {
  if (!threads_.empty()) {
    Abandon();
    Join().IgnoreError();
  }
}

}  // namespace hansa

// The simulator's virtual sites (internal to sim/): each is the project's one site
// conversation (client/site_session.h) over a SiteLink, with a LocalTrainer that trains the
// site's slice of the shared data set through a pool of trainers and carries the strategy's
// site-side recipe (FedProx, SCAFFOLD, FedNova). RunSites drives one round's sites as threads.
//
// Determinism: shuffling, DP-SGD draws and stochastic rounding are keyed by the run's seed, the
// round and the site; sites upload in index order (TurnLink), so the engine sums in the same
// order every run.
//
// Threading: RunSites starts and joins one thread per site; a VirtualSite is touched by its
// own thread during a round and by the caller between rounds.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/link/site_link.h"
#include "client/train/trainer.h"
#include "common/net/tls.h"
#include "coordinator/round_engine.h"
#include "coordinator/strategy.h"
#include "nlohmann/json.hpp"
#include "sim/simulation.h"

namespace hansa {

// Virtual sites have no certificate of their own in process; they carry this jurisdiction.
inline constexpr char kSimulatedCountry[] = "EU";

using SimClock = std::chrono::steady_clock;
inline double SecondsSince(SimClock::time_point t) {
  return std::chrono::duration<double>(SimClock::now() - t).count();
}

// Independent streams derived from the run's seed, one per purpose.
uint64_t Mix(uint64_t a, uint64_t b);
enum SeedPurpose : uint64_t {
  kPartitionSeed = 1,
  kShuffleSeed = 2,
  kNoiseSeed = 3,
  kDpSeed = 4,
  kRoundingSeed = 5,
  kCentralNoiseSeed = 6,
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
  bool took_part = true;  // its update is in the round's aggregate (a dropped site's is not)
  bool reported = true;   // its figures reached rank 0 (a lost worker's may not have)
};

// Hands out at most `size` trainer slots at a time.
class SlotPool {
 public:
  explicit SlotPool(int size);
  int Acquire();
  void Release(int slot);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> free_;
};

// One round of the virtual sites against `engine`, whose Run() the caller runs meanwhile:
// site first + i talks through links[i]. The first site error shuts the engine down and stops
// the other sites; it is returned (OK when every site saw the federation done).
struct RoundSites {
  // In this process; null on a worker (sim/workers.h), whose engine is rank 0's.
  RoundEngine* engine = nullptr;
  // The sites run here: indices first .. first + links.size() - 1 of the run's sites (a
  // worker's share; all of them in one process).
  int first = 0;
  std::vector<SiteLink*> links;  // one per site run here, in site order
  // Workers: whether the sites before `first` (other processes') have uploaded, asked (and
  // polled) before site `first` uploads; and told once the last site here has uploaded. Unset:
  // no sites before, no one to tell.
  std::function<StatusOr<bool>()> earlier_uploads_done;
  std::function<void()> uploads_done;
  SimulationBackend* backend = nullptr;
  const Strategy* strategy = nullptr;
  const SimulationConfig* config = nullptr;
  int64_t round = 0;
  SlotPool* pool = nullptr;
  // Malicious-coordinator SecAgg+: each site's certificate, key and CA (none: not simulated).
  std::vector<TlsFiles> tls;
};
class SiteThreads {
 public:
  // Starts one thread per site run here (round.links); `sites` are all the run's sites, and
  // `round` and `sites` must outlive the result.
  static StatusOr<std::unique_ptr<SiteThreads>> Start(const RoundSites& round,
                                                      std::vector<VirtualSite>* sites);
  // Joins them (after the engine's Run returned; when it failed, the caller shuts the engine
  // down first) and returns the first site error.
  Status Join();
  // Ends the round for the sites: releases those waiting for their upload turn, shuts the
  // engine down and stops every session.
  void Abandon();
  ~SiteThreads();

 private:
  SiteThreads();
  struct Shared;
  std::unique_ptr<Shared> shared_;
  std::vector<std::thread> threads_;
};

// What a run's processes all make alike before round 1 (simulation.cc): the sites over the
// partition (partition.csv written when run_dir is not empty), the initial model, the strategy,
// the pooled standardisation (applied to `backend`; its record for run.json, null without)
// and the run with record-level privacy resolved into its training settings.
struct PreparedRun {
  std::vector<VirtualSite> sites;
  Model global;
  std::unique_ptr<Strategy> strategy;
  nlohmann::ordered_json standardization;
  SimulationConfig run;
};
StatusOr<PreparedRun> PrepareRun(const SimulationConfig& config,
                                 const std::vector<uint8_t>& train_labels,
                                 SimulationBackend* backend, const std::string& run_dir);

// The LibTorch backend over an experiment's loaded data, as RunSweep makes it (sweep.cc).
StatusOr<std::unique_ptr<SimulationBackend>> CreateExperimentBackend(
    const ExperimentConfig& experiment, const ExperimentDataSets& data);

}  // namespace hansa

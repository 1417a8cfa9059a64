// One cell's virtual sites over several processes (`[experiment] workers = N`): workers find
// each other as torchrun's do (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) through torch's
// c10d TCPStore (client/train/rendezvous.h). Rank 0 runs the sweep: each cell's round engine,
// its central evaluation and every file of the run folder, and its own share of the sites.
// Every other rank runs its share of the sites (SiteShare: contiguous, the same split every
// time), each the project's one site conversation over the gRPC site link with mutual TLS to
// rank 0's coordinator service, with a certificate of the federation rank 0 makes for the run.
//
// A run is the same to the bit as in one process: every rank prepares the cell alike
// (PrepareRun: the partition, the initial model, the strategy, standardisation, all from the
// seed), a site's draws are keyed by its index in the run, and sites upload in index order
// across ranks (each rank's first site waits until the ranks before have uploaded), so the
// engine sums in the same order.
//
// Through the store (keys under "hansa/sim/"), for each cell in turn: rank 0 names the cell
// (job/<n>); each other rank makes its sites' keys and sends their signing requests
// (cell/<n>/request/<site>); rank 0 issues their certificates from the run's CA and publishes
// them with the coordinator's port, the CA and the coordinator certificate's fingerprint
// (cell/<n>/setup), and opens each round (round/<r>/start); a rank marks
// its sites' uploads done (round/<r>/uploaded/<rank>) and reports its sites' training figures
// or its error (round/<r>/done/<rank>). Workers beat a counter (beat/<rank>) every second.
//
// A dead worker: one silent for worker_timeout_seconds, one that reports an error, or one whose
// process rank 0 started and saw end (WatchLocalProcesses), is taken for dead by rank 0 for the
// rest of the sweep (lost/<rank>; a worker that reads its own stops).
// Its sites drop out as real sites dropping out would: the round's engine stops waiting for them
// (RoundEngine::SiteLost) and records them as dropped, so a plaintext round goes on with the
// updates that arrived and a secure one recovers the survivors' sum through SecAgg+ (or retries,
// as the engine does); the upload chain skips the lost rank; later rounds run without its
// sites. That holds while the sites left meet the experiment's min_sites (default: every
// site); below it the round fails, and with it the cell, with a message naming the worker and
// its sites. metrics.jsonl says per round which sites' updates are in the aggregate (per_site,
// "dropped"), run.json which workers were lost (lost_workers).
//
// Trust: no private key travels, but the store is readable and writable by whoever reaches
// MASTER_PORT, as torchrun's is: someone there could ask for a site's certificate in its place
// or stall the run. The rendezvous network must be private to the job.
// The coordinator listens on 127.0.0.1 when MASTER_ADDR is a loopback address, else on every
// interface (mutual TLS with the run's CA, and the workers pin its certificate).
//
// Threading: a CellWorkers is used by its process's sweep thread; RemoteSites by the thread
// running its cell (its hooks from site threads); each has one thread of its own (heartbeat,
// watch).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "client/train/rendezvous.h"
#include "common/status/status.h"
#include "coordinator/round_engine.h"
#include "sim/loopback.h"
#include "sim/simulation.h"
#include "sim/virtual_site.h"

namespace hansa {

struct WorkerEnvironment {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
};

// From RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT. InvalidArgument, naming the variable, when
// one is missing or malformed, or when WORLD_SIZE is not `workers` (the experiment's).
StatusOr<WorkerEnvironment> ReadWorkerEnvironment(int workers);

// The device a worker trains on: with several GPUs on a node, one per worker. `device` is
// the experiment's; "auto" and "cuda" become "cuda:<local_rank mod cuda_devices>" ("auto" is
// "cpu" without CUDA); "cpu" and "cuda:N" stay as given. Every rank writes the experiment's
// own `device` into experiment.toml, so ranks on different GPUs still run one experiment.
std::string WorkerDevice(const std::string& device, int local_rank, int cuda_devices);
// This process's rank on its node: LOCAL_RANK (torchrun), else SLURM_LOCALID, else RANK, else
// 0; a value that is not a non-negative integer counts as 0.
int LocalRank();

// Rank `rank`'s sites: [first, first + count) of `sites` over `world_size` ranks, contiguous,
// the first sites % world_size ranks one more.
std::pair<int, int> SiteShare(int sites, int world_size, int rank);

// A process's place in the group, for its whole life.
class CellWorkers {
 public:
  // Joins the rendezvous (waiting up to `timeout` for every rank); ranks > 0 start beating.
  static StatusOr<std::unique_ptr<CellWorkers>> Join(const WorkerEnvironment& env,
                                                     std::chrono::milliseconds timeout);
  // Stops the heartbeat. On rank 0 the store goes with it: call Finish first.
  ~CellWorkers();

  // Rank 0, once its sweep is done: tells the workers there are no more cells and waits (up to
  // 30 s) until they have read it, so that the store outlives their last look.
  void Finish();

  int rank() const { return store_->rank(); }
  // Rank 0: ranks taken for dead (for the rest of the sweep; told to the store as lost/<rank>).
  // Any thread.
  bool lost(int rank) const;
  void MarkLost(int rank);
  // Rank 0, when it started the other ranks itself (hansa simulate --workers-local):
  // `pids[k - 1]` is rank k's process. A watched rank whose process has ended is dead at once,
  // without waiting for worker_timeout. Call before the first cell.
  void WatchLocalProcesses(std::vector<pid_t> pids) { local_pids_ = std::move(pids); }
  // How a watched rank's process ended ("exited with status 3", "was killed by signal 9
  // (Killed)"), or empty while it runs or when the rank is not watched. The process is not
  // reaped: its parent still waits for it.
  std::string LocalExit(int rank) const;
  // MASTER_ADDR: where the workers reach rank 0, its store and its coordinator.
  const std::string& master_addr() const { return master_addr_; }
  int world_size() const { return store_->world_size(); }
  RendezvousStore& store() { return *store_; }

  // Rank 0: names the next cell (its folder name); returns its key prefix.
  StatusOr<std::string> BeginCell(const std::string& dir_name);
  // Ranks > 0: the next cell's folder name and key prefix, or an empty name when rank 0 has no
  // more. Unavailable when rank 0 is gone.
  StatusOr<std::pair<std::string, std::string>> NextCell();

 private:
  explicit CellWorkers(std::unique_ptr<RendezvousStore> store) : store_(std::move(store)) {}
  void Beat();
  std::unique_ptr<RendezvousStore> store_;
  std::string master_addr_;
  int64_t next_cell_ = 0;
  mutable std::mutex mu_;
  std::vector<bool> lost_;         // by rank, guarded by mu_
  std::vector<pid_t> local_pids_;  // rank k's process at k - 1, set before any cell
  std::atomic<bool> stop_{false};
  std::thread heartbeat_;
};

// Rank 0's side of one cell: the other ranks' sites, seen through the store.
class RemoteSites {
 public:
  // Announces the cell. InvalidArgument when the run cannot be spread: fewer sites than
  // workers, or a strategy that needs every site's own update (median, Krum, ...: they reach
  // rank 0 only summed); FailedPrecondition when workers lost in earlier cells leave fewer than
  // min_sites. `names`: the run's site names, by index.
  static StatusOr<std::unique_ptr<RemoteSites>> Start(CellWorkers* workers,
                                                      const SimulationConfig& config,
                                                      const Strategy& strategy,
                                                      const LoopbackFederation& federation,
                                                      std::vector<std::string> names);
  ~RemoteSites();
  // Rank 0's own sites.
  std::pair<int, int> local() const { return local_; }
  // Where the coordinator listens: 127.0.0.1 for workers on this machine, else every interface.
  std::string listen() const;
  // Once the server is up: issues the other ranks' site certificates from their signing
  // requests (waiting for them) and publishes them with the server's port and fingerprint.
  Status Publish(const LoopbackServer& server);
  // Opens round `round` for the workers; until FinishRound, a failed worker shuts `engine`
  // down. `hooks` gets rank 0's uploads_done.
  Status StartRound(int64_t round, RoundEngine* engine, RoundSites* hooks);
  // After the engine's Run and rank 0's sites: the first worker failure, or each live worker's
  // report, whose figures go into `sites` (result, bytes_up); a lost worker's sites that did
  // not report are marked so (VirtualSite::reported).
  Status FinishRound(int64_t round, std::vector<VirtualSite>* sites);
  // The first failure seen so far: a lost worker that left fewer than min_sites, or the store.
  Status Check();
  // Whether site `site`'s worker is alive (rank 0's own sites always are).
  bool Live(int site);
  // The workers lost during this cell: "worker k (sites a..b) <why> (round r)".
  std::vector<std::string> LostWorkers();

 private:
  RemoteSites() = default;
  void Watch();
  void Fail(Status st);
  // Takes worker `rank` for dead (`why`: what rank 0 saw), or fails the cell when the sites
  // left would be fewer than min_sites.
  void Lose(int rank, const std::string& why);
  bool Lost(int rank);
  std::string Who(int rank) const;  // "worker k (sites a..b)"
  int RankOf(int site) const;       // the rank that runs site `site`

  CellWorkers* workers_ = nullptr;
  std::string prefix_;
  const LoopbackFederation* federation_ = nullptr;
  int sites_ = 0;
  int min_sites_ = 0;
  std::vector<std::string> names_;
  std::chrono::milliseconds silence_{60000};
  std::pair<int, int> local_;
  int64_t round_ = 0;
  std::mutex mu_;
  RoundEngine* engine_ = nullptr;      // guarded by mu_
  Status failure_;                     // guarded by mu_
  std::vector<bool> lost_;             // by rank; guarded by mu_
  std::vector<std::string> lost_why_;  // guarded by mu_
  std::atomic<bool> stop_{false};
  std::thread watch_;
};

// Ranks > 0, before their first site uploads in the round whose keys are under `r`
// (".../round/<n>/"): whether the nearest rank before `rank` that rank 0 has not taken for dead
// has uploaded. A lost rank is skipped: its uploads, if any, are in; the rest never come.
StatusOr<bool> EarlierUploadsDone(RendezvousStore& store, const std::string& r, int rank);

// Ranks > 0: runs the sites of every cell rank 0 names, until it has no more. The seam takes
// the data and backend; the other loads them as RunSweep does.
Status ServeWorker(const ExperimentConfig& experiment, CellWorkers* workers);
Status ServeWorker(const ExperimentConfig& experiment, const ExperimentDataSets& data,
                   SimulationBackend* backend, CellWorkers* workers);

}  // namespace hansa

// `hansa simulate`: a whole federation of virtual sites on one machine, driven through the
// coordinator's own RoundEngine, with the real Trainer, the NIID-Bench partitioners
// (common/partition) and the strategies (coordinator/strategies).
//
// One data set is loaded once; a virtual site holds only its list of example indices and
// materializes its examples when it trains. Each virtual site is the project's one site
// conversation (client/site_session.h, as hansa-client runs it) over a SiteLink: in process, or
// over real gRPC with mutual TLS on loopback when the experiment asks (`transport = "grpc"`);
// training goes through a bounded pool of trainers (default one), and sites upload in a fixed
// order (sim/virtual_site.h), so a run is deterministic by its seed: the same partition, the
// same initial model, the same shuffling and the same metrics, run after run.
//
// The engine has no strategy hook yet, so each round runs in a fresh one-round engine whose
// "global model" is the model followed by the strategy's extra tensors (SCAFFOLD's c, FedNova's
// coefficient, see strategy.h); the engine aggregates the sites' uploads as deployed, and the
// simulator takes the published model from the engine (RoundEngine::global_model), subtracts
// the round's start (published - initial) and applies the strategy's server step. Aggregators
// that need individual updates get them from the virtual sites directly. With [aggregation]
// mode = "secure" the virtual sites run SecAgg+ as hansa-client does and the engine holds only
// masked uploads and their sum; stochastic rounding draws from `seed`, so a secure run repeats
// too.
//
// A sweep's runs are its cells (ExperimentConfig::Runs(): partition x strategy x seed, index K
// their order there). Cells are independent jobs: any process may run any of them (RunSweep
// with SweepOptions::cells) into one run folder, a finished cell is never run again, and
// SummarizeRunDir merges whichever are done; examples/niid-bench/jobs/ runs them as a Slurm job
// array or a Kubernetes Indexed Job.
//
// Threading: RunSimulation and RunSweep are called from one thread; they start and join
// their own site threads. A SimulationBackend is called from up to `pool` threads at once,
// each with its own slot number.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "client/data.h"
#include "client/tabular.h"
#include "client/train/trainer.h"
#include "common/partition/partition.h"
#include "common/privacy/record_privacy.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"
#include "coordinator/round_engine.h"
#include "coordinator/strategy.h"

namespace hansa {

class CellWorkers;  // sim/workers.h

// Client-level differential privacy in simulation: the central Gaussian of a deployed plaintext
// federation (the engine's own mechanism: each site's update clipped to clip_norm in L2, the
// coordinator adds N(0, (z C)^2) to the sum and averages the sites unweighted), accounted with
// q = 1 (every site every round). It needs plaintext aggregation: the distributed discrete
// Gaussian of a secure deployment is not simulated; at the same z its accounting is close to
// this one's.
struct ClientPrivacyOptions {
  bool enabled = false;
  double clip_norm = 1.0;
  double noise_multiplier = 1.0;
  double delta = 1e-5;
};

// How the virtual sites reach each round's engine: its own calls, or gRPC with mutual TLS 1.3
// on 127.0.0.1, each site with its own certificate (sim/loopback.h). Both give the
// same run to the bit; gRPC adds the wire's cost.
enum class Transport { kInProcess, kGrpc };
const char* TransportName(Transport transport);  // "in-process", "grpc"

// One run: one strategy on one partition with one seed.
struct SimulationConfig {
  // A built-in model, or a study's TorchScript model "sha256:<hex>" (common/model/task.h) read
  // from `script_file`; its initial weights are then the file's own, whatever the seed.
  std::string model = "simple_cnn";
  std::string script_file;
  Task task = {};  // what the model predicts and its loss; buffers: "average" only
  // The label classes the partitioners and partition.csv count (labels are below it); a
  // regression's examples all carry label 0 of 1 class.
  int classes = kBuiltinNumClasses;
  // One file per virtual site: the training set is the sites' files concatenated in order and
  // site i holds the next site_rows[i] examples; `partition` is then unused. Empty: the
  // partitioner deals the training set.
  std::vector<int64_t> site_rows;
  // The experiment gives one file per site (site_rows is filled once the data is loaded): the
  // run's partition is "files" before that too, so its folder name is known without the data.
  bool one_file_per_site = false;
  // Pooled feature standardisation before round 1 over rows of this many features (0: none):
  // the virtual sites' feature moments are added up, as a deployment adds them under secure
  // aggregation (common/plan/standardization.h), and every site trains, and the central
  // evaluation runs, on rows standardised by the pooled mean and std.
  int64_t standardize_features = 0;
  int sites = 10;
  int64_t rounds = 50;
  TrainSettings training;  // epochs, batch size, lr, momentum, weight decay (seed ignored)
  PartitionSpec partition;
  StrategyOptions strategy;
  uint64_t seed = 0;  // partition, initial model, shuffling, noise
  int pool = 1;       // sites training at once
  // Processes the run's sites are spread over (sim/workers.h); 1: all in this one. A worker
  // silent for worker_timeout_seconds is taken for dead.
  int workers = 1;
  int64_t worker_timeout_seconds = 60;
  // The sites a round needs (the engine's min_sites); 0: every site. Below `sites`, a dead
  // worker's sites drop out as real sites would, and the cell goes on while this many remain.
  int min_sites = 0;
  int MinSites() const { return min_sites > 0 ? min_sites : sites; }
  Transport transport = Transport::kInProcess;
  // Record-level DP-SGD at every site, planned as a deployment plans it (ResolveRecordPrivacy).
  // Its sampling and noise are drawn from `seed` so that runs repeat; a deployed site draws
  // them from the CSPRNG.
  RecordPrivacyOptions record_privacy;
  ClientPrivacyOptions client_privacy;
  // Secure aggregation as deployed (EngineOptions::secure); off unless the experiment asks.
  SecureOptions secure = [] {
    SecureOptions plaintext;
    plaintext.enabled = false;
    return plaintext;
  }();

  // partition.Name(), or "files" with one file per site.
  std::string PartitionName() const;
  // "fedavg / dir(0.5) / seed 0"
  std::string Label() const;
  // "fedavg__dir(0.5)__seed0" with characters safe in a file name.
  std::string DirName() const;
};

// An experiment's data: IDX files (the MNIST family's, in data_dir), or CSV files read as a site
// reads its own (client/tabular.h): a training file that the partitioners deal out, or one
// file per virtual site; and a test file for the central evaluation.
struct ExperimentData {
  std::string format = "idx";  // "idx" or "csv"
  std::string train, test;     // csv
  std::vector<std::string> site_files;
  CsvSchema csv;
};

// An experiment file: a base configuration and the sweep over partitions x strategies x seeds.
struct ExperimentConfig {
  std::string name = "experiment";
  std::string data_dir = kFashionMnistDir;
  ExperimentData data;
  int64_t train_limit = 0;  // first N training examples; 0 = all
  int64_t test_limit = 0;   // first N test examples for the central evaluation; 0 = all
  std::string device = "cpu";
  int threads = 0;  // torch CPU threads; 0 = one per core
  SimulationConfig base;
  std::vector<PartitionSpec> partitions;
  std::vector<StrategyOptions> strategies;
  std::vector<uint64_t> seeds;

  // The sweep's cells, partition-major then strategy then seed: a cell's index K is its position
  // here, the same on every machine for the same experiment file.
  std::vector<SimulationConfig> Runs() const;
  // The experiment with every default filled in, as TOML that LoadExperiment reads back.
  std::string ResolvedToml() const;
};

// Reads an experiment file (TOML; unknown keys are errors):
//   [experiment] name, data_dir, model, sites, rounds, seed, repeats, partitions = [...],
//                strategies = [...], train_limit, test_limit, pool, threads, device,
//                transport = "in-process" (default) or "grpc", workers, worker_timeout,
//                min_sites (1..sites, default every site; >= 3 and fitting SecAgg+ when secure)
//   [model]      file (a TorchScript file, relative to the experiment file; instead of
//                experiment.model), buffers ("average" only); [task] kind, loss, as in
//                coordinator.toml
//   [data]       format = "idx" (default: data_dir) or "csv" with test and either train (dealt
//                by the partitioners) or site_files = [...] (one per virtual site: sites is
//                their number, no partitions); [data.csv] the keys of site.toml's [data.csv]
//   [standardization] features (SimulationConfig::standardize_features)
//   [training]   epochs, batch_size, learning_rate, momentum, weight_decay
//   [record_privacy] enabled, clip_norm, noise_multiplier, sampling_rate, steps_per_round,
//                epsilon, delta (as in coordinator.toml)
//   [client_privacy] enabled, clip_norm, noise_multiplier, delta (ClientPrivacyOptions)
//   [aggregation] mode = "plaintext" (default) or "secure", and the secure-aggregation keys of
//                coordinator.toml (degree, threshold, malicious_coordinator_checks: the virtual
//                sites then sign with certificates of a federation made for the run; clip, bits,
//                max_examples)
// Partitions as ParsePartitionSpec, strategies as ParseStrategySpec.
StatusOr<ExperimentConfig> LoadExperiment(const std::string& path);
StatusOr<ExperimentConfig> ParseExperiment(const std::string& text, const std::string& name,
                                           const std::string& base_dir);

// Local training and central evaluation: the one seam between the simulator and LibTorch
// (a no-op stand-in measures the simulator's own overhead).
class SimulationBackend {
 public:
  virtual ~SimulationBackend() = default;
  // Trains from `start` on the training examples at `indices`; returns the local weights.
  virtual StatusOr<Model> Train(int slot, const Model& start, const std::vector<int64_t>& indices,
                                const TrainSettings& settings, TrainResult* result) = 0;
  // The model's loss and accuracy on the evaluation set.
  virtual StatusOr<EvalResult> Evaluate(int slot, const Model& model) = 0;
  // The run's initial global model: InitialModel(config.model, config.seed) for a built-in
  // model (this default); a TorchScript model's own weights from its file.
  virtual StatusOr<Model> StartingModel(const SimulationConfig& config);
  // Pooled standardisation for the run (SimulationConfig::standardize_features): adds up the
  // feature moments of each site's training examples (`sites[i]`: site i's indices) into
  // `pooled` and from then on trains and evaluates on rows standardised by their mean and std.
  // features = 0: back to the rows as loaded. FailedPrecondition when the training rows do not
  // have `features` features (this default: for any features > 0, it has no rows).
  virtual Status Standardize(const std::vector<std::vector<int64_t>>& sites, int64_t features,
                             FeatureMoments* pooled);
};

// The real thing: `pool` LibTorch trainers over `train` and `test`, which must outlive it.
// `options` names the model (and its script_file and task) and the device.
StatusOr<std::unique_ptr<SimulationBackend>> CreateTorchBackend(const Dataset* train,
                                                                const Dataset* test,
                                                                TrainerOptions options, int pool);
StatusOr<std::unique_ptr<SimulationBackend>> CreateTorchBackend(const Dataset* train,
                                                                const Dataset* test,
                                                                const std::string& model,
                                                                const std::string& device,
                                                                int threads, int pool);

struct RoundMetrics {
  int64_t round = 0;
  double accuracy = 0;
  double loss = 0;
  double seconds = 0;
  double record_epsilon = 0;  // cumulative, with record-level privacy; 0 without
  double client_epsilon = 0;  // cumulative, with client-level privacy; 0 without
};

struct RunResult {
  SimulationConfig config;
  std::vector<RoundMetrics> rounds;
  double best_accuracy = 0;
  double final_accuracy = 0;
  double seconds = 0;
  Model final_model;
  // Workers taken for dead during the run, as rank 0 logged them (run.json "lost_workers").
  std::vector<std::string> lost_workers;
};

struct Progress {
  std::string label;
  int run = 0, runs = 1;  // 1-based, of the runs this call makes
  int cell = 0;           // the run's index in ExperimentConfig::Runs()
  int64_t round = 0, rounds = 0;
  double accuracy = 0;
  double elapsed_seconds = 0;
  double remaining_seconds = 0;  // of the whole experiment, estimated
};
using ProgressFn = std::function<void(const Progress&)>;

// Runs one configuration over `train_labels` (the labels of the backend's training set) and
// writes into `run_dir`: metrics.jsonl, partition.csv, run.json, accuracy.svg, loss.svg,
// final.safetensors, strategy.safetensors. run.json is written first with "complete": false
// and, after every other file, again (atomically: temp file, fsync, rename) with
// "complete": true and the result (best_accuracy, final_accuracy, seconds): a run stopped
// midway never looks finished (RunComplete).
//
// With `workers` (rank 0 of a group, sim/workers.h; config.workers > 1) the other ranks run
// their shares of the sites, and the run is the same to the bit.
StatusOr<RunResult> RunSimulation(const SimulationConfig& config,
                                  const std::vector<uint8_t>& train_labels,
                                  SimulationBackend* backend, const std::string& run_dir,
                                  const ProgressFn& progress = nullptr,
                                  CellWorkers* workers = nullptr);

// An experiment's data, loaded once for all its runs.
struct ExperimentDataSets {
  Dataset train, test;
  // What the partitioners deal out: the training labels, or for a regression one label 0 per
  // example.
  std::vector<uint8_t> partition_labels;
  int classes = kBuiltinNumClasses;
  // One file per site: each file's rows, in order (the training set is their concatenation).
  std::vector<int64_t> site_rows;
};
// IDX files (train_limit, test_limit applied), or CSV files read as a site reads its own
// (client/tabular.h: every bad row an error naming its file and line). InvalidArgument when
// the site files' columns differ or a class id is beyond the task's classes.
StatusOr<ExperimentDataSets> LoadExperimentData(const ExperimentConfig& experiment);

// Whether `run_dir` holds a finished run: its run.json says "complete": true.
bool RunComplete(const std::string& run_dir);

// A finished run read back from its folder: the rounds from metrics.jsonl (accuracy, loss,
// seconds, the epsilons), best and final accuracy and seconds from run.json, the exact doubles
// RunSimulation wrote; `config` is the run's (not read from the folder). FailedPrecondition when
// the run is not complete, DataLoss when its files do not parse or its rounds are not
// config.rounds.
StatusOr<RunResult> LoadRunResult(const SimulationConfig& config, const std::string& run_dir);

// A selection of a sweep's cells: "K", a list "1,4,7", ranges "0-9", or a mix ("0-3,7,9-11"),
// each index below `cells`. Returns the indices ascending without repeats; InvalidArgument,
// saying which part is wrong, for anything else.
StatusOr<std::vector<int>> ParseCellSpec(const std::string& spec, int cells);

struct SweepOptions {
  // The cells to run (indices into Runs()); empty: the whole sweep, which also writes the
  // summaries. Running chosen cells never writes them, since other processes may be running
  // other cells into the same folder: SummarizeRunDir does, once they are done.
  std::vector<int> cells;
  ProgressFn progress;
  // Told of each selected cell that is not run now, and why: "done" (finished before) or
  // "running in another process" (whose lock is held).
  std::function<void(int cell, const SimulationConfig& config, const std::string& why)> skipped;
  // Rank 0 of the workers (sim/workers.h): cells with workers > 1 spread their sites over them.
  CellWorkers* workers = nullptr;
};

struct SweepResult {
  std::vector<RunResult> runs;  // the selected cells that are done, run now or before, in order
  std::vector<int> missing;     // the selected cells that are not (running in another process)
};

// OK when out_dir has no experiment.toml or holds this experiment's (its ResolvedToml());
// FailedPrecondition, saying so, when it holds another experiment's.
Status CheckRunDir(const ExperimentConfig& experiment, const std::string& out_dir);

// Runs a sweep's selected cells into out_dir/<Runs()[K].DirName()>/, each as RunSimulation
// does, skipping those already done. Before anything runs, out_dir/experiment.toml is written
// (the resolved experiment) or, when it exists, must be this experiment's: FailedPrecondition
// otherwise (the folder holds another experiment). A cell runs under an exclusive lock
// (out_dir/.locks/<cell>.lock, flock: released when its process dies; none where the file
// system has no locks), into a folder emptied first, so a folder left half-written by a killed
// process is replaced whole. Processes running different cells into one folder do not disturb
// each other. The data is loaded, and the LibTorch backend made, only when some selected cell
// is still to run.
StatusOr<SweepResult> RunSweep(const ExperimentConfig& experiment, const std::string& out_dir,
                               const SweepOptions& options);
// The same over a given backend and data (`data.partition_labels`, `classes`, `site_rows` are
// what is used): the seam for a fake backend.
StatusOr<SweepResult> RunSweep(const ExperimentConfig& experiment, const ExperimentDataSets& data,
                               SimulationBackend* backend, const std::string& out_dir,
                               const SweepOptions& options);

// The whole sweep (RunSweep with every cell); returns every cell's result.
StatusOr<std::vector<RunResult>> RunExperiment(const ExperimentConfig& experiment,
                                               const std::string& out_dir,
                                               const ProgressFn& progress = nullptr);

// Writes out_dir/summary.md, summary.csv and one accuracy plot per partition
// (accuracy__<partition>.svg, the strategies' mean over seeds) of `runs`: the one writer of a
// sweep's summaries, for the whole sweep and for SummarizeRunDir alike.
Status WriteSweepSummaries(const std::string& title, const std::vector<RunResult>& runs,
                           const std::string& out_dir);

struct SweepSummary {
  ExperimentConfig experiment;  // read from run_dir/experiment.toml
  std::vector<RunResult> runs;  // the done cells, in cell order
  std::vector<int> missing;     // the cells not done
};
// `hansa simulate summarize`: reads run_dir/experiment.toml, loads every done cell
// (LoadRunResult) and writes the summaries of those (WriteSweepSummaries). NotFound without
// experiment.toml; a cell that is done but whose files do not read back is an error.
StatusOr<SweepSummary> SummarizeRunDir(const std::string& run_dir);

// summary.csv / summary.md text: per (strategy, partition), best and final accuracy as
// mean +- std over seeds.
std::string SummaryCsv(const std::vector<RunResult>& runs);
std::string SummaryMarkdown(const std::string& title, const std::vector<RunResult>& runs);

}  // namespace hansa

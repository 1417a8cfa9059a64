// Experiment files of `hansa simulate`: parsing and the resolved form written beside results.
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/csv_config.h"
#include "common/config/config.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/model/models.h"
#include "common/secagg/params.h"
#include "coordinator/privacy_config.h"
#include "sim/simulation.h"

namespace hansa {
namespace {

std::string TomlNumber(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  std::string s = buf;
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

std::string PartitionText(const PartitionSpec& p) {
  switch (p.kind) {
    case PartitionKind::kHomogeneous:
      return "homogeneous";
    case PartitionKind::kPooled:
      return "pooled";
    case PartitionKind::kLabelQuantity:
      return absl::StrCat("label_quantity:", p.labels_per_site);
    case PartitionKind::kLabelDirichlet:
      return absl::StrCat("dirichlet:", TomlNumber(p.beta));
    case PartitionKind::kQuantityDirichlet:
      return absl::StrCat("quantity:", TomlNumber(p.beta));
    case PartitionKind::kNoise:
      return absl::StrCat("noise:", TomlNumber(p.sigma));
  }
  return "?";
}

std::string RecordPrivacyToml(const RecordPrivacyOptions& dp) {
  if (!dp.enabled) return "";
  return absl::StrCat("\n[record_privacy]\nenabled = true\nclip_norm = ", TomlNumber(dp.clip_norm),
                      "\nnoise_multiplier = ", TomlNumber(dp.noise_multiplier),
                      "\nsampling_rate = ", TomlNumber(dp.sampling_rate),
                      "\nsteps_per_round = ", dp.steps,
                      "\nepsilon = ", TomlNumber(dp.budget.epsilon),
                      "\ndelta = ", TomlNumber(dp.budget.delta), "\n");
}

std::string AggregationToml(const SecureOptions& so) {
  if (!so.enabled) return "\n[aggregation]\nmode = \"plaintext\"\n";
  return absl::StrCat(
      "\n[aggregation]\nmode = \"secure\"\ndegree = ", so.degree, "\nthreshold = ", so.threshold,
      "\nmalicious_coordinator_checks = ", so.malicious ? "true" : "false",
      "\nclip = ", TomlNumber(so.clip), "\nbits = ", so.bits, "\nmax_examples = ", so.max_examples,
      "\nunmask_device = ", TomlString(so.unmask_device), "\n");
}

std::string StringList(const std::vector<std::string>& values) {
  std::vector<std::string> quoted;
  for (const std::string& v : values) quoted.push_back(TomlString(v));
  return absl::StrCat("[", absl::StrJoin(quoted, ", "), "]");
}

// [model], [task], [data] and [standardization] of a study's own model and CSV data.
std::string ModelAndDataToml(const ExperimentConfig& e) {
  const SimulationConfig& b = e.base;
  std::string out;
  if (!b.script_file.empty()) {
    absl::StrAppend(&out, "\n[model]\nfile = ", TomlString(b.script_file),
                    "\nbuffers = ", TomlString(std::string(BuffersName(b.task.buffers))),
                    "\n\n[task]\nkind = ", TomlString(std::string(TaskKindName(b.task.kind))),
                    "\nloss = ", TomlString(std::string(LossName(b.task.loss))), "\n");
  }
  const ExperimentData& d = e.data;
  if (d.format == "csv") {
    absl::StrAppend(&out, "\n[data]\nformat = \"csv\"\n");
    if (!d.train.empty()) absl::StrAppend(&out, "train = ", TomlString(d.train), "\n");
    if (!d.site_files.empty()) {
      absl::StrAppend(&out, "site_files = ", StringList(d.site_files), "\n");
    }
    absl::StrAppend(&out, "test = ", TomlString(d.test), "\n\n", CsvSchemaToml(d.csv, "data.csv"));
  }
  if (b.standardize_features > 0) {
    absl::StrAppend(&out, "\n[standardization]\nfeatures = ", b.standardize_features, "\n");
  }
  return out;
}

std::string ClientPrivacyToml(const ClientPrivacyOptions& cp) {
  if (!cp.enabled) return "";
  return absl::StrCat("\n[client_privacy]\nenabled = true\nclip_norm = ", TomlNumber(cp.clip_norm),
                      "\nnoise_multiplier = ", TomlNumber(cp.noise_multiplier),
                      "\ndelta = ", TomlNumber(cp.delta), "\n");
}

}  // namespace

namespace {

// The base configuration's aggregation, transport and privacy settings, and how they go
// together.
// experiment.min_sites: at most the sites, and with secure aggregation the engine's own floor.
Status CheckMinSites(const std::string& name, const SimulationConfig& b) {
  if (b.min_sites > b.sites) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": experiment.min_sites = ", b.min_sites,
                                                   " but the run has ", b.sites,
                                                   " sites; it must be 1..", b.sites));
  }
  if (b.secure.enabled && b.min_sites > 0 && b.min_sites < 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": secure aggregation needs experiment.min_sites >= 3 (it is ",
                     b.min_sites, "): with fewer sites the sum would reveal an individual update"));
  }
  return absl::OkStatus();
}

Status CheckBase(const std::string& name, const std::string& transport, const std::string& mode,
                 SimulationConfig* base) {
  SimulationConfig& b = *base;
  const ClientPrivacyOptions& cp = b.client_privacy;
  const RecordPrivacyOptions& dp = b.record_privacy;
  const TrainSettings& t = b.training;
  if (transport == TransportName(Transport::kGrpc)) {
    b.transport = Transport::kGrpc;
  } else if (transport != TransportName(Transport::kInProcess)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": experiment.transport is '", transport,
                                                   "'; it must be \"in-process\" or \"grpc\""));
  }
  if (mode != "secure" && mode != "plaintext") {
    return absl::InvalidArgumentError(absl::StrCat(name, ": aggregation.mode is '", mode,
                                                   "'; it must be \"plaintext\" or \"secure\""));
  }
  if (b.secure.unmask_device != "auto" && b.secure.unmask_device != "cpu") {
    return absl::InvalidArgumentError(absl::StrCat(name, ": aggregation.unmask_device is '",
                                                   b.secure.unmask_device,
                                                   "'; it must be \"auto\" or \"cpu\""));
  }
  RETURN_IF_ERROR(CheckMinSites(name, b));
  if (b.secure.enabled) {
    if (cp.enabled) {
      return absl::InvalidArgumentError(absl::StrCat(
          name,
          ": [client_privacy] simulates the central Gaussian, which needs aggregation.mode "
          "= \"plaintext\"; the distributed discrete Gaussian is not simulated"));
    }
    // As coordinator.toml's check: the parameters must fit every cohort a round may have.
    for (int n = b.MinSites(); n <= b.sites; ++n) {
      SecAggParams p;
      p.num_sites = static_cast<uint32_t>(n);
      p.degree = b.secure.degree;
      p.threshold = b.secure.threshold;
      p.vector_length = 1;
      RETURN_IF_ERROR(Annotate(ResolveParams(p).status(),
                               absl::StrCat(name, ": secure aggregation of ", n, " sites")));
    }
  }
  if (dp.enabled) {
    // Fails here, not after the data is loaded, when no noise multiplier reaches the budget.
    RETURN_IF_ERROR(Annotate(ResolveRecordPrivacy(dp, t.epochs, b.rounds).status(),
                             absl::StrCat(name, ": [record_privacy]")));
  }
  return absl::OkStatus();
}

// The keys of [model], [task] and [data] as read, before they are checked together.
struct ModelAndDataKeys {
  std::string model_file, kind, loss, buffers;
  bool model_given = false, sites_given = false, partitions_given = false;
  bool regression_given = false;
};

// A study's own model: named by its file's hash, with its task; or a built-in one, which
// takes no [task].
Status CheckModel(const std::string& name, const ModelAndDataKeys& k, SimulationConfig* b) {
  if (k.model_file.empty()) {
    if (!k.kind.empty() || !k.loss.empty() || !k.buffers.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": [task] and model.buffers need a study's own model (model.file)"));
    }
    return Annotate(BuiltinModelLayout(b->model).status(), name);
  }
  if (k.model_given) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": experiment.model and model.file both name the model; give one of them"));
  }
  StatusOr<Task> task = ParseTask(k.kind, k.loss, k.buffers);
  RETURN_IF_ERROR(Annotate(task.status(), name));
  b->task = *task;
  if (b->task.buffers == Buffers::kLocal) {
    return absl::UnimplementedError(absl::StrCat(
        name,
        ": model.buffers = \"local\" is not simulated (the virtual sites share trainers, "
        "and with them a model's buffers); use \"average\""));
  }
  // The site's check: a TorchScript model is the file whose bytes have this hash.
  StatusOr<std::string> bytes = ReadFile(k.model_file, size_t{4} << 30);
  RETURN_IF_ERROR(Annotate(bytes.status(), absl::StrCat(name, ": model.file")));
  b->model = ScriptModelName(ToHex(Sha256(*bytes)));
  b->script_file = k.model_file;
  return absl::OkStatus();
}

// [data]: IDX files in data_dir, or CSV files for a study's own model; one file per site fixes
// the sites and leaves nothing to partition.
Status CheckData(const std::string& name, const ModelAndDataKeys& k, ExperimentConfig* e) {
  ExperimentData& d = e->data;
  SimulationConfig& b = e->base;
  if (d.format == "idx") {
    if (!d.train.empty() || !d.test.empty() || !d.site_files.empty() || !d.csv.label.empty() ||
        b.standardize_features > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name,
                       ": data.train, data.test, data.site_files, [data.csv] and [standardization] "
                       "need data.format = \"csv\""));
    }
    if (!b.script_file.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name,
                       ": a study's own model (model.file) trains on CSV data here: data.format = "
                       "\"csv\""));
    }
    return absl::OkStatus();
  }
  if (d.format != "csv") {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": data.format is '", d.format, "'; it must be \"idx\" or \"csv\""));
  }
  if (b.script_file.empty() || d.test.empty() || d.csv.label.empty() ||
      d.train.empty() == d.site_files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        name,
        ": data.format = \"csv\" needs model.file, data.test, data.csv.label and either "
        "data.train (dealt out by experiment.partitions) or data.site_files (one file per "
        "virtual site)"));
  }
  const bool regression = b.task.kind == TaskKind::kRegression;
  if (k.regression_given && d.csv.regression != regression) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": data.csv.regression = ", d.csv.regression ? "true" : "false",
                     " but task.kind is \"", std::string(TaskKindName(b.task.kind)), "\""));
  }
  d.csv.regression = regression;
  if (!d.site_files.empty()) {
    const int files = static_cast<int>(d.site_files.size());
    if ((k.sites_given && b.sites != files) || k.partitions_given || e->train_limit > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": data.site_files gives each of its ", files,
          " virtual sites its own file: experiment.partitions and train_limit do not apply, and "
          "experiment.sites, when given, must be ",
          files));
    }
    b.sites = files;
  }
  return absl::OkStatus();
}

// Label skew needs class labels; a regression's examples have none.
Status CheckPartitions(const std::string& name, const ExperimentConfig& e) {
  if (e.base.task.kind != TaskKind::kRegression) return absl::OkStatus();
  for (const PartitionSpec& p : e.partitions) {
    if (p.kind == PartitionKind::kLabelQuantity || p.kind == PartitionKind::kLabelDirichlet) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": partition '", p.Name(),
                       "' deals out classes, and a regression's examples have none; use "
                       "homogeneous, quantity:BETA, noise:SIGMA or pooled"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<ExperimentConfig> ParseExperiment(const std::string& text, const std::string& name,
                                           const std::string& base_dir) {
  ASSIGN_OR_RETURN(ConfigReader r, ConfigReader::Parse(text, name, base_dir));
  ExperimentConfig e;
  SimulationConfig& b = e.base;
  ModelAndDataKeys keys;
  keys.model_given = r.Has("experiment.model");
  keys.sites_given = r.Has("experiment.sites");
  keys.partitions_given = r.Has("experiment.partitions");
  keys.regression_given = r.Has("data.csv.regression");
  e.name = r.String("experiment.name", e.name);
  e.data_dir = r.Path("experiment.data_dir", e.data_dir);
  e.train_limit = r.Int("experiment.train_limit", 0, 0, int64_t{1} << 40);
  e.test_limit = r.Int("experiment.test_limit", 0, 0, int64_t{1} << 40);
  e.device = r.String("experiment.device", e.device);
  e.threads = static_cast<int>(r.Int("experiment.threads", 0, 0, 1024));
  b.model = r.String("experiment.model", b.model);
  b.sites = static_cast<int>(r.Int("experiment.sites", b.sites, 1, 100000));
  b.rounds = r.Int("experiment.rounds", b.rounds, 1, 1000000);
  b.pool = static_cast<int>(r.Int("experiment.pool", b.pool, 1, 1024));
  b.workers = static_cast<int>(r.Int("experiment.workers", b.workers, 1, 4096));
  b.worker_timeout_seconds =
      r.Int("experiment.worker_timeout", b.worker_timeout_seconds, 1, int64_t{1} << 30);
  b.min_sites = static_cast<int>(r.Int("experiment.min_sites", 0, 1, 100000));
  const std::string transport = r.String("experiment.transport", TransportName(b.transport));
  const int64_t seed = r.Int("experiment.seed", 0, 0, int64_t{1} << 62);
  const int64_t repeats = r.Int("experiment.repeats", 1, 1, 1000);
  const std::vector<std::string> partitions =
      r.StringList("experiment.partitions", {"homogeneous"});
  const std::vector<std::string> strategies = r.StringList("experiment.strategies", {"fedavg"});
  TrainSettings& t = b.training;
  t.epochs = static_cast<int>(r.Int("training.epochs", t.epochs, 1, 1000));
  t.batch_size = static_cast<int>(r.Int("training.batch_size", t.batch_size, 1, 1 << 16));
  t.learning_rate = r.Double("training.learning_rate", t.learning_rate, 1e-12, 1e6);
  t.momentum = r.Double("training.momentum", t.momentum, 0, 0.999999);
  t.weight_decay = r.Double("training.weight_decay", t.weight_decay, 0, 1e6);
  b.record_privacy = ReadRecordPrivacy(r);
  ClientPrivacyOptions& cp = b.client_privacy;
  cp.enabled = r.Bool("client_privacy.enabled", false);
  cp.clip_norm = r.Double("client_privacy.clip_norm", cp.clip_norm, 1e-9, 1e9);
  cp.noise_multiplier = r.Double("client_privacy.noise_multiplier", cp.noise_multiplier, 1e-6, 1e6);
  cp.delta = r.Double("client_privacy.delta", cp.delta, 1e-300, 0.5);
  const std::string mode = r.String("aggregation.mode", "plaintext");
  b.secure = ReadSecureOptions(r);
  b.secure.enabled = mode == "secure";
  keys.model_file = r.Path("model.file", "");
  keys.buffers = r.String("model.buffers", "");
  keys.kind = r.String("task.kind", "");
  keys.loss = r.String("task.loss", "");
  ExperimentData& d = e.data;
  d.format = r.String("data.format", d.format);
  d.train = r.Path("data.train", "");
  d.test = r.Path("data.test", "");
  for (const std::string& f : r.StringList("data.site_files", {})) {
    d.site_files.push_back(r.Resolve(f));
  }
  d.csv = ReadCsvSchema(r, "data.csv");
  b.standardize_features = r.Int("standardization.features", 0, 0, 1 << 24);
  RETURN_IF_ERROR(r.Finish());
  RETURN_IF_ERROR(CheckModel(name, keys, &b));
  RETURN_IF_ERROR(CheckData(name, keys, &e));
  RETURN_IF_ERROR(CheckBase(name, transport, mode, &b));
  if (partitions.empty() || strategies.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": experiment.partitions and experiment.strategies must not be empty"));
  }
  for (const std::string& p : partitions) {
    ASSIGN_OR_RETURN(PartitionSpec spec, ParsePartitionSpec(p));
    e.partitions.push_back(spec);
  }
  RETURN_IF_ERROR(CheckPartitions(name, e));
  for (const std::string& s : strategies) {
    ASSIGN_OR_RETURN(StrategyOptions spec, ParseStrategySpec(s));
    RETURN_IF_ERROR(Annotate(CheckStrategyCompatible(spec, b.secure.enabled), name));
    e.strategies.push_back(spec);
  }
  for (int64_t i = 0; i < repeats; ++i) e.seeds.push_back(static_cast<uint64_t>(seed + i));
  return e;
}

StatusOr<ExperimentConfig> LoadExperiment(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path, 1 << 20));
  // Paths in the file resolve to absolute ones, so the resolved experiment (experiment.toml in
  // the run folder) reads back from there, and processes started from other working folders
  // resolve the same experiment alike.
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(path, ec).parent_path();
  if (ec) return absl::InternalError(absl::StrCat(path, ": ", ec.message()));
  return ParseExperiment(text, path, dir.lexically_normal().string());
}

std::string ExperimentConfig::ResolvedToml() const {
  std::vector<std::string> p, s;
  for (const PartitionSpec& x : partitions) p.push_back(TomlString(PartitionText(x)));
  for (const StrategyOptions& x : strategies) s.push_back(TomlString(x.Label()));
  const TrainSettings& t = base.training;
  // A study's own model is [model] file; one file per site leaves nothing to partition.
  const std::string model =
      base.script_file.empty() ? absl::StrCat("model = ", TomlString(base.model), "\n") : "";
  const std::string partition_list =
      data.site_files.empty() ? absl::StrCat("partitions = [", absl::StrJoin(p, ", "), "]\n") : "";
  return absl::StrCat(
      "# Resolved by hansa simulate: every option with its value.\n[experiment]\n",
      "name = ", TomlString(name), "\n", "data_dir = ", TomlString(data_dir), "\n", model,
      "sites = ", base.sites, "\n", "rounds = ", base.rounds, "\n",
      "seed = ", seeds.empty() ? 0 : seeds.front(), "\n", "repeats = ", seeds.size(), "\n",
      partition_list, "strategies = [", absl::StrJoin(s, ", "), "]\n",
      "train_limit = ", train_limit, "\n", "test_limit = ", test_limit, "\n", "pool = ", base.pool,
      "\n", "threads = ", threads, "\n", "device = ", TomlString(device), "\n",
      "transport = ", TomlString(TransportName(base.transport)), "\n",
      // Only when set: a run folder of every site reads back the same, and a rerun with another
      // min_sites is another experiment there (CheckRunDir), never taken for complete.
      base.min_sites > 0 ? absl::StrCat("min_sites = ", base.min_sites, "\n") : "",
      // Only with workers: experiment.toml files from before workers read back the same.
      base.workers > 1 ? absl::StrCat("workers = ", base.workers,
                                      "\nworker_timeout = ", base.worker_timeout_seconds, "\n")
                       : "",
      "\n[training]\n", "epochs = ", t.epochs, "\n", "batch_size = ", t.batch_size, "\n",
      "learning_rate = ", TomlNumber(t.learning_rate), "\n", "momentum = ", TomlNumber(t.momentum),
      "\n", "weight_decay = ", TomlNumber(t.weight_decay), "\n",
      RecordPrivacyToml(base.record_privacy), ClientPrivacyToml(base.client_privacy),
      AggregationToml(base.secure), ModelAndDataToml(*this));
}

}  // namespace hansa

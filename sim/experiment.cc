// Experiment files of `hansa simulate`: parsing and the resolved form written beside results.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config/config.h"
#include "common/fileio/fileio.h"
#include "common/model/models.h"
#include "common/secagg/params.h"
#include "coordinator/privacy_config.h"
#include "sim/simulation.h"

namespace hansa {
namespace {

std::string TomlString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

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
  if (b.secure.enabled) {
    if (cp.enabled) {
      return absl::InvalidArgumentError(absl::StrCat(
          name,
          ": [client_privacy] simulates the central Gaussian, which needs aggregation.mode "
          "= \"plaintext\"; the distributed discrete Gaussian is not simulated"));
    }
    SecAggParams p;
    p.num_sites = static_cast<uint32_t>(b.sites);
    p.degree = b.secure.degree;
    p.threshold = b.secure.threshold;
    p.vector_length = 1;
    RETURN_IF_ERROR(Annotate(ResolveParams(p).status(),
                             absl::StrCat(name, ": secure aggregation of ", b.sites, " sites")));
  }
  if (dp.enabled) {
    // Fails here, not after the data is loaded, when no noise multiplier reaches the budget.
    RETURN_IF_ERROR(Annotate(ResolveRecordPrivacy(dp, t.epochs, b.rounds).status(),
                             absl::StrCat(name, ": [record_privacy]")));
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<ExperimentConfig> ParseExperiment(const std::string& text, const std::string& name,
                                           const std::string& base_dir) {
  ASSIGN_OR_RETURN(ConfigReader r, ConfigReader::Parse(text, name, base_dir));
  ExperimentConfig e;
  SimulationConfig& b = e.base;
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
  RETURN_IF_ERROR(r.Finish());
  RETURN_IF_ERROR(CheckBase(name, transport, mode, &b));
  RETURN_IF_ERROR(Annotate(BuiltinModelLayout(b.model).status(), name));
  if (partitions.empty() || strategies.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": experiment.partitions and experiment.strategies must not be empty"));
  }
  for (const std::string& p : partitions) {
    ASSIGN_OR_RETURN(PartitionSpec spec, ParsePartitionSpec(p));
    e.partitions.push_back(spec);
  }
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
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  return ParseExperiment(text, path, dir.empty() ? "/" : dir);
}

std::string ExperimentConfig::ResolvedToml() const {
  std::vector<std::string> p, s;
  for (const PartitionSpec& x : partitions) p.push_back(TomlString(PartitionText(x)));
  for (const StrategyOptions& x : strategies) s.push_back(TomlString(x.Label()));
  const TrainSettings& t = base.training;
  return absl::StrCat(
      "# Resolved by hansa simulate: every option with its value.\n[experiment]\n",
      "name = ", TomlString(name), "\n", "data_dir = ", TomlString(data_dir), "\n",
      "model = ", TomlString(base.model), "\n", "sites = ", base.sites, "\n",
      "rounds = ", base.rounds, "\n", "seed = ", seeds.empty() ? 0 : seeds.front(), "\n",
      "repeats = ", seeds.size(), "\n", "partitions = [", absl::StrJoin(p, ", "), "]\n",
      "strategies = [", absl::StrJoin(s, ", "), "]\n", "train_limit = ", train_limit, "\n",
      "test_limit = ", test_limit, "\n", "pool = ", base.pool, "\n", "threads = ", threads, "\n",
      "device = ", TomlString(device), "\n",
      "transport = ", TomlString(TransportName(base.transport)), "\n\n[training]\n",
      "epochs = ", t.epochs, "\n", "batch_size = ", t.batch_size, "\n",
      "learning_rate = ", TomlNumber(t.learning_rate), "\n", "momentum = ", TomlNumber(t.momentum),
      "\n", "weight_decay = ", TomlNumber(t.weight_decay), "\n",
      RecordPrivacyToml(base.record_privacy), ClientPrivacyToml(base.client_privacy),
      AggregationToml(base.secure));
}

}  // namespace hansa

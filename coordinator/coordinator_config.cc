#include "coordinator/coordinator_config.h"

#include "common/audit/jurisdiction.h"
#include "common/config/config.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/model/task.h"
#include "common/monitoring/monitoring_config.h"
#include "common/net/chunk_limits.h"
#include "common/plan/study_facts.h"
#include "common/secagg/encoding.h"
#include "common/secagg/params.h"
#include "coordinator/privacy_config.h"

namespace hansa {

constexpr uint64_t kMaxScriptFileBytes = uint64_t{4} << 30;

namespace {

// [rounds], [strategy], [training] and [transfer]. `secure`: the default min_sites.
void ReadRounds(ConfigReader& cfg, bool secure, uint64_t seed, EngineOptions* e) {
  e->rounds = cfg.Int("rounds.total", 5, 1, 1000000);
  // Secure aggregation needs three inputs in every sum, so that is its default floor.
  e->min_sites = static_cast<int>(cfg.Int("rounds.min_sites", secure ? 3 : 1, 1, 100000));
  e->wait_for_sites = absl::Seconds(cfg.Double("rounds.wait_for_sites_seconds", 600, 1, 86400));
  e->upload_timeout = absl::Seconds(cfg.Double("rounds.upload_timeout_seconds", 600, 1, 86400));
  e->evaluate_timeout = absl::Seconds(cfg.Double("rounds.evaluate_timeout_seconds", 300, 1, 86400));
  e->site_idle = absl::Seconds(cfg.Double("rounds.site_idle_seconds", 90, 1, 86400));
  e->max_attempts = static_cast<int>(cfg.Int("rounds.max_attempts", 10, 1, 1000));
  // The server step. rounds.server_learning_rate is the strategy's eta (1.0: plain FedAvg).
  e->strategy.name = cfg.String("strategy.name", "fedavg");
  e->strategy.server_lr = cfg.Double("rounds.server_learning_rate", 1.0, 1e-9, 100);
  e->strategy.server_momentum = cfg.Double("strategy.server_momentum", 0.9, 0, 1);
  e->strategy.beta1 = cfg.Double("strategy.beta1", 0.9, 0, 1);
  e->strategy.beta2 = cfg.Double("strategy.beta2", 0.99, 0, 1);
  e->strategy.tau = cfg.Double("strategy.tau", 1e-3, 1e-12, 1);

  e->training.set_epochs(static_cast<uint32_t>(cfg.Int("training.epochs", 1, 1, 1000)));
  e->training.set_batch_size(static_cast<uint32_t>(cfg.Int("training.batch_size", 64, 1, 65536)));
  e->training.set_learning_rate(cfg.Double("training.learning_rate", 0.01, 0, 100));
  e->training.set_momentum(cfg.Double("training.momentum", 0.9, 0, 1));
  e->training.set_weight_decay(cfg.Double("training.weight_decay", 1e-5, 0, 1));
  e->training.set_seed(seed);

  e->chunk_bytes = static_cast<uint32_t>(
      cfg.Int("transfer.chunk_bytes", 1 << 20, kMinChunkBytes, kMaxChunkBytes));
  e->max_chunk_bytes = static_cast<uint32_t>(
      cfg.Int("transfer.max_chunk_bytes", 4 << 20, kMinChunkBytes, kMaxChunkBytes));
}

// [privacy] (client level, its mechanism named by `mechanism` for CheckModes).
void ReadClientPrivacy(ConfigReader& cfg, PrivacyOptions* po) {
  po->clip_norm = cfg.Double("privacy.clip_norm", po->clip_norm, 1e-9, 1e9);
  po->granularity = cfg.Double("privacy.granularity", po->granularity, 1e-12, 1e6);
  po->noise_multiplier = cfg.Double("privacy.noise_multiplier", po->noise_multiplier, 0, 1e6);
  po->min_survivors = static_cast<int>(cfg.Int("privacy.min_survivors", 0, 0, 100000));
  po->budget.epsilon = cfg.Double("privacy.epsilon", po->budget.epsilon, 1e-9, 1e12);
  po->budget.delta = cfg.Double("privacy.delta", po->budget.delta, 1e-300, 0.5);
}

// The aggregation mode, the privacy mechanism and the strategy, and how they go together.
Status CheckModes(const std::string& path, const std::string& mode, const std::string& privacy,
                  EngineOptions* e) {
  PrivacyOptions& po = e->privacy;
  SecureOptions& so = e->secure;
  if (privacy != "none" && privacy != "distributed_discrete_gaussian" &&
      privacy != "central_gaussian") {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": privacy.mechanism is '", privacy,
        "'; it must be \"none\", \"distributed_discrete_gaussian\" (secure aggregation) or "
        "\"central_gaussian\" (plaintext, trusted coordinator)"));
  }
  po.enabled = privacy != "none";
  if (po.enabled) po.mechanism = privacy;
  if (mode != "secure" && mode != "plaintext") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": aggregation.mode is '", mode,
                                                   "'; it must be \"secure\" or \"plaintext\""));
  }
  so.enabled = mode == "secure";
  if (so.unmask_device != "auto" && so.unmask_device != "cpu") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": aggregation.unmask_device is '",
                                                   so.unmask_device,
                                                   "'; it must be \"auto\" or \"cpu\""));
  }
  if (Status st = CheckEngineStrategy(e->strategy, so.enabled); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": [strategy] ", st.message()));
  }
  if (po.enabled && !so.enabled && po.mechanism == "distributed_discrete_gaussian") {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": privacy.mechanism = \"distributed_discrete_gaussian\" needs aggregation.mode = "
        "\"secure\": each site adds only its share of the noise"));
  }
  if (po.enabled && so.enabled && po.mechanism == "central_gaussian") {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": privacy.mechanism = \"central_gaussian\" needs aggregation.mode = "
        "\"plaintext\" (the coordinator adds the noise to the sum it sees); with secure "
        "aggregation use \"distributed_discrete_gaussian\""));
  }
  return absl::OkStatus();
}

// The sites, the minimum per round and the chunk sizes, and whether the SecAgg+ parameters fit
// every cohort size a round may have.
Status CheckSites(const std::string& path, const EngineOptions& e) {
  const SecureOptions& so = e.secure;
  if (so.enabled && e.min_sites < 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": secure aggregation needs rounds.min_sites >= 3 (it is ", e.min_sites,
        "): with fewer sites the sum would reveal an individual update. Raise min_sites or "
        "set aggregation.mode = \"plaintext\""));
  }
  if (e.chunk_bytes > e.max_chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": transfer.chunk_bytes (", e.chunk_bytes,
                                                   ") exceeds transfer.max_chunk_bytes (",
                                                   e.max_chunk_bytes, ")"));
  }
  if (e.allowed_sites.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": [sites] allowed is empty; list the sites of the federation (hansa provision "
        "writes it)"));
  }
  if (e.min_sites > static_cast<int>(e.allowed_sites.size())) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": rounds.min_sites = ", e.min_sites,
                                                   " but only ", e.allowed_sites.size(),
                                                   " sites are allowed"));
  }
  // A cohort may have any size from min_sites to every allowed site: the SecAgg+ degree and
  // threshold must fit each, or a round would fail long after the start.
  for (int n = e.min_sites; so.enabled && n <= static_cast<int>(e.allowed_sites.size()); ++n) {
    SecAggParams p;
    p.num_sites = static_cast<uint32_t>(n);
    p.degree = so.degree;
    p.threshold = so.threshold;
    p.vector_length = 1;
    if (StatusOr<SecAggParams> resolved = ResolveParams(p); !resolved.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": aggregation.degree = ", so.degree, " and threshold = ", so.threshold,
          " do not fit a cohort of ", n, " sites: ", resolved.status().message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// [model] file names a study's TorchScript model: the plans name it by the SHA-256 of the
// file (sites load only a copy of that hash), and its initial weights come from model.init.
// [task] and model.buffers say what it predicts, its loss and how its buffers are shared.
Status ReadModelAndTask(const std::string& path, const std::string& script, const std::string& kind,
                        const std::string& loss, const std::string& buffers, CoordinatorConfig* c) {
  EngineOptions& e = c->engine;
  StatusOr<Task> task = ParseTask(kind, loss, buffers);
  if (!task.ok()) return Annotate(task.status(), path);
  if (!script.empty()) {
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(script, kMaxScriptFileBytes));
    e.model = ScriptModelName(ToHex(Sha256(bytes)));
    if (c->initial_model.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path,
                       ": model.file needs model.init, the model's initial weights as safetensors: "
                       "hansa model inspect ",
                       script, " --write-init init.safetensors writes them"));
    }
  } else if (!(*task == Task{})) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": the built-in model '", e.model,
                     "' is a multiclass classifier on cross-entropy; "
                     "[task] and model.buffers need a study's own model (model.file)"));
  }
  e.task.set_kind(std::string(TaskKindName(task->kind)));
  e.task.set_loss(std::string(LossName(task->loss)));
  e.task.set_buffers(std::string(BuffersName(task->buffers)));
  if (script.empty()) e.task.Clear();  // the built-in models' plans stay as they were
  return absl::OkStatus();
}

// [federation] study, purpose, legal_basis, controllers, retention_days, dpia_reference: the
// study's identifier and GDPR facts, each optional (StudyFactsWarning says what a study without
// them lacks).
void ReadStudyFacts(ConfigReader& cfg, v1::StudyFacts* s) {
  s->set_id(cfg.String("federation.study", ""));
  s->set_purpose(cfg.String("federation.purpose", ""));
  s->set_legal_basis(cfg.String("federation.legal_basis", ""));
  for (std::string& c : cfg.StringList("federation.controllers", {})) {
    s->add_controllers(std::move(c));
  }
  s->set_retention_days(
      static_cast<uint32_t>(cfg.Int("federation.retention_days", 0, 1, kMaxRetentionDays)));
  s->set_dpia_reference(cfg.String("federation.dpia_reference", ""));
}

// One text fact: a key given must say something, fit its bound and hold no control characters
// (line breaks and tabs only in the purpose).
Status CheckFactText(const std::string& path, const char* key, const std::string& text,
                     size_t max_bytes, bool present, bool multiline = false) {
  const auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' ", what));
  };
  if (present && text.find_first_not_of(" \t\r\n") == std::string::npos) {
    return bad("is empty: state it, or leave the key out");
  }
  if (text.size() > max_bytes) {
    return bad(absl::StrCat("has ", text.size(), " bytes; at most ", max_bytes, " are allowed"));
  }
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 || u == 0x7f) && !(multiline && (c == '\n' || c == '\t'))) {
      return bad("contains a control character");
    }
  }
  return absl::OkStatus();
}

Status CheckStudyFacts(const std::string& path, const ConfigReader& cfg, const v1::StudyFacts& s) {
  if (cfg.Has("federation.study")) {
    RETURN_IF_ERROR(Annotate(CheckStudyId("federation.study", s.id()), path));
  }
  RETURN_IF_ERROR(CheckFactText(path, "federation.purpose", s.purpose(), kMaxPurposeBytes,
                                cfg.Has("federation.purpose"), /*multiline=*/true));
  RETURN_IF_ERROR(CheckFactText(path, "federation.legal_basis", s.legal_basis(),
                                kMaxLegalBasisBytes, cfg.Has("federation.legal_basis")));
  RETURN_IF_ERROR(CheckFactText(path, "federation.dpia_reference", s.dpia_reference(),
                                kMaxDpiaReferenceBytes, cfg.Has("federation.dpia_reference")));
  if (static_cast<size_t>(s.controllers_size()) > kMaxControllers) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": 'federation.controllers' lists ",
                                                   s.controllers_size(), " controllers; at most ",
                                                   kMaxControllers, " are allowed"));
  }
  for (int i = 0; i < s.controllers_size(); ++i) {
    RETURN_IF_ERROR(CheckFactText(path, "federation.controllers", s.controllers(i),
                                  kMaxControllerBytes, /*present=*/true));
    for (int j = 0; j < i; ++j) {
      if (s.controllers(j) == s.controllers(i)) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": 'federation.controllers' lists '", s.controllers(i), "' twice"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string StudyFactsWarning(const CoordinatorConfig& config) {
  std::string warning;
  if (const std::string missing = MissingStudyFacts(config.engine.study); !missing.empty()) {
    warning = absl::StrCat(
        "coordinator.toml [federation] states no ", missing,
        " of the study: sites see none in the plans, and sites whose policy sets "
        "require_legal_basis refuse them. Set federation.purpose and federation.legal_basis "
        "(e.g. \"Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR\")");
  }
  if (config.engine.study.id().empty()) {
    absl::StrAppend(&warning, warning.empty() ? "" : ". ",
                    "coordinator.toml [federation] names no study: its plans carry no study "
                    "identifier, and sites whose policy pins one (policy.study) refuse them. Set "
                    "federation.study (e.g. \"fmnist-2027-01\")");
  }
  return warning;
}

StatusOr<CoordinatorConfig> LoadCoordinatorConfig(const std::string& path) {
  ASSIGN_OR_RETURN(ConfigReader cfg, ConfigReader::Load(path));
  CoordinatorConfig c;
  EngineOptions& e = c.engine;
  e.federation = cfg.String("federation.name", "hansa");
  // "EU" and "EEA" stand for their member states; anything else is an ISO 3166-1 code.
  const std::vector<std::string> countries =
      cfg.StringList("federation.allowed_countries", {"EU", "EEA"});
  ReadStudyFacts(cfg, &e.study);
  c.listen = cfg.String("coordinator.listen", c.listen);
  e.state_dir = cfg.Path("coordinator.state_dir", "state");
  c.certificate = cfg.Path("coordinator.certificate", "cert.pem");
  c.private_key = cfg.Path("coordinator.private_key", "key.pem");
  c.ca_certificate = cfg.Path("coordinator.ca_certificate", "ca.pem");
  c.revocation_list = cfg.Path("pki.revocation_list", "");
  c.monitoring = ReadMonitoringConfig(cfg, c.certificate, c.private_key);
  e.coordinator_country = cfg.String("coordinator.country", "");
  c.linger_seconds = cfg.Double("coordinator.linger_seconds", c.linger_seconds, 0, 3600);
  e.allowed_sites = cfg.StringList("sites.allowed", {});

  e.model = cfg.String("model.name", "simple_cnn");
  const std::string script = cfg.Path("model.file", "");
  c.initial_model = cfg.Path("model.initial", cfg.Path("model.init", ""));
  const std::string kind = cfg.String("task.kind", ""), loss = cfg.String("task.loss", "");
  const std::string buffers = cfg.String("model.buffers", "");
  StandardizationOptions& pooled = e.standardization;
  pooled.features = cfg.Int("standardization.features", 0, 0, 1 << 24);
  pooled.clip = cfg.Double("standardization.clip", pooled.clip, 1e-6, 1e12);
  pooled.bits =
      static_cast<int>(cfg.Int("standardization.bits", pooled.bits, 8, kMaxQuantizationBits));
  c.seed = static_cast<uint64_t>(cfg.Int("model.seed", 1, 0, INT64_MAX));

  const std::string mode = cfg.String("aggregation.mode", "secure");
  ReadRounds(cfg, mode == "secure", c.seed, &e);
  e.secure = ReadSecureOptions(cfg);
  // Client-level differential privacy (secure aggregation only).
  const std::string privacy = cfg.String("privacy.mechanism", "none");
  ReadClientPrivacy(cfg, &e.privacy);
  // Record-level DP-SGD at every site; on when the section names a budget or a noise level.
  e.record_privacy = ReadRecordPrivacy(cfg);
  RETURN_IF_ERROR(cfg.Finish());
  RETURN_IF_ERROR(CheckStudyFacts(path, cfg, e.study));
  StatusOr<std::vector<std::string>> allowed = ExpandCountryList(countries);
  if (!allowed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": federation.allowed_countries: ", allowed.status().message()));
  }
  e.allowed_countries = *std::move(allowed);
  RETURN_IF_ERROR(CheckModes(path, mode, privacy, &e));
  RETURN_IF_ERROR(CheckSites(path, e));
  RETURN_IF_ERROR(ReadModelAndTask(path, script, kind, loss, buffers, &c));
  return c;
}

}  // namespace hansa

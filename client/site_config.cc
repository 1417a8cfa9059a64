#include "client/site_config.h"

#include "absl/strings/ascii.h"
#include "client/csv_config.h"
#include "client/dicom_folder.h"
#include "client/image_folder.h"
#include "client/link/proxy_url.h"
#include "common/config/config.h"
#include "common/model/task.h"
#include "common/plan/study_facts.h"

namespace hansa {

StatusOr<SiteConfig> LoadSiteConfig(const std::string& path) {
  ASSIGN_OR_RETURN(ConfigReader cfg, ConfigReader::Load(path));
  SiteConfig c;
  c.name = cfg.RequiredString("site.name");
  c.coordinator = cfg.String("site.coordinator", c.coordinator);
  c.certificate = cfg.Path("site.certificate", "cert.pem");
  c.private_key = cfg.Path("site.private_key", "key.pem");
  c.ca_certificate = cfg.Path("site.ca_certificate", "ca.pem");
  c.state_dir = cfg.Path("site.state_dir", "state");
  c.monitoring = ReadMonitoringConfig(cfg, c.certificate, c.private_key);
  c.reconnect_seconds = cfg.Double("site.reconnect_seconds", c.reconnect_seconds, 1, 86400);
  c.rpc_timeout_seconds = cfg.Double("site.rpc_timeout_seconds", c.rpc_timeout_seconds, 1, 3600);
  c.proxy = cfg.String("network.proxy", "");

  c.policy.coordinator_fingerprint = cfg.String("policy.coordinator_fingerprint", "");
  c.policy.allowed_models = cfg.StringList("policy.allowed_models", BuiltinModels());
  c.policy.require_secure_aggregation = cfg.Bool("policy.require_secure_aggregation", true);
  c.policy.require_legal_basis = cfg.Bool("policy.require_legal_basis", false);
  c.policy.purpose_sha256 = absl::AsciiStrToLower(cfg.String("policy.purpose_sha256", ""));
  c.policy.study = cfg.String("policy.study", "");
  c.policy.min_cohort = static_cast<int>(cfg.Int("policy.min_cohort", 3, 1, 100000));
  c.policy.min_secagg_degree =
      static_cast<int>(cfg.Int("policy.min_secagg_degree", c.policy.min_secagg_degree, 2, 1 << 20));
  c.policy.min_secagg_threshold = static_cast<int>(
      cfg.Int("policy.min_secagg_threshold", c.policy.min_secagg_threshold, 2, 1 << 20));
  c.policy.max_model_bytes = static_cast<uint64_t>(cfg.Int(
      "policy.max_model_bytes", static_cast<int64_t>(c.policy.max_model_bytes), 1024, INT64_MAX));
  c.policy.require_client_dp = cfg.Bool("policy.require_client_dp", false);
  c.policy.max_epsilon = cfg.Double("policy.max_epsilon", 0, 0, 1e12);
  c.policy.delta = cfg.Double("policy.delta", c.policy.delta, 1e-300, 0.5);
  c.policy.require_record_dp = cfg.Bool("policy.require_record_dp", false);
  c.policy.max_record_epsilon = cfg.Double("policy.max_record_epsilon", 0, 0, 1e12);
  c.policy.record_delta = cfg.Double("policy.record_delta", c.policy.record_delta, 1e-300, 0.5);

  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  c.train_images = cfg.Path("data.train_images", dir + "train-images-idx3-ubyte.gz");
  c.train_labels = cfg.Path("data.train_labels", dir + "train-labels-idx1-ubyte.gz");
  c.test_images = cfg.Path("data.test_images", dir + "t10k-images-idx3-ubyte.gz");
  c.test_labels = cfg.Path("data.test_labels", dir + "t10k-labels-idx1-ubyte.gz");
  c.format = cfg.String("data.format", c.format);
  c.train_dir = cfg.Path("data.train_dir", "");
  c.test_dir = cfg.Path("data.test_dir", "");
  c.classes = cfg.StringList("data.classes", {});
  c.manifest = cfg.String("data.manifest", "");
  c.train_file = cfg.Path("data.train", "");
  c.test_file = cfg.Path("data.test", "");
  c.test_fraction = cfg.Double("data.test_fraction", 0, 0, 0.9);
  c.split_seed = static_cast<uint64_t>(cfg.Int("data.split_seed", 1, 0, INT64_MAX));
  c.csv = ReadCsvSchema(cfg, "data.csv");
  c.model_files.clear();
  for (const std::string& file : cfg.StringList("model.files", {})) {
    c.model_files.push_back(cfg.Resolve(file));
  }
  c.shard_count = static_cast<int>(cfg.Int("data.shard_count", 1, 1, 100000));
  c.shard_index = static_cast<int>(cfg.Int("data.shard_index", 0, 0, 100000));
  c.train_limit = cfg.Int("data.train_limit", 0, 0, INT64_MAX);
  c.test_limit = cfg.Int("data.test_limit", 0, 0, INT64_MAX);

  c.trainer.device = cfg.String("compute.device", "auto");
  c.trainer.threads = static_cast<int>(cfg.Int("compute.threads", 0, 0, 1024));
  DataParallelOptions& dp = c.data_parallel;
  dp.world_size = static_cast<int>(cfg.Int("compute.world_size", 1, 1, 4096));
  dp.rank = static_cast<int>(cfg.Int("compute.rank", 0, 0, 4095));
  dp.rendezvous = cfg.String("compute.rendezvous", dp.rendezvous);
  dp.backend = cfg.String("compute.backend", dp.backend);
  dp.interface = cfg.String("compute.interface", "");
  dp.timeout_seconds =
      cfg.Double("compute.collective_timeout_seconds", dp.timeout_seconds, 1, 86400);
  RETURN_IF_ERROR(cfg.Finish());
  if (!c.proxy.empty()) {
    if (Status st = ValidateProxyUrl(c.proxy); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", st.message()));
    }
  }
  if (c.shard_index >= c.shard_count) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": data.shard_index (", c.shard_index,
                                                   ") must be below data.shard_count (",
                                                   c.shard_count, ")"));
  }
  if (c.format != "idx" && c.format != "image_folder" && c.format != "dicom_folder" &&
      c.format != "csv") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": data.format is '", c.format,
                     "'; it must be \"idx\", \"image_folder\", \"dicom_folder\" or \"csv\""));
  }
  if (c.format == "csv" && (c.train_file.empty() || c.csv.label.empty() ||
                            (c.test_file.empty() == (c.test_fraction == 0)))) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": data.format = \"csv\" needs data.train, data.csv.label and either data.test or "
        "data.test_fraction"));
  }
  if ((c.format == "image_folder" || c.format == "dicom_folder") &&
      (c.train_dir.empty() || c.test_dir.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": data.format = \"", c.format,
                                                   "\" needs data.train_dir and data.test_dir"));
  }
  if (dp.rank >= dp.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": compute.rank (", dp.rank,
                                                   ") must be below compute.world_size (",
                                                   dp.world_size, ")"));
  }
  for (const auto& m : c.policy.allowed_models) {
    if (!BuiltinModelLayout(m).ok() && !IsScriptModelName(m)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": policy.allowed_models lists '", m,
                       "', which is neither a built-in model nor \"sha256:<64 hex digits>\" of a "
                       "TorchScript file (hansa model inspect prints it)"));
    }
  }
  if (cfg.Has("policy.study")) {
    RETURN_IF_ERROR(Annotate(CheckStudyId("policy.study", c.policy.study), path));
  }
  if (const std::string& pin = c.policy.purpose_sha256;
      !pin.empty() &&
      (pin.size() != 64 || pin.find_first_not_of("0123456789abcdef") != std::string::npos)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": policy.purpose_sha256 is '", pin,
                     "'; it must be 64 hex digits, the SHA-256 of the study's purpose (the site's "
                     "ledger and report show it: study_facts purpose_sha256)"));
  }
  return c;
}

namespace {

// The site's table and its test part: a test file, or test_fraction of the rows held out by
// split_seed.
Status LoadCsvSplit(const SiteConfig& config, Dataset* train, Dataset* test) {
  const bool classification = !config.csv.regression;
  ASSIGN_OR_RETURN(TabularData table, LoadCsv(config.train_file, config.csv));
  ASSIGN_OR_RETURN(Dataset all, TableToDataset(std::move(table), classification));
  if (!config.test_file.empty()) {
    ASSIGN_OR_RETURN(TabularData test_table, LoadCsv(config.test_file, config.csv));
    ASSIGN_OR_RETURN(*test, TableToDataset(std::move(test_table), classification));
    *train = std::move(all);
    return absl::OkStatus();
  }
  std::vector<int64_t> order = SeededPermutation(all.size(), config.split_seed);
  const auto held_out =
      static_cast<int64_t>(config.test_fraction * static_cast<double>(all.size()));
  if (held_out < 1 || held_out >= all.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config.train_file, ": data.test_fraction = ", config.test_fraction, " of ",
                     all.size(), " rows leaves no test or no training rows"));
  }
  ASSIGN_OR_RETURN(*test, Subset(all, {order.begin(), order.begin() + held_out}));
  ASSIGN_OR_RETURN(*train, Subset(all, {order.begin() + held_out, order.end()}));
  return absl::OkStatus();
}

}  // namespace

Status LoadSiteData(const SiteConfig& config, Dataset* train, Dataset* test) {
  Dataset all_train, all_test;
  if (config.format == "image_folder") {
    ImageFolderOptions options;
    options.rows = kBuiltinImageSize;
    options.cols = kBuiltinImageSize;
    options.classes = config.classes;
    options.manifest = config.manifest;
    // The test set is labelled by the training set's classes, whatever folders it has.
    if (options.classes.empty() && options.manifest.empty()) {
      ASSIGN_OR_RETURN(options.classes, ImageFolderClasses(config.train_dir));
    }
    ASSIGN_OR_RETURN(all_train, LoadImageFolder(config.train_dir, options));
    ASSIGN_OR_RETURN(all_test, LoadImageFolder(config.test_dir, options));
  } else if (config.format == "dicom_folder") {
    DicomFolderOptions options;
    options.rows = kBuiltinImageSize;
    options.cols = kBuiltinImageSize;
    options.classes = config.classes;
    if (!config.manifest.empty()) options.manifest = config.manifest;
    ASSIGN_OR_RETURN(all_train, LoadDicomFolder(config.train_dir, options));
    ASSIGN_OR_RETURN(all_test, LoadDicomFolder(config.test_dir, options));
  } else if (config.format == "csv") {
    RETURN_IF_ERROR(LoadCsvSplit(config, &all_train, &all_test));
  } else {
    ASSIGN_OR_RETURN(all_train, LoadIdxDataset(config.train_images, config.train_labels));
    ASSIGN_OR_RETURN(all_test, LoadIdxDataset(config.test_images, config.test_labels));
  }
  ASSIGN_OR_RETURN(*train, Shard(all_train, config.shard_index, config.shard_count));
  ASSIGN_OR_RETURN(*test, Shard(all_test, config.shard_index, config.shard_count));
  if (config.train_limit > 0) *train = Head(*train, config.train_limit);
  if (config.test_limit > 0) *test = Head(*test, config.test_limit);
  return absl::OkStatus();
}

}  // namespace hansa

// site.toml: everything hansa-client reads. The [policy] section is the site's own rules,
// enforced by the client whatever the coordinator asks.
#pragma once

#include <string>
#include <vector>

#include "client/policy.h"
#include "client/tabular.h"
#include "client/train/data_parallel.h"
#include "client/train/trainer.h"
#include "common/monitoring/monitoring_config.h"
#include "common/net/rpc.h"
#include "common/status/status.h"

namespace hansa {

struct SiteConfig {
  std::string name;
  std::string coordinator = "127.0.0.1:50051";
  std::string certificate;
  std::string private_key;
  std::string ca_certificate;
  std::string state_dir = "state";
  MonitoringConfig monitoring;  // [monitoring]: Prometheus metrics (and the site's page)

  // The site's own rules ([policy]).
  SitePolicy policy;

  // [model] files: this site's copies of the study's TorchScript models. Each is hashed when
  // the site opens and loaded only when policy.allowed_models lists "sha256:<its hash>".
  std::vector<std::string> model_files;

  // Data: IDX files ("idx"), images in class folders ("image_folder": train_dir/<class>/*.png
  // or *.jpg, resized to the built-in models' 28 x 28 grey input; `classes` fixes the label
  // order, default the folders' names sorted) or a table ("csv": train_file and test_file, or
  // test_fraction of train_file held out by split_seed; csv says how to read the columns), or
  // DICOM files ("dicom_folder": train_dir and test_dir, each with the label manifest
  // `manifest`, default labels.csv; client/dicom_folder.h). An image folder with `manifest`
  // takes its labels from that file in each dir instead of from the folder names.
  // A site trains on all of its own data unless shard_count > 1 asks for a shard.
  std::string format = "idx";
  std::string train_images, train_labels, test_images, test_labels;
  std::string train_dir, test_dir;
  std::vector<std::string> classes;
  std::string manifest;  // a file name in train_dir and in test_dir
  std::string train_file, test_file;
  double test_fraction = 0;
  uint64_t split_seed = 1;
  CsvSchema csv;
  int shard_index = 0;
  int shard_count = 1;
  int64_t train_limit = 0;  // 0 = the whole shard (tests use small shards)
  int64_t test_limit = 0;

  TrainerOptions trainer;  // model is set per plan
  // [compute] world_size > 1: the site trains data-parallel over that many processes
  // (data_parallel.h); this process is `rank` (hansa-client --rank overrides it).
  DataParallelOptions data_parallel;

  double reconnect_seconds = 600;  // how long to keep retrying a lost coordinator
  double rpc_timeout_seconds = 30;
  // [network] proxy: an HTTP CONNECT proxy "http://host:port" to reach the coordinator
  // through; empty: gRPC's grpc_proxy/https_proxy/http_proxy environment variables apply.
  std::string proxy;
};

StatusOr<SiteConfig> LoadSiteConfig(const std::string& path);

// The site's shard of its training and test files, capped by train_limit / test_limit.
Status LoadSiteData(const SiteConfig& config, Dataset* train, Dataset* test);

}  // namespace hansa

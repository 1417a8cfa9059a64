// site.toml: everything hansa-client reads. The [policy] section is the site's own rules,
// enforced by the client whatever the coordinator asks.
#pragma once

#include <string>
#include <vector>

#include "client/trainer.h"
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

  // Policy.
  std::string coordinator_fingerprint;  // SHA-256 of the coordinator certificate; empty = any
  std::vector<std::string> allowed_models;
  bool require_secure_aggregation = true;
  int min_cohort = 3;  // refuse rounds with fewer sites than this
  // Floors under the coordinator's SecAgg+ parameters (CheckSecAggPolicy): a plan giving each
  // site fewer than min_secagg_degree neighbours (k) or a threshold t below
  // min_secagg_threshold is refused. The defaults refuse nothing ResolveParams allows (k = 2,
  // t = 2 is the 3-site cohort); a site raises them to need more colluders against it.
  int min_secagg_degree = 2;
  int min_secagg_threshold = 2;
  // The largest global model the site downloads: a larger declared size is refused before
  // anything is allocated for it.
  uint64_t max_model_bytes = kDefaultMaxModelBytes;
  // Client-level differential privacy, accounted by the site itself (state_dir/privacy.json):
  // a training plan without it is refused when either is set, and a plan whose round would
  // take the site past max_epsilon (at `delta`) is refused. 0 = no budget of the site's own.
  bool require_client_dp = false;
  double max_epsilon = 0;
  double delta = 1e-5;
  // Record-level DP-SGD, the same way (state_dir/record_privacy.json): a training plan without
  // it is refused when either is set; one that would take the site's records past
  // max_record_epsilon (at record_delta) is refused.
  bool require_record_dp = false;
  double max_record_epsilon = 0;
  double record_delta = 1e-5;

  // Data: IDX files and this site's shard of them.
  std::string train_images, train_labels, test_images, test_labels;
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
};

StatusOr<SiteConfig> LoadSiteConfig(const std::string& path);

// The site's shard of its training and test files, capped by train_limit / test_limit.
Status LoadSiteData(const SiteConfig& config, Dataset* train, Dataset* test);

}  // namespace hansa

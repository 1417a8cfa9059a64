// What a round engine is configured with (coordinator.toml, hansa simulate's experiment files,
// tests): plain option structs, copied into the engine at Create.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/audit/audit_log.h"
#include "common/audit/jurisdiction.h"
#include "common/clock/clock.h"
#include "common/privacy/ledger.h"
#include "common/privacy/record_privacy.h"
#include "common/status/status.h"
#include "coordinator/strategy.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

class FederationStatusBoard;

// Secure aggregation (SecAgg+, common/secagg): the coordinator learns only the sum.
struct SecureOptions {
  bool enabled = true;
  int degree = 0;     // k; 0 = all other sites up to 32 sites
  int threshold = 0;  // t; 0 = the safe default
  bool malicious = false;
  double clip = 1.0;             // each update value is clipped to [-clip, clip]
  int bits = 0;                  // quantization bits; 0 = DefaultQuantizationBits(cohort)
  int64_t max_examples = 60000;  // a site's weight is min(1, examples / max_examples)
  // Where the masks are removed from the sum: "auto" (a CUDA device when the process sees
  // one, cuda/masked_upload.h) or "cpu". The sum is the same either way.
  std::string unmask_device = "auto";
  absl::Duration stage_timeout = absl::Minutes(2);
};

// Pooled feature standardisation (common/plan/standardization.h), a step before round 1
// under secure aggregation: the coordinator unmasks only the sites' pooled feature moments.
struct StandardizationOptions {
  int64_t features = 0;  // the width of the sites' feature rows; 0: no such step
  // The moments' secure aggregation: each value is clipped to [-clip, clip] (a site's sum of
  // squares of a feature must fit: a site refuses the step rather than clip) and quantized on
  // the 64-bit ring with `bits` bits (a step of 2.2e-6 with the defaults, room for 2,048
  // sites). A site with larger sums needs a larger clip, at a coarser step.
  double clip = 1e10;
  int bits = 53;
};

// Client-level differential privacy under secure aggregation: the distributed discrete
// Gaussian (common/privacy/ddg.h), accounted against the federation's budget.
struct PrivacyOptions {
  bool enabled = false;
  // distributed_discrete_gaussian (secure aggregation) or central_gaussian (plaintext: the
  // coordinator is trusted, sites' updates are clipped and checked, noise added to the sum).
  std::string mechanism = "distributed_discrete_gaussian";
  double clip_norm = 1.0;         // L2 bound of each site's update
  double granularity = 1e-4;      // real units per integer step
  double noise_multiplier = 1.0;  // stddev of the summed noise / clip_norm
  int min_survivors = 0;          // 0 = min_sites; fewer inputs and the sum is not released
  PrivacyBudget budget{10.0, 1e-5};
  // Simulations only (never read from coordinator.toml): the central Gaussian's noise is drawn
  // from this seed, the round and the attempt, so that a simulated run repeats. Empty (every
  // deployment): from the operating system's CSPRNG.
  std::string central_noise_seed;
};

struct EngineOptions {
  std::string federation = "hansa";
  std::string coordinator_country;
  std::string state_dir = "state";
  std::string model = "simple_cnn";
  // What the model predicts, its loss and its buffers' sharing (common/model/task.h); empty:
  // a built-in model's multiclass cross-entropy.
  v1::TaskPlan task;
  StandardizationOptions standardization;
  std::vector<std::string> allowed_sites;  // certificate CNs that may join
  int64_t rounds = 5;
  int min_sites = 1;
  absl::Duration wait_for_sites = absl::Minutes(10);
  absl::Duration upload_timeout = absl::Minutes(10);
  absl::Duration evaluate_timeout = absl::Minutes(5);
  // A site that has not asked for work for this long is not put in a new cohort.
  absl::Duration site_idle = absl::Seconds(90);
  // Plans one round may get in one run of the engine (the first and its retries). When the
  // last one ends without an aggregate, Run stops with ResourceExhausted naming the round
  // (round_abandoned on record): every secure attempt costs the sites key material and, for
  // those that upload, privacy. A restarted engine tries the round again.
  int max_attempts = 10;
  v1::TrainingSettings training;
  // The server step on each round's weighted mean update. Only strategies that need nothing
  // but that mean (and nothing from the sites) run here: CheckEngineStrategy.
  StrategyOptions strategy;
  uint32_t chunk_bytes = 1 << 20;
  uint32_t max_chunk_bytes = 4 << 20;
  int64_t max_examples = int64_t{1} << 40;
  SecureOptions secure;
  // The DDG needs secure.enabled, the central Gaussian plaintext. Training stops, with a message,
  // before a round that would take the federation over its budget; epsilon goes into metrics.jsonl
  // and the audit log.
  PrivacyOptions privacy;
  // Record-level DP-SGD at every site. Independent of `privacy` (both may be on: each guarantee
  // has its own budget and ledger, state_dir/record_privacy.json); either aggregation mode.
  RecordPrivacyOptions record_privacy;

  // Compliance records (audit.jsonl, common/audit/events.h). Null: none (simulation, most unit
  // tests). Each record is appended and fsynced before the engine acknowledges what it states;
  // when an append fails, that action fails too.
  std::shared_ptr<AuditLog> audit;
  std::string config_sha256;  // of coordinator.toml as read, for federation_started
  // The study's GDPR facts ([federation] purpose, legal_basis, ...): in federation_started and
  // in every plan (common/plan/study_facts.h). Empty: none stated.
  v1::StudyFacts study;
  // Countries (certificate C) whose sites may join; a site from elsewhere is refused at Join.
  std::vector<std::string> allowed_countries = DefaultAllowedCountries();
  // Every reading of the time and every deadline wait of the engine (tests pass a FakeClock).
  std::shared_ptr<Clock> clock = Clock::Real();
  // What people watching the federation see (coordinator/federation_status.h); null: nobody.
  std::shared_ptr<FederationStatusBoard> status;
};

// OK for fedavg, fedavgm, fedadam, fedyogi, fedadagrad; InvalidArgument, with what to use
// instead, for robust aggregators under secure aggregation and for strategies this coordinator
// cannot run (individual updates, or site-side recipes not on the wire: hansa simulate has them).
Status CheckEngineStrategy(const StrategyOptions& strategy, bool secure_aggregation);

}  // namespace hansa

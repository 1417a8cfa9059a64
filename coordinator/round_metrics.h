// The metrics line of one evaluated round (a line of state_dir/metrics.jsonl: round, sites,
// accuracy, loss, seconds, bytes_up, bytes_down, epsilon when privacy is on, ...) and the file
// itself, rewritten from the state database. Plain functions; the engine calls them from its
// driver thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/metrics/metrics.h"
#include "common/privacy/accounts.h"
#include "common/status/status.h"
#include "coordinator/state_store.h"
#include "hansa/v1/hansa.pb.h"
#include "nlohmann/json.hpp"

namespace hansa {

// What one evaluation of the model published after `trained.round` gathered.
struct EvaluationInput {
  int64_t round = 0;
  const RoundRecord* trained = nullptr;  // the training round that published the model
  const std::map<std::string, v1::MetricsReport>* reports = nullptr;  // by site
  int64_t bytes_down = 0;                                             // since it was published
  double seconds = 0;                                                 // the evaluation's
  std::string model_sha256;
  const PrivacyAccounts* privacy = nullptr;  // spent so far, when a ledger is open
};

// The line: means over the reports weighted by their example counts (null when none came).
// When every report carries a confusion matrix of the same classes, the federation's and each
// site's balanced accuracy and macro F1 too, from the summed matrices (common/metrics).
nlohmann::ordered_json MetricsLine(const EvaluationInput& in);

// A report's confusion matrix, when it has one: InvalidArgument unless it has classes² counts
// summing to num_examples. nullopt for a report without one.
StatusOr<std::optional<ConfusionMatrix>> ReportedConfusion(const v1::MetricsReport& report);

// Rewrites state_dir/metrics.jsonl atomically from every line the store holds.
Status WriteMetricsFile(StateStore& store, const std::string& state_dir);

}  // namespace hansa

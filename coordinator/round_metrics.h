// The metrics line of one evaluated round (a line of state_dir/metrics.jsonl: round, sites,
// accuracy, loss, seconds, bytes_up, bytes_down, epsilon when privacy is on, ...) and the file
// itself, written from the state database and appended to round by round. Plain functions; the
// engine calls them from its driver thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

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
// Where every report carries the same kind of counts (common/metrics), the federation's figures
// from their sums, and each site's from its own (WriteClinicalMetrics): balanced accuracy and
// macro F1 (confusion matrices), AUC (binary score histograms), MSE, MAE and R² (regression).
nlohmann::ordered_json MetricsLine(const EvaluationInput& in);

// A report's counts, each part where the report has one: InvalidArgument when a part does not
// fit the report (shape, more than 4096 classes or EvaluationCounts::kMaxScoreBins bins,
// negative or non-finite sums, counts other than num_examples).
StatusOr<EvaluationCounts> ReportedCounts(const v1::MetricsReport& report);

// Adds to `out` the figures that `counts` allow, under the keys metrics.jsonl uses:
// balanced_accuracy and macro_f1 (a confusion matrix), auc (score histograms holding both
// classes), mse, mae and r2 (regression sums). Leaves out the keys that do not apply. The
// simulator writes its lines with it too.
void WriteClinicalMetrics(const EvaluationCounts& counts, nlohmann::ordered_json* out);

// Rewrites state_dir/metrics.jsonl atomically from every line the store holds: when the engine
// starts, so the file is whole again after a crash.
Status WriteMetricsFile(StateStore& store, const std::string& state_dir);

// Appends one round's `line` (already in the store) and a newline to state_dir/metrics.jsonl and
// fsyncs it: each round adds its line instead of rewriting the file from the store, which cost
// every round time, memory and writes in proportion to the rounds before it. When the write or
// the fsync fails the file is cut back to its old length and the error returned.
Status AppendMetricsLine(const std::string& state_dir, std::string_view line);

}  // namespace hansa

#include "coordinator/round_metrics.h"

#include "absl/strings/str_cat.h"
#include "common/fileio/fileio.h"

namespace hansa {

StatusOr<std::optional<ConfusionMatrix>> ReportedConfusion(const v1::MetricsReport& report) {
  if (report.confusion_size() == 0) return std::optional<ConfusionMatrix>();
  std::vector<int64_t> counts;
  uint64_t sum = 0;
  for (uint64_t c : report.confusion()) {
    if (c > report.num_examples()) {
      return absl::InvalidArgumentError("a confusion count over the examples evaluated");
    }
    counts.push_back(static_cast<int64_t>(c));
    sum += c;
  }
  if (sum != report.num_examples() || report.classes() > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("the confusion matrix counts ", sum,
                                                   " examples of ", report.classes(),
                                                   " classes, the report ", report.num_examples()));
  }
  ASSIGN_OR_RETURN(ConfusionMatrix m,
                   ConfusionMatrix::FromCounts(static_cast<int>(report.classes()), counts));
  return std::optional<ConfusionMatrix>(std::move(m));
}

nlohmann::ordered_json MetricsLine(const EvaluationInput& in) {
  double n = 0, correct = 0, loss = 0;
  nlohmann::ordered_json per_site = nlohmann::ordered_json::object();
  // The federation's matrix: the sum of the sites', while every report has one that fits.
  std::optional<ConfusionMatrix> pooled;
  bool all_matrices = !in.reports->empty();
  for (const auto& [site, r] : *in.reports) {
    n += static_cast<double>(r.num_examples());
    correct += r.accuracy() * static_cast<double>(r.num_examples());
    loss += r.loss() * static_cast<double>(r.num_examples());
    per_site[site] = {
        {"accuracy", r.accuracy()}, {"loss", r.loss()}, {"examples", r.num_examples()}};
    StatusOr<std::optional<ConfusionMatrix>> m = ReportedConfusion(r);
    if (!m.ok() || !m->has_value()) {
      all_matrices = false;
      continue;
    }
    per_site[site]["balanced_accuracy"] = (*m)->BalancedAccuracy();
    per_site[site]["macro_f1"] = (*m)->MacroF1();
    if (!pooled) {
      pooled = **m;
    } else if (!pooled->Merge(**m).ok()) {
      all_matrices = false;
    }
  }
  const RoundRecord& trained = *in.trained;
  nlohmann::ordered_json line;
  line["round"] = in.round;
  line["sites"] = trained.sites.size();
  line["accuracy"] = n > 0 ? nlohmann::ordered_json(correct / n) : nullptr;
  line["loss"] = n > 0 ? nlohmann::ordered_json(loss / n) : nullptr;
  if (all_matrices && pooled) {
    line["balanced_accuracy"] = pooled->BalancedAccuracy();
    line["macro_f1"] = pooled->MacroF1();
  }
  line["seconds"] = trained.seconds;
  line["bytes_up"] = trained.bytes_up;
  line["bytes_down"] = trained.bytes_down + in.bytes_down;
  line["examples"] = trained.examples;
  line["evaluated_on"] = static_cast<int64_t>(n);
  line["evaluation_seconds"] = in.seconds;
  line["model_sha256"] = in.model_sha256;
  if (const PrivacyLedger* client = in.privacy ? in.privacy->client() : nullptr) {
    line["epsilon"] = client->Spent().epsilon;
    line["delta"] = client->budget().delta;
  }
  if (const PrivacyLedger* record = in.privacy ? in.privacy->record() : nullptr) {
    line["record_epsilon"] = record->Spent().epsilon;
    line["record_delta"] = record->budget().delta;
  }
  line["per_site"] = per_site;
  return line;
}

Status WriteMetricsFile(StateStore& store, const std::string& state_dir) {
  ASSIGN_OR_RETURN(std::vector<std::string> lines, store.AllMetrics());
  std::string text;
  for (const auto& l : lines) absl::StrAppend(&text, l, "\n");
  return WriteFileAtomically(state_dir + "/metrics.jsonl", text);
}

}  // namespace hansa

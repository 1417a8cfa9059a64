#include "coordinator/round_metrics.h"

#include "absl/strings/str_cat.h"
#include "common/fileio/fileio.h"

namespace hansa {

nlohmann::ordered_json MetricsLine(const EvaluationInput& in) {
  double n = 0, correct = 0, loss = 0;
  nlohmann::ordered_json per_site = nlohmann::ordered_json::object();
  for (const auto& [site, r] : *in.reports) {
    n += static_cast<double>(r.num_examples());
    correct += r.accuracy() * static_cast<double>(r.num_examples());
    loss += r.loss() * static_cast<double>(r.num_examples());
    per_site[site] = {
        {"accuracy", r.accuracy()}, {"loss", r.loss()}, {"examples", r.num_examples()}};
  }
  const RoundRecord& trained = *in.trained;
  nlohmann::ordered_json line;
  line["round"] = in.round;
  line["sites"] = trained.sites.size();
  line["accuracy"] = n > 0 ? nlohmann::ordered_json(correct / n) : nullptr;
  line["loss"] = n > 0 ? nlohmann::ordered_json(loss / n) : nullptr;
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

#include "coordinator/round_metrics.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fileio/fileio.h"

namespace hansa {

namespace {

constexpr uint32_t kMaxClasses = 4096;

// The failed call's errno as a storage error naming `path` (a full disk: ResourceExhausted).
Status FileError(const char* what, const std::string& path) {
  const int err = errno;
  std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  return MarkStorageError(err == ENOSPC || err == EDQUOT || err == EFBIG
                              ? absl::ResourceExhaustedError(message)
                              : absl::InternalError(message));
}

// A report's repeated counts as signed ones: each at most num_examples (else InvalidArgument).
StatusOr<std::vector<int64_t>> Counts(const google::protobuf::RepeatedField<uint64_t>& counts,
                                      uint64_t examples, const char* what) {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(counts.size()));
  for (uint64_t c : counts) {
    if (c > examples) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a count of ", c, " in the ", what, ", over the ", examples, " examples evaluated"));
    }
    out.push_back(static_cast<int64_t>(c));
  }
  return out;
}

}  // namespace

StatusOr<EvaluationCounts> ReportedCounts(const v1::MetricsReport& report) {
  const uint64_t examples = report.num_examples();
  if (examples > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError(absl::StrCat("a report of ", examples, " examples"));
  }
  if (report.confusion_size() > 0 && report.classes() > kMaxClasses) {
    return absl::InvalidArgumentError(absl::StrCat("a confusion matrix of ", report.classes(),
                                                   " classes; at most ", kMaxClasses));
  }
  if (report.positive_scores_size() > EvaluationCounts::kMaxScoreBins ||
      report.negative_scores_size() > EvaluationCounts::kMaxScoreBins) {
    return absl::InvalidArgumentError(absl::StrCat(
        "score histograms of ", report.positive_scores_size(), " and ",
        report.negative_scores_size(), " bins; at most ", EvaluationCounts::kMaxScoreBins));
  }
  ASSIGN_OR_RETURN(std::vector<int64_t> confusion,
                   Counts(report.confusion(), examples, "confusion matrix"));
  ASSIGN_OR_RETURN(std::vector<int64_t> positives,
                   Counts(report.positive_scores(), examples, "positive score histogram"));
  ASSIGN_OR_RETURN(std::vector<int64_t> negatives,
                   Counts(report.negative_scores(), examples, "negative score histogram"));
  const v1::RegressionReport& r = report.regression();
  if (r.count() > examples) {
    return absl::InvalidArgumentError(
        absl::StrCat("the regression sums count ", r.count(), " examples, the report ", examples));
  }
  const RegressionSums regression{static_cast<int64_t>(r.count()), r.squared_error(),
                                  r.absolute_error(), r.target(), r.target_squared()};
  return EvaluationCounts::Of(static_cast<int64_t>(examples), static_cast<int>(report.classes()),
                              confusion, std::move(positives), std::move(negatives), regression);
}

void WriteClinicalMetrics(const EvaluationCounts& counts, nlohmann::ordered_json* out) {
  if (counts.confusion) {
    (*out)["balanced_accuracy"] = counts.confusion->BalancedAccuracy();
    (*out)["macro_f1"] = counts.confusion->MacroF1();
  }
  if (counts.scores) {
    if (StatusOr<double> auc = counts.scores->Auc(); auc.ok()) (*out)["auc"] = *auc;
  }
  if (counts.regression && counts.regression->count > 0) {
    (*out)["mse"] = counts.regression->Mse();
    (*out)["mae"] = counts.regression->Mae();
    (*out)["r2"] = counts.regression->R2();
  }
}

nlohmann::ordered_json MetricsLine(const EvaluationInput& in) {
  double n = 0, correct = 0, loss = 0;
  nlohmann::ordered_json per_site = nlohmann::ordered_json::object();
  // The federation's counts: the sum of the sites', a part kept only while every site has it.
  std::optional<EvaluationCounts> federation;
  bool all_counted = !in.reports->empty();
  for (const auto& [site, r] : *in.reports) {
    n += static_cast<double>(r.num_examples());
    correct += r.accuracy() * static_cast<double>(r.num_examples());
    loss += r.loss() * static_cast<double>(r.num_examples());
    per_site[site] = {
        {"accuracy", r.accuracy()}, {"loss", r.loss()}, {"examples", r.num_examples()}};
    StatusOr<EvaluationCounts> counts = ReportedCounts(r);
    if (!counts.ok()) {
      all_counted = false;
      continue;
    }
    WriteClinicalMetrics(*counts, &per_site[site]);
    if (!federation) {
      federation = *std::move(counts);
    } else {
      federation->Merge(*counts);
    }
  }
  const RoundRecord& trained = *in.trained;
  nlohmann::ordered_json line;
  line["round"] = in.round;
  line["sites"] = trained.sites.size();
  line["accuracy"] = n > 0 ? nlohmann::ordered_json(correct / n) : nullptr;
  line["loss"] = n > 0 ? nlohmann::ordered_json(loss / n) : nullptr;
  if (all_counted && federation) WriteClinicalMetrics(*federation, &line);
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

Status AppendMetricsLine(const std::string& state_dir, std::string_view line) {
  const std::string path = state_dir + "/metrics.jsonl";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return FileError("opening", path);
  struct stat before;
  Status st = ::fstat(fd, &before) == 0 ? absl::OkStatus() : FileError("reading the size of", path);
  if (st.ok()) {
    st = WriteAll(fd, absl::StrCat(std::string(line), "\n"), path);
    if (st.ok()) st = SyncFile(fd, path);
    if (!st.ok() && ::ftruncate(fd, before.st_size) != 0) {
      st = Annotate(st, absl::StrCat(path, " ends in a torn line until the coordinator restarts"));
    }
  }
  ::close(fd);
  return st;
}

}  // namespace hansa

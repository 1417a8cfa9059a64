#include "common/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hansa {

StatusOr<ConfusionMatrix> ConfusionMatrix::FromCounts(int classes,
                                                      const std::vector<int64_t>& counts) {
  if (classes < 1 || counts.size() != static_cast<size_t>(classes) * classes) {
    return absl::InvalidArgumentError(absl::StrCat("a confusion matrix of ", classes,
                                                   " classes needs ", classes, " x ", classes,
                                                   " counts, not ", counts.size()));
  }
  for (int64_t c : counts) {
    if (c < 0) return absl::InvalidArgumentError("a confusion matrix with a negative count");
  }
  ConfusionMatrix m(classes);
  m.counts_ = counts;
  return m;
}

Status ConfusionMatrix::Add(int truth, int predicted) {
  if (truth < 0 || truth >= classes_ || predicted < 0 || predicted >= classes_) {
    return absl::InvalidArgumentError(absl::StrCat("class ", truth, " predicted as ", predicted,
                                                   " is outside the ", classes_, " classes"));
  }
  ++counts_[Index(truth, predicted)];
  return absl::OkStatus();
}

Status ConfusionMatrix::Merge(const ConfusionMatrix& other) {
  if (other.classes_ != classes_) {
    return absl::InvalidArgumentError(absl::StrCat("a confusion matrix of ", other.classes_,
                                                   " classes merged into one of ", classes_));
  }
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  return absl::OkStatus();
}

int64_t ConfusionMatrix::total() const {
  int64_t n = 0;
  for (int64_t c : counts_) n += c;
  return n;
}

double ConfusionMatrix::Accuracy() const {
  int64_t right = 0;
  for (int c = 0; c < classes_; ++c) right += count(c, c);
  const int64_t n = total();
  return n > 0 ? static_cast<double>(right) / static_cast<double>(n) : 0.0;
}

double ConfusionMatrix::BalancedAccuracy() const {
  double sum = 0;
  int present = 0;
  for (int t = 0; t < classes_; ++t) {
    int64_t row = 0;
    for (int p = 0; p < classes_; ++p) row += count(t, p);
    if (row == 0) continue;
    sum += static_cast<double>(count(t, t)) / static_cast<double>(row);
    ++present;
  }
  return present > 0 ? sum / present : 0.0;
}

double ConfusionMatrix::MacroF1() const {
  if (classes_ == 0) return 0.0;
  double sum = 0;
  for (int c = 0; c < classes_; ++c) {
    int64_t fp = 0, fn = 0;
    for (int o = 0; o < classes_; ++o) {
      if (o == c) continue;
      fp += count(o, c);
      fn += count(c, o);
    }
    const double tp = static_cast<double>(count(c, c));
    const double denominator = 2 * tp + static_cast<double>(fp + fn);
    sum += denominator > 0 ? 2 * tp / denominator : 0.0;
  }
  return sum / classes_;
}

StatusOr<ScoreHistogram> ScoreHistogram::FromCounts(std::vector<int64_t> positives,
                                                    std::vector<int64_t> negatives) {
  if (positives.empty() || positives.size() != negatives.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "score histograms need the same number (at least 1) of bins for each class, not ",
        positives.size(), " positive and ", negatives.size(), " negative"));
  }
  for (size_t i = 0; i < positives.size(); ++i) {
    if (positives[i] < 0 || negatives[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("score histogram bin ", i, " has a negative count"));
    }
  }
  ScoreHistogram h(0);
  h.positives_ = std::move(positives);
  h.negatives_ = std::move(negatives);
  return h;
}

int64_t ScoreHistogram::total() const {
  int64_t n = 0;
  for (size_t i = 0; i < positives_.size(); ++i) n += positives_[i] + negatives_[i];
  return n;
}

Status ScoreHistogram::Add(double score, bool positive) {
  if (!(score >= 0.0 && score <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("score ", score, " is not a probability in [0, 1]"));
  }
  const size_t bins = positives_.size();
  const size_t bin = std::min(bins - 1, static_cast<size_t>(score * static_cast<double>(bins)));
  ++(positive ? positives_ : negatives_)[bin];
  return absl::OkStatus();
}

Status ScoreHistogram::Merge(const ScoreHistogram& other) {
  if (other.positives_.size() != positives_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("a histogram of ", other.positives_.size(),
                                                   " bins merged into one of ", positives_.size()));
  }
  for (size_t i = 0; i < positives_.size(); ++i) {
    positives_[i] += other.positives_[i];
    negatives_[i] += other.negatives_[i];
  }
  return absl::OkStatus();
}

StatusOr<double> ScoreHistogram::Auc() const {
  // Mann-Whitney: P(positive scores above negative) + 1/2 P(same bin), from the bins upwards.
  double pairs_above = 0, ties = 0, negatives_below = 0, positives = 0;
  for (size_t i = 0; i < positives_.size(); ++i) {
    const double p = static_cast<double>(positives_[i]);
    const double n = static_cast<double>(negatives_[i]);
    pairs_above += p * negatives_below;
    ties += p * n;
    negatives_below += n;
    positives += p;
  }
  if (positives == 0 || negatives_below == 0) {
    return absl::FailedPreconditionError("AUC needs scores of both classes");
  }
  return (pairs_above + 0.5 * ties) / (positives * negatives_below);
}

double ScoreHistogram::AucErrorBound() const {
  double ties = 0, p_total = 0, n_total = 0;
  for (size_t i = 0; i < positives_.size(); ++i) {
    ties += static_cast<double>(positives_[i]) * static_cast<double>(negatives_[i]);
    p_total += static_cast<double>(positives_[i]);
    n_total += static_cast<double>(negatives_[i]);
  }
  return p_total > 0 && n_total > 0 ? 0.5 * ties / (p_total * n_total) : 0.0;
}

StatusOr<RegressionSums> RegressionSums::FromSums(int64_t count, double squared_error,
                                                  double absolute_error, double target,
                                                  double target_squared) {
  for (double v : {squared_error, absolute_error, target, target_squared}) {
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("regression sums with a non-finite value (", v, ")"));
    }
  }
  if (count < 0 || squared_error < 0 || absolute_error < 0 || target_squared < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "regression sums must not be negative (count ", count, ", squared error ", squared_error,
        ", absolute error ", absolute_error, ", squared targets ", target_squared, ")"));
  }
  if (count == 0 &&
      (squared_error != 0 || absolute_error != 0 || target != 0 || target_squared != 0)) {
    return absl::InvalidArgumentError("regression sums over no examples that are not zero");
  }
  return RegressionSums{count, squared_error, absolute_error, target, target_squared};
}

void RegressionSums::Add(double prediction, double y) {
  const double e = prediction - y;
  ++count;
  squared_error += e * e;
  absolute_error += std::fabs(e);
  target += y;
  target_squared += y * y;
}

void RegressionSums::Merge(const RegressionSums& o) {
  count += o.count;
  squared_error += o.squared_error;
  absolute_error += o.absolute_error;
  target += o.target;
  target_squared += o.target_squared;
}

double RegressionSums::Mse() const { return count > 0 ? squared_error / count : 0.0; }
double RegressionSums::Mae() const { return count > 0 ? absolute_error / count : 0.0; }

double RegressionSums::R2() const {
  if (count == 0) return 0.0;
  const double mean = target / count;
  const double total = target_squared - count * mean * mean;
  return total > 0 ? 1.0 - squared_error / total : 0.0;
}

StatusOr<EvaluationCounts> EvaluationCounts::Of(int64_t examples, int classes,
                                                const std::vector<int64_t>& confusion,
                                                std::vector<int64_t> positive_scores,
                                                std::vector<int64_t> negative_scores,
                                                const RegressionSums& regression) {
  if (examples < 0 || examples > kMaxExamples) {
    return absl::InvalidArgumentError(
        absl::StrCat("an evaluation of ", examples, " examples; at most ", kMaxExamples));
  }
  // Each count at most `examples`: their sums cannot overflow.
  const std::vector<int64_t>* all[] = {&confusion, &positive_scores, &negative_scores};
  for (const std::vector<int64_t>* counts : all) {
    for (int64_t n : *counts) {
      if (n > examples) {
        return absl::InvalidArgumentError(
            absl::StrCat("a count of ", n, " over the ", examples, " examples evaluated"));
      }
    }
  }
  EvaluationCounts c;
  c.examples = examples;
  if (!confusion.empty()) {
    ASSIGN_OR_RETURN(ConfusionMatrix m, ConfusionMatrix::FromCounts(classes, confusion));
    if (m.total() != examples) {
      return absl::InvalidArgumentError(absl::StrCat("the confusion matrix counts ", m.total(),
                                                     " examples of ", classes,
                                                     " classes, the report ", examples));
    }
    c.confusion = std::move(m);
  }
  if (!positive_scores.empty() || !negative_scores.empty()) {
    if (positive_scores.size() > static_cast<size_t>(kMaxScoreBins)) {
      return absl::InvalidArgumentError(absl::StrCat("score histograms of ", positive_scores.size(),
                                                     " bins; at most ", kMaxScoreBins));
    }
    ASSIGN_OR_RETURN(ScoreHistogram h, ScoreHistogram::FromCounts(std::move(positive_scores),
                                                                  std::move(negative_scores)));
    if (h.total() != examples) {
      return absl::InvalidArgumentError(absl::StrCat("the score histograms count ", h.total(),
                                                     " examples, the report ", examples));
    }
    c.scores = std::move(h);
  }
  ASSIGN_OR_RETURN(RegressionSums r,
                   RegressionSums::FromSums(regression.count, regression.squared_error,
                                            regression.absolute_error, regression.target,
                                            regression.target_squared));
  if (r.count > 0) {
    if (r.count != examples) {
      return absl::InvalidArgumentError(
          absl::StrCat("the regression sums count ", r.count, " examples, the report ", examples));
    }
    c.regression = r;
  }
  return c;
}

void EvaluationCounts::Merge(const EvaluationCounts& other) {
  examples += other.examples;
  if (confusion && (!other.confusion || !confusion->Merge(*other.confusion).ok())) {
    confusion.reset();
  }
  if (scores && (!other.scores || !scores->Merge(*other.scores).ok())) scores.reset();
  if (regression && other.regression) {
    regression->Merge(*other.regression);
  } else {
    regression.reset();
  }
}

}  // namespace hansa

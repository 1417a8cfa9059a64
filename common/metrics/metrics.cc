#include "common/metrics/metrics.h"

#include <algorithm>
#include <cmath>

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

}  // namespace hansa

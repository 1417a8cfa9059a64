// The metrics clinicians use, computed so that a federation's figure needs nothing per example
// from any site: each site reduces its predictions to counts and sums (a confusion matrix, a
// histogram of binary scores per class, regression sums), those add up across sites, and the
// federation's accuracy, balanced accuracy, macro F1, AUC-ROC, MSE, MAE and R² come from the
// totals. Per-site figures come from each site's own counts.
//
// Plain data, torch-free. Thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/status/status.h"

namespace hansa {

// Classification: counts[truth][predicted].
class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int classes = 0)
      : classes_(classes), counts_(static_cast<size_t>(classes) * classes, 0) {}
  // From counts[truth * classes + predicted], as a site reports them. InvalidArgument unless
  // there are classes² of them and classes >= 1.
  static StatusOr<ConfusionMatrix> FromCounts(int classes, const std::vector<int64_t>& counts);
  // InvalidArgument for a class outside [0, classes).
  Status Add(int truth, int predicted);
  // InvalidArgument when the class counts differ.
  Status Merge(const ConfusionMatrix& other);

  int classes() const { return classes_; }
  int64_t count(int truth, int predicted) const { return counts_[Index(truth, predicted)]; }
  int64_t total() const;
  double Accuracy() const;
  // The mean of the per-class recalls over the classes that occur.
  double BalancedAccuracy() const;
  // The mean over classes of F1 = 2 TP / (2 TP + FP + FN); a class with none of the three
  // counts as 0 (it did not occur and was never predicted: scikit-learn's zero_division=0).
  double MacroF1() const;

 private:
  size_t Index(int truth, int predicted) const {
    return static_cast<size_t>(truth) * classes_ + predicted;
  }
  int classes_;
  std::vector<int64_t> counts_;
};

// Binary scores (the predicted probability of the positive class) in `bins` equal bins of
// [0, 1], one histogram per true class: enough to compute the AUC-ROC of pooled scores without
// the scores. With 1,000 bins the AUC is within the ties of one bin of the exact one (bounded
// by AucErrorBound).
class ScoreHistogram {
 public:
  explicit ScoreHistogram(int bins = 1000)
      : positives_(static_cast<size_t>(bins), 0), negatives_(static_cast<size_t>(bins), 0) {}
  // From the bins of each true class, as a site reports them. InvalidArgument unless both have
  // the same number (>= 1) of bins and no count is negative.
  static StatusOr<ScoreHistogram> FromCounts(std::vector<int64_t> positives,
                                             std::vector<int64_t> negatives);
  // `score` outside [0, 1] or NaN is InvalidArgument.
  Status Add(double score, bool positive);
  Status Merge(const ScoreHistogram& other);
  // The area under the ROC curve, scores in one bin counted as ties (half).
  // FailedPrecondition without both classes.
  StatusOr<double> Auc() const;
  // The most Auc() can differ from the exact AUC of the same scores: half the share of
  // (positive, negative) pairs that fall into the same bin.
  double AucErrorBound() const;

  int bins() const { return static_cast<int>(positives_.size()); }
  // The counts per bin (bin i holds scores in [i / bins, (i + 1) / bins)), of the examples whose
  // truth is positive and of those whose truth is negative.
  const std::vector<int64_t>& positives() const { return positives_; }
  const std::vector<int64_t>& negatives() const { return negatives_; }
  int64_t total() const;

 private:
  std::vector<int64_t> positives_, negatives_;
};

// Regression: sums of the errors and targets.
struct RegressionSums {
  int64_t count = 0;
  double squared_error = 0, absolute_error = 0;
  double target = 0, target_squared = 0;

  // The sums as a site reports them. InvalidArgument unless all are finite, count >= 0, the
  // error sums and the targets' squares non-negative, and all zero when count is 0.
  static StatusOr<RegressionSums> FromSums(int64_t count, double squared_error,
                                           double absolute_error, double target,
                                           double target_squared);

  void Add(double prediction, double target);
  void Merge(const RegressionSums& other);
  double Mse() const;
  double Mae() const;
  // 1 - SSE / SST, SST the targets' total sum of squares about their pooled mean.
  double R2() const;
};

// Everything one evaluation reduced its predictions to, each part where its task has one:
// a confusion matrix (classification), score histograms (binary), regression sums. The
// federation's counts are the sum of the sites'.
struct EvaluationCounts {
  // The most bins a score histogram may have: far more than an AUC needs, and a bound on what a
  // site can make the coordinator hold.
  static constexpr int kMaxScoreBins = 100000;
  // The most examples one evaluation may count (2^36): with at most 4096² + 2 kMaxScoreBins
  // counts, none above it, no sum overflows.
  static constexpr int64_t kMaxExamples = int64_t{1} << 36;

  int64_t examples = 0;
  std::optional<ConfusionMatrix> confusion;
  std::optional<ScoreHistogram> scores;
  std::optional<RegressionSums> regression;

  // From a site's report or an evaluation's result: an empty `confusion`, empty histograms or a
  // regression count of 0 leave that part out. InvalidArgument when a part does not fit (shape,
  // more than kMaxScoreBins bins, negative or non-finite values, a count over `examples`, more than
  // kMaxExamples) or counts other than `examples`.
  static StatusOr<EvaluationCounts> Of(int64_t examples, int classes,
                                       const std::vector<int64_t>& confusion,
                                       std::vector<int64_t> positive_scores,
                                       std::vector<int64_t> negative_scores,
                                       const RegressionSums& regression);

  // Adds another evaluation's counts. A part that either side lacks, or whose shapes differ, is
  // dropped: a federation's figure is of every site or of none, never of some.
  void Merge(const EvaluationCounts& other);
};

}  // namespace hansa

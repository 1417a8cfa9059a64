// Federated metrics (common/metrics): per-site counts and sums that add up to the pooled figure,
// checked against values worked out by hand and against the exact pooled AUC.
#include "common/metrics/metrics.h"
#include "tests/support/exact_auc.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <vector>

namespace hansa {
namespace {

using ::testing::HasSubstr;

// Three classes, ten examples: recalls 2/4, 2/2, 3/4; F1 4/7, 4/5, 6/8.
const int kTruth[] = {0, 0, 0, 0, 1, 1, 2, 2, 2, 2};
const int kPredicted[] = {0, 0, 1, 2, 1, 1, 2, 2, 0, 2};

TEST(ConfusionMatrixTest, AccuracyBalancedAccuracyAndMacroF1ByHand) {
  ConfusionMatrix m(3);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(m.Add(kTruth[i], kPredicted[i]).ok());
  EXPECT_DOUBLE_EQ(m.Accuracy(), 0.7);
  EXPECT_DOUBLE_EQ(m.BalancedAccuracy(), (0.5 + 1.0 + 0.75) / 3);
  EXPECT_DOUBLE_EQ(m.MacroF1(), (4.0 / 7 + 0.8 + 0.75) / 3);
  EXPECT_EQ(m.total(), 10);
  Status bad = m.Add(3, 0);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("outside the 3 classes"));
}

TEST(ConfusionMatrixTest, SitesMergeIntoThePooledMatrix) {
  ConfusionMatrix a(3), b(3), pooled(3);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE((i < 4 ? a : b).Add(kTruth[i], kPredicted[i]).ok());
    ASSERT_TRUE(pooled.Add(kTruth[i], kPredicted[i]).ok());
  }
  ASSERT_TRUE(a.Merge(b).ok());
  for (int t = 0; t < 3; ++t) {
    for (int p = 0; p < 3; ++p) EXPECT_EQ(a.count(t, p), pooled.count(t, p));
  }
  EXPECT_DOUBLE_EQ(a.MacroF1(), pooled.MacroF1());
  EXPECT_EQ(a.Merge(ConfusionMatrix(2)).code(), absl::StatusCode::kInvalidArgument);
}

// The exact AUC: the share of (positive, negative) pairs ranked right, ties half.
using test_support::ExactAuc;

// Three sites with different class mixes send only their histograms; the federation's AUC is
// within 0.005 (and within the histogram's own bound) of the AUC of the pooled scores.
TEST(ScoreHistogramTest, FederatedAucMatchesThePooledScores) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<double> scores;
  std::vector<bool> positive;
  ScoreHistogram federation;
  const double positive_share[] = {0.2, 0.5, 0.7};
  for (int site = 0; site < 3; ++site) {
    ScoreHistogram local;
    std::bernoulli_distribution is_positive(positive_share[site]);
    for (int i = 0; i < 1000; ++i) {
      const bool p = is_positive(rng);
      const double logit = (p ? 1.0 : -0.5) + noise(rng);
      const double score = 1.0 / (1.0 + std::exp(-logit));
      ASSERT_TRUE(local.Add(score, p).ok());
      scores.push_back(score);
      positive.push_back(p);
    }
    ASSERT_TRUE(federation.Merge(local).ok());
  }
  auto auc = federation.Auc();
  ASSERT_TRUE(auc.ok()) << auc.status();
  const double exact = ExactAuc(scores, positive);
  EXPECT_GT(exact, 0.75);  // a real signal, not chance
  EXPECT_NEAR(*auc, exact, 0.005);
  EXPECT_LE(std::fabs(*auc - exact), federation.AucErrorBound() + 1e-12);
}

TEST(ScoreHistogramTest, SeparatedTiedAndInvalidScores) {
  ScoreHistogram h;
  ASSERT_TRUE(h.Add(0.9, true).ok());
  EXPECT_EQ(h.Auc().status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(h.Add(0.1, false).ok());
  EXPECT_DOUBLE_EQ(*h.Auc(), 1.0);
  ScoreHistogram tied;
  ASSERT_TRUE(tied.Add(0.5, true).ok());
  ASSERT_TRUE(tied.Add(0.5, false).ok());
  EXPECT_DOUBLE_EQ(*tied.Auc(), 0.5);
  EXPECT_DOUBLE_EQ(tied.AucErrorBound(), 0.5);
  ASSERT_TRUE(tied.Add(1.0, true).ok());  // the top edge falls into the last bin
  EXPECT_EQ(h.Add(std::nan(""), true).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(h.Add(1.5, false).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(h.Merge(ScoreHistogram(10)).code(), absl::StatusCode::kInvalidArgument);
}

// Each site sends only its bins (positives(), negatives()); the coordinator rebuilds them with
// FromCounts and sums them. Three sites of 3,000 scores with different class mixes and score
// spreads: the federation's AUC is within 0.005 of the exact AUC of the pooled scores.
TEST(ScoreHistogramTest, ReportedBinsOfThreeSitesGiveThePooledAuc) {
  std::mt19937_64 rng(15);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<double> scores;
  std::vector<bool> positive;
  std::optional<ScoreHistogram> federation;
  const double positive_share[] = {0.1, 0.5, 0.8};
  const double spread[] = {0.7, 1.0, 1.6};
  for (int site = 0; site < 3; ++site) {
    ScoreHistogram local;
    std::bernoulli_distribution is_positive(positive_share[site]);
    for (int i = 0; i < 3000; ++i) {
      const bool p = is_positive(rng);
      const double logit = (p ? 0.8 : -0.6) + spread[site] * noise(rng);
      const double score = 1.0 / (1.0 + std::exp(-logit));
      ASSERT_TRUE(local.Add(score, p).ok());
      scores.push_back(score);
      positive.push_back(p);
    }
    EXPECT_EQ(local.total(), 3000);
    auto received = ScoreHistogram::FromCounts(local.positives(), local.negatives());
    ASSERT_TRUE(received.ok()) << received.status();
    if (!federation) {
      federation = *std::move(received);
    } else {
      ASSERT_TRUE(federation->Merge(*received).ok());
    }
  }
  auto auc = federation->Auc();
  ASSERT_TRUE(auc.ok()) << auc.status();
  const double exact = ExactAuc(scores, positive);
  EXPECT_GT(exact, 0.7);
  EXPECT_LT(exact, 0.95);
  EXPECT_NEAR(*auc, exact, 0.005);
  EXPECT_EQ(federation->total(), 9000);
  EXPECT_EQ(federation->bins(), 1000);
}

TEST(ScoreHistogramTest, FromCountsRefusesBinsThatDoNotFit) {
  auto h = ScoreHistogram::FromCounts({0, 2, 1}, {3, 1, 0});
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->bins(), 3);
  EXPECT_EQ(h->total(), 7);
  // Pairs: positive in bin 1 above the 3 negatives of bin 0 (2 x 3), tied with bin 1 (2 x 1 / 2);
  // positive in bin 2 above all 4.
  EXPECT_DOUBLE_EQ(*h->Auc(), (6 + 1 + 4) / 12.0);
  auto uneven = ScoreHistogram::FromCounts({1, 2}, {1});
  EXPECT_EQ(uneven.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(uneven.status().message()), HasSubstr("2 positive and 1 negative"));
  EXPECT_EQ(ScoreHistogram::FromCounts({}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  auto negative = ScoreHistogram::FromCounts({1, -1}, {0, 0});
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(negative.status().message()), HasSubstr("bin 1 has a negative count"));
}

TEST(RegressionSumsTest, FromSumsRefusesWhatNoPredictionsCouldGive) {
  auto ok = RegressionSums::FromSums(2, 5.0, 3.0, -1.0, 4.0);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_DOUBLE_EQ(ok->Mse(), 2.5);
  auto nan = RegressionSums::FromSums(2, std::nan(""), 3.0, 1.0, 4.0);
  EXPECT_EQ(nan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(nan.status().message()), HasSubstr("non-finite"));
  EXPECT_EQ(RegressionSums::FromSums(2, 1.0, 1.0, INFINITY, 4.0).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto negative = RegressionSums::FromSums(2, 1.0, -3.0, 1.0, 4.0);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(negative.status().message()), HasSubstr("must not be negative"));
  EXPECT_EQ(RegressionSums::FromSums(-1, 0, 0, 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RegressionSums::FromSums(0, 1.0, 0, 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(RegressionSums::FromSums(0, 0, 0, 0, 0).ok());
}

TEST(EvaluationCountsTest, PartsMustCountTheExamplesEvaluated) {
  RegressionSums none;
  auto binary = EvaluationCounts::Of(4, 2, {2, 0, 1, 1}, {0, 1, 1}, {1, 1, 0}, none);
  ASSERT_TRUE(binary.ok()) << binary.status();
  EXPECT_TRUE(binary->confusion.has_value());
  EXPECT_TRUE(binary->scores.has_value());
  EXPECT_FALSE(binary->regression.has_value());
  auto wrong_total = EvaluationCounts::Of(5, 2, {2, 0, 1, 1}, {}, {}, none);
  EXPECT_EQ(wrong_total.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong_total.status().message()), HasSubstr("counts 4 examples"));
  auto wrong_scores = EvaluationCounts::Of(4, 0, {}, {0, 1, 1}, {1, 1, 1}, none);
  EXPECT_EQ(wrong_scores.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong_scores.status().message()),
              HasSubstr("score histograms count 5 examples"));
  std::vector<int64_t> huge(EvaluationCounts::kMaxScoreBins + 1, 0);
  huge[0] = 4;
  auto too_many = EvaluationCounts::Of(4, 0, {}, huge, huge, none);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_many.status().message()), HasSubstr("at most 100000"));
  RegressionSums three{3, 1.0, 1.0, 6.0, 14.0};
  EXPECT_TRUE(EvaluationCounts::Of(3, 0, {}, {}, {}, three).ok());
  auto wrong_count = EvaluationCounts::Of(4, 0, {}, {}, {}, three);
  EXPECT_EQ(wrong_count.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong_count.status().message()), HasSubstr("regression sums count 3"));
}

TEST(EvaluationCountsTest, APartSomeSiteLacksIsLeftOutOfTheSum) {
  RegressionSums none;
  auto a = EvaluationCounts::Of(4, 2, {2, 0, 1, 1}, {0, 1, 1}, {1, 1, 0}, none);
  auto b = EvaluationCounts::Of(2, 2, {1, 0, 0, 1}, {}, {}, none);
  ASSERT_TRUE(a.ok() && b.ok());
  EvaluationCounts sum = *a;
  sum.Merge(*b);
  EXPECT_EQ(sum.examples, 6);
  ASSERT_TRUE(sum.confusion.has_value());
  EXPECT_EQ(sum.confusion->total(), 6);
  EXPECT_FALSE(sum.scores.has_value());  // b sent none: no AUC of a alone
  auto c = EvaluationCounts::Of(3, 3, {1, 0, 0, 0, 1, 0, 0, 0, 1}, {}, {}, none);
  ASSERT_TRUE(c.ok());
  sum.Merge(*c);  // another number of classes
  EXPECT_FALSE(sum.confusion.has_value());
}

// MSE, MAE and R² of the federation from the sites' sums equal those of the pooled predictions.
TEST(RegressionSumsTest, SitesSumsGiveThePooledErrors) {
  const std::vector<double> y = {151, 75, 141, 206, 135, 97, 138, 63};
  const std::vector<double> pred = {140, 80, 150, 190, 120, 110, 130, 70};
  RegressionSums federation;
  for (size_t start : {size_t{0}, size_t{3}, size_t{5}}) {
    RegressionSums site;
    const size_t end = start == 0 ? 3 : start == 3 ? 5 : y.size();
    for (size_t i = start; i < end; ++i) site.Add(pred[i], y[i]);
    federation.Merge(site);
  }
  double sse = 0, sae = 0, mean = 0;
  for (double v : y) mean += v / y.size();
  double sst = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    sse += (pred[i] - y[i]) * (pred[i] - y[i]);
    sae += std::fabs(pred[i] - y[i]);
    sst += (y[i] - mean) * (y[i] - mean);
  }
  EXPECT_EQ(federation.count, 8);
  EXPECT_NEAR(federation.Mse(), sse / 8, 1e-9);
  EXPECT_NEAR(federation.Mae(), sae / 8, 1e-9);
  EXPECT_NEAR(federation.R2(), 1 - sse / sst, 1e-9);
  EXPECT_LT(federation.R2(), 1.0);
  EXPECT_GT(federation.R2(), 0.5);
}

}  // namespace
}  // namespace hansa

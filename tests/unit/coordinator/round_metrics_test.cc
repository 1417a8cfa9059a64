// The coordinator's metrics line from the sites' evaluation reports (coordinator/round_metrics.h):
// balanced accuracy and macro F1 of the federation from the summed confusion matrices, AUC from
// the summed score histograms, MSE, MAE and R² from the summed regression sums, and reports
// whose counts do not fit refused.
#include "coordinator/round_metrics.h"
#include "tests/support/exact_auc.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "common/fileio/fileio.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

v1::MetricsReport Report(const std::vector<uint64_t>& confusion, int classes) {
  v1::MetricsReport r;
  r.set_round(1);
  uint64_t n = 0, right = 0;
  for (size_t i = 0; i < confusion.size(); ++i) {
    n += confusion[i];
    if (i / classes == i % classes) right += confusion[i];
  }
  r.set_num_examples(n);
  r.set_accuracy(static_cast<double>(right) / static_cast<double>(n));
  r.set_loss(1.0);
  r.set_classes(static_cast<uint32_t>(classes));
  for (uint64_t c : confusion) r.add_confusion(c);
  return r;
}

TEST(RoundMetricsTest, TheFederationsBalancedAccuracyAndMacroF1AreOfTheSummedMatrices) {
  // Site a sees mostly class 0, site b mostly class 1; summed: [[4, 1], [2, 3]].
  std::map<std::string, v1::MetricsReport> reports = {{"a", Report({4, 1, 0, 0}, 2)},
                                                      {"b", Report({0, 0, 2, 3}, 2)}};
  RoundRecord trained;
  trained.sites = {"a", "b"};
  EvaluationInput in;
  in.round = 1;
  in.trained = &trained;
  in.reports = &reports;
  const nlohmann::ordered_json line = MetricsLine(in);
  EXPECT_DOUBLE_EQ(line["accuracy"].get<double>(), 0.7);
  EXPECT_DOUBLE_EQ(line["balanced_accuracy"].get<double>(), (0.8 + 0.6) / 2);
  // F1: class 0 = 8 / (8 + 2 + 1), class 1 = 6 / (6 + 1 + 2).
  EXPECT_DOUBLE_EQ(line["macro_f1"].get<double>(), (8.0 / 11 + 6.0 / 9) / 2);
  EXPECT_DOUBLE_EQ(line["per_site"]["a"]["balanced_accuracy"].get<double>(), 0.8);
  // A site without a matrix leaves the federation's figures out, not half-computed.
  v1::MetricsReport plain = reports["b"];
  plain.clear_confusion();
  reports["b"] = plain;
  const nlohmann::ordered_json partial = MetricsLine(in);
  EXPECT_FALSE(partial.contains("balanced_accuracy"));
  EXPECT_TRUE(partial["per_site"]["a"].contains("macro_f1"));
}

TEST(RoundMetricsTest, AMatrixThatDoesNotFitItsReportIsRefused) {
  v1::MetricsReport wrong_sum = Report({4, 1, 0, 0}, 2);
  wrong_sum.set_num_examples(6);
  auto st = ReportedCounts(wrong_sum);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("counts 5 examples"));
  v1::MetricsReport wrong_shape = Report({4, 1, 0}, 2);
  EXPECT_EQ(ReportedCounts(wrong_shape).status().code(), absl::StatusCode::kInvalidArgument);
  v1::MetricsReport none;
  none.set_num_examples(3);
  auto absent = ReportedCounts(none);
  ASSERT_TRUE(absent.ok()) << absent.status();
  EXPECT_FALSE(absent->confusion.has_value());
  EXPECT_FALSE(absent->scores.has_value());
  EXPECT_FALSE(absent->regression.has_value());
}

// A binary report: the matrix at threshold 0.5 and the scores in `bins` bins per true class.
v1::MetricsReport BinaryReport(const std::vector<double>& scores, const std::vector<bool>& positive,
                               int bins = 1000) {
  ScoreHistogram h(bins);
  ConfusionMatrix m(2);
  for (size_t i = 0; i < scores.size(); ++i) {
    EXPECT_TRUE(h.Add(scores[i], positive[i]).ok());
    EXPECT_TRUE(m.Add(positive[i] ? 1 : 0, scores[i] >= 0.5 ? 1 : 0).ok());
  }
  std::vector<uint64_t> confusion;
  for (int t = 0; t < 2; ++t) {
    for (int p = 0; p < 2; ++p) confusion.push_back(static_cast<uint64_t>(m.count(t, p)));
  }
  v1::MetricsReport r = Report(confusion, 2);
  for (int64_t c : h.positives()) r.add_positive_scores(static_cast<uint64_t>(c));
  for (int64_t c : h.negatives()) r.add_negative_scores(static_cast<uint64_t>(c));
  return r;
}

v1::MetricsReport RegressionReport(const std::vector<double>& predictions,
                                   const std::vector<double>& targets) {
  RegressionSums sums;
  for (size_t i = 0; i < targets.size(); ++i) sums.Add(predictions[i], targets[i]);
  v1::MetricsReport r;
  r.set_round(1);
  r.set_num_examples(targets.size());
  r.set_loss(sums.Mse());
  v1::RegressionReport* g = r.mutable_regression();
  g->set_count(static_cast<uint64_t>(sums.count));
  g->set_squared_error(sums.squared_error);
  g->set_absolute_error(sums.absolute_error);
  g->set_target(sums.target);
  g->set_target_squared(sums.target_squared);
  return r;
}

nlohmann::ordered_json Line(const std::map<std::string, v1::MetricsReport>& reports,
                            RoundRecord* trained) {
  for (const auto& [site, r] : reports) trained->sites.push_back(site);
  EvaluationInput in;
  in.round = 1;
  in.trained = trained;
  in.reports = &reports;
  return MetricsLine(in);
}

TEST(RoundMetricsTest, TheFederationsAucIsThatOfTheSummedHistograms) {
  // Ten bins; a: positives high, b: positives lower, ties in bin 6.
  const std::map<std::string, v1::MetricsReport> reports = {
      {"a", BinaryReport({0.95, 0.85, 0.15, 0.65}, {true, true, false, false}, 10)},
      {"b", BinaryReport({0.62, 0.31, 0.68, 0.05, 0.45}, {true, true, false, false, false}, 10)}};
  RoundRecord trained;
  const nlohmann::ordered_json line = Line(reports, &trained);
  ScoreHistogram summed(10);
  for (const auto& [site, r] : reports) {
    auto counts = ReportedCounts(r);
    ASSERT_TRUE(counts.ok()) << counts.status();
    ASSERT_TRUE(summed.Merge(*counts->scores).ok());
  }
  ASSERT_TRUE(line.contains("auc"));
  EXPECT_DOUBLE_EQ(line["auc"].get<double>(), *summed.Auc());
  // By hand: 4 positives x 5 negatives; 0.31 ranks above 0.15 and 0.05 only (2), 0.62 ties
  // 0.65 and 0.68 (bin 6) and is above the other 3, 0.85 and 0.95 above all.
  EXPECT_DOUBLE_EQ(line["auc"].get<double>(), (5 + 5 + (3 + 0.5 * 2) + 2) / 20.0);
  EXPECT_DOUBLE_EQ(line["per_site"]["a"]["auc"].get<double>(), 1.0);
  EXPECT_TRUE(line.contains("balanced_accuracy"));
  EXPECT_FALSE(line.contains("mse"));
  EXPECT_FALSE(line["per_site"]["b"].contains("r2"));
}

// The exact AUC of pooled scores: the share of (positive, negative) pairs ranked right.
using test_support::ExactAuc;

TEST(RoundMetricsTest, AFederationOfBinaryReportsHasThePooledScoresAuc) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<double> pooled;
  std::vector<bool> pooled_positive;
  std::map<std::string, v1::MetricsReport> reports;
  const double share[] = {0.15, 0.4, 0.75};
  for (int site = 0; site < 3; ++site) {
    std::bernoulli_distribution is_positive(share[site]);
    std::vector<double> scores;
    std::vector<bool> positive;
    for (int i = 0; i < 2000; ++i) {
      const bool p = is_positive(rng);
      const double score = 1.0 / (1.0 + std::exp(-((p ? 0.7 : -0.7) + noise(rng))));
      scores.push_back(score);
      positive.push_back(p);
    }
    pooled.insert(pooled.end(), scores.begin(), scores.end());
    pooled_positive.insert(pooled_positive.end(), positive.begin(), positive.end());
    reports[std::string(1, static_cast<char>('a' + site))] = BinaryReport(scores, positive);
  }
  RoundRecord trained;
  const nlohmann::ordered_json line = Line(reports, &trained);
  ASSERT_TRUE(line.contains("auc"));
  const double exact = ExactAuc(pooled, pooled_positive);
  EXPECT_GT(exact, 0.75);
  EXPECT_NEAR(line["auc"].get<double>(), exact, 0.005);
  for (const char* site : {"a", "b", "c"}) EXPECT_TRUE(line["per_site"][site].contains("auc"));
  // A site without histograms: no federation AUC (not one of some sites), its peers keep theirs.
  reports["c"].clear_positive_scores();
  reports["c"].clear_negative_scores();
  RoundRecord again;
  const nlohmann::ordered_json partial = Line(reports, &again);
  EXPECT_FALSE(partial.contains("auc"));
  EXPECT_TRUE(partial.contains("balanced_accuracy"));
  EXPECT_TRUE(partial["per_site"]["a"].contains("auc"));
  EXPECT_FALSE(partial["per_site"]["c"].contains("auc"));
}

TEST(RoundMetricsTest, RegressionErrorsAreThoseOfTheConcatenatedPredictions) {
  const std::vector<double> y = {151, 75, 141, 206, 135, 97, 138, 63, 110};
  const std::vector<double> pred = {140, 80, 150, 190, 120, 110, 130, 70, 100};
  const std::map<std::string, v1::MetricsReport> reports = {
      {"a", RegressionReport({pred.begin(), pred.begin() + 2}, {y.begin(), y.begin() + 2})},
      {"b", RegressionReport({pred.begin() + 2, pred.begin() + 6}, {y.begin() + 2, y.begin() + 6})},
      {"c", RegressionReport({pred.begin() + 6, pred.end()}, {y.begin() + 6, y.end()})}};
  RoundRecord trained;
  const nlohmann::ordered_json line = Line(reports, &trained);
  double sse = 0, sae = 0, mean = 0, sst = 0;
  for (double v : y) mean += v / static_cast<double>(y.size());
  for (size_t i = 0; i < y.size(); ++i) {
    sse += (pred[i] - y[i]) * (pred[i] - y[i]);
    sae += std::fabs(pred[i] - y[i]);
    sst += (y[i] - mean) * (y[i] - mean);
  }
  ASSERT_TRUE(line.contains("mse") && line.contains("mae") && line.contains("r2")) << line.dump();
  EXPECT_NEAR(line["mse"].get<double>(), sse / 9, 1e-9);
  EXPECT_NEAR(line["mae"].get<double>(), sae / 9, 1e-9);
  EXPECT_NEAR(line["r2"].get<double>(), 1 - sse / sst, 1e-9);
  EXPECT_NEAR(line["per_site"]["a"]["mse"].get<double>(), (121.0 + 25.0) / 2, 1e-9);
  EXPECT_FALSE(line.contains("auc"));
  EXPECT_FALSE(line.contains("balanced_accuracy"));
}

TEST(RoundMetricsTest, HistogramsAndSumsThatDoNotFitTheirReportAreRefused) {
  const v1::MetricsReport good = BinaryReport({0.9, 0.2, 0.6}, {true, false, false}, 10);
  ASSERT_TRUE(ReportedCounts(good).ok());
  auto expect_refused = [](const v1::MetricsReport& r, const std::string& why) {
    auto st = ReportedCounts(r);
    EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument) << why;
    EXPECT_THAT(std::string(st.status().message()), HasSubstr(why));
  };
  v1::MetricsReport uneven = good;
  uneven.add_positive_scores(0);
  expect_refused(uneven, "11 positive and 10 negative");
  v1::MetricsReport extra = good;
  extra.set_positive_scores(0, 1);
  expect_refused(extra, "score histograms count 4 examples");
  v1::MetricsReport over = good;
  over.set_negative_scores(0, 1000);
  expect_refused(over, "over the 3 examples");
  v1::MetricsReport huge;
  huge.set_num_examples(1);
  for (int i = 0; i <= EvaluationCounts::kMaxScoreBins; ++i) {
    huge.add_positive_scores(i == 0 ? 1 : 0);
    huge.add_negative_scores(0);
  }
  expect_refused(huge, "at most 100000");

  const v1::MetricsReport sums = RegressionReport({1, 2, 3}, {1.5, 2, 2});
  ASSERT_TRUE(ReportedCounts(sums).ok());
  v1::MetricsReport wrong_count = sums;
  wrong_count.mutable_regression()->set_count(2);
  expect_refused(wrong_count, "regression sums count 2 examples, the report 3");
  v1::MetricsReport too_many = sums;
  too_many.mutable_regression()->set_count(4);
  expect_refused(too_many, "regression sums count 4 examples");
  v1::MetricsReport nan = sums;
  nan.mutable_regression()->set_target(std::nan(""));
  expect_refused(nan, "non-finite");
  v1::MetricsReport negative = sums;
  negative.mutable_regression()->set_squared_error(-1);
  expect_refused(negative, "must not be negative");
  v1::MetricsReport empty_but_not_zero = sums;
  empty_but_not_zero.mutable_regression()->set_count(0);
  expect_refused(empty_but_not_zero, "over no examples");
}

// Each round adds its line to metrics.jsonl; it no longer rewrites the file from every line
// in the store, which made a round's work (and the allocator's churn) grow with the rounds
// before it: at 100 sites and 1,000 rounds, 5 MB read, written and fsynced every round.
TEST(RoundMetricsTest, ARoundAppendsItsLineAndAFailedAppendLeavesTheFileWhole) {
  const std::string dir = ::testing::TempDir() + "round_metrics_append";
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(MakeDirs(dir).ok());
  ASSERT_TRUE(AppendMetricsLine(dir, R"({"round":0})").ok());
  ASSERT_TRUE(AppendMetricsLine(dir, R"({"round":1})").ok());
  const std::string whole = "{\"round\":0}\n{\"round\":1}\n";
  EXPECT_EQ(*ReadFile(dir + "/metrics.jsonl"), whole);

  // A disk that fills in the middle of the write: the half-written line is cut off again.
  FileFault full;
  full.op = FileOp::kWrite;
  full.error = ENOSPC;
  full.path_contains = "round_metrics_append/metrics.jsonl";
  InjectFileFault(full);
  Status failed = AppendMetricsLine(dir, R"({"round":2,"sites":100})");
  ClearFileFault();
  EXPECT_EQ(failed.code(), absl::StatusCode::kResourceExhausted) << failed;
  EXPECT_THAT(std::string(failed.message()), HasSubstr("metrics.jsonl"));
  EXPECT_TRUE(IsStorageError(failed));
  EXPECT_EQ(*ReadFile(dir + "/metrics.jsonl"), whole);

  // An fsync that fails after the write: the line is taken back too.
  FileFault io;
  io.op = FileOp::kSync;
  io.error = EIO;
  io.path_contains = "round_metrics_append/metrics.jsonl";
  InjectFileFault(io);
  failed = AppendMetricsLine(dir, R"({"round":2})");
  ClearFileFault();
  EXPECT_EQ(failed.code(), absl::StatusCode::kInternal) << failed;
  EXPECT_EQ(*ReadFile(dir + "/metrics.jsonl"), whole);
  ASSERT_TRUE(AppendMetricsLine(dir, R"({"round":2})").ok());
  EXPECT_EQ(*ReadFile(dir + "/metrics.jsonl"), whole + "{\"round\":2}\n");
}

}  // namespace
}  // namespace hansa

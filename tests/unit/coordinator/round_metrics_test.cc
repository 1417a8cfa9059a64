// The coordinator's metrics line from the sites' evaluation reports (coordinator/round_metrics.h):
// balanced accuracy and macro F1 of the federation from the summed confusion matrices, and
// reports whose matrix does not fit refused.
#include "coordinator/round_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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
  auto st = ReportedConfusion(wrong_sum);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("counts 5 examples"));
  v1::MetricsReport wrong_shape = Report({4, 1, 0}, 2);
  EXPECT_EQ(ReportedConfusion(wrong_shape).status().code(), absl::StatusCode::kInvalidArgument);
  v1::MetricsReport none;
  none.set_num_examples(3);
  auto absent = ReportedConfusion(none);
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
}

}  // namespace
}  // namespace hansa

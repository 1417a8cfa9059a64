// Pooled standardisation (common/plan/standardization.h): the sites' moments, added up, give
// the mean and population standard deviation of their concatenated rows, to double precision
// even for features far from 0 (where the mean of squares and the squared mean nearly cancel).
#include "common/plan/standardization.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace hansa {
namespace {

using ::testing::HasSubstr;

// Rows of 3 features: one around 0, one around 2020 with a spread of 5 (a year), one tiny.
std::vector<std::vector<double>> SiteRows(int n, uint64_t seed) {
  std::vector<std::vector<double>> rows;
  uint64_t state = seed;
  auto uniform = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(state >> 11) * 0x1.0p-53;
  };
  for (int i = 0; i < n; ++i) {
    rows.push_back({uniform() * 2 - 1, 2020 + 10 * uniform(), 1e-4 * uniform()});
  }
  return rows;
}

std::vector<float> SiteUpdate(const std::vector<std::vector<double>>& rows) {
  std::vector<double> sum(3, 0), squares(3, 0);
  for (const auto& row : rows) {
    for (int j = 0; j < 3; ++j) {
      sum[j] += row[j];
      squares[j] += row[j] * row[j];
    }
  }
  auto update = EncodeMoments(sum, squares, static_cast<int64_t>(rows.size()));
  EXPECT_TRUE(update.ok()) << update.status();
  return *update;
}

TEST(StandardizationTest, SummedSiteMomentsGiveTheConcatenatedRowsMeanAndStd) {
  std::vector<std::vector<double>> all;
  std::vector<double> summed(MomentValues(3), 0.0);
  int seed = 1;
  for (int n : {50, 400, 7}) {
    const auto rows = SiteRows(n, seed++);
    all.insert(all.end(), rows.begin(), rows.end());
    const std::vector<float> update = SiteUpdate(rows);
    ASSERT_EQ(update.size(), static_cast<size_t>(MomentValues(3)));
    for (size_t i = 0; i < update.size(); ++i) summed[i] += update[i];
  }
  auto pooled = PooledStandardization(summed, 3);
  ASSERT_TRUE(pooled.ok()) << pooled.status();
  EXPECT_EQ(pooled->examples(), 457u);
  for (int j = 0; j < 3; ++j) {
    double mean = 0, var = 0;
    for (const auto& row : all) mean += row[j];
    mean /= all.size();
    for (const auto& row : all) var += (row[j] - mean) * (row[j] - mean);
    const double std = std::sqrt(var / all.size());
    EXPECT_NEAR(pooled->mean(j), mean, 1e-9 * std::max(1.0, std::abs(mean))) << j;
    // The year's variance is 1e-5 of its mean of squares: float32 sums would lose it.
    EXPECT_NEAR(pooled->std(j), std, 1e-6 * std) << j;
  }
  EXPECT_TRUE(CheckStandardization(*pooled, 3).ok());
  EXPECT_THAT(std::string(CheckStandardization(*pooled, 4).message()),
              HasSubstr("this site's rows have 4 features"));
}

TEST(StandardizationTest, AConstantFeatureGetsStdOneAndBadMomentsAreRefused) {
  std::vector<double> summed(MomentValues(1), 0.0);
  summed[0] = 30;  // 10 rows of 3
  summed[2] = 90;  // squares
  summed[4] = 10;  // rows
  auto pooled = PooledStandardization(summed, 1);
  ASSERT_TRUE(pooled.ok());
  EXPECT_DOUBLE_EQ(pooled->mean(0), 3);
  EXPECT_DOUBLE_EQ(pooled->std(0), 1);
  EXPECT_EQ(PooledStandardization(summed, 2).status().code(), absl::StatusCode::kInvalidArgument);
  summed[4] = 0;
  EXPECT_THAT(std::string(PooledStandardization(summed, 1).status().message()),
              HasSubstr("0 rows"));
  EXPECT_EQ(EncodeMoments({NAN}, {1}, 1).status().code(), absl::StatusCode::kInvalidArgument);
  v1::Standardization zero_std;
  zero_std.add_mean(1);
  zero_std.add_std(0);
  EXPECT_THAT(std::string(CheckStandardization(zero_std, 1).message()), HasSubstr("positive std"));
}

}  // namespace
}  // namespace hansa

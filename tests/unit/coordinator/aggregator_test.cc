#include "coordinator/aggregator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>
#include <random>
#include <thread>
#include <tuple>

namespace hansa {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  std::string dir = ::testing::TempDir() + "aggregator_" +
                    ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(StreamingAggregatorTest, WeightedMeanOfConcurrentChunkedContributions) {
  const int64_t n = 100003;
  StreamingAggregator agg(n, TempDir());
  std::vector<std::vector<float>> updates(4, std::vector<float>(n));
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> small(-64, 64);
  for (auto& u : updates)
    for (auto& v : u) v = static_cast<float>(small(rng)) / 8.0f;  // exact in double
  const double weights[] = {1, 2, 3, 10};
  std::vector<std::thread> threads;
  for (int s = 0; s < 4; ++s) {
    threads.emplace_back([&, s] {
      auto c = agg.Begin("site" + std::to_string(s), weights[s]);
      ASSERT_TRUE(c.ok());
      for (int64_t off = 0; off < n; off += 4099) {
        size_t count = static_cast<size_t>(std::min<int64_t>(4099, n - off));
        ASSERT_TRUE((*c)->Fold(off, updates[s].data() + off, count).ok());
      }
      ASSERT_TRUE((*c)->Commit().ok());
    });
  }
  for (auto& t : threads) t.join();
  auto mean = agg.WeightedMean();
  ASSERT_TRUE(mean.ok());
  for (int64_t i = 0; i < n; ++i) {
    double want = 0;
    for (int s = 0; s < 4; ++s) want += weights[s] * updates[s][i];
    ASSERT_EQ((*mean)[i], static_cast<float>(want / 16.0)) << i;
  }
  EXPECT_EQ(agg.committed(), 4);
  EXPECT_EQ(agg.total_weight(), 16.0);
}

// TakeWeightedMean gives the sum's pages back as it reads them: over several of its blocks and
// a tail that ends inside a page, it must still read every value before its page goes.
TEST(StreamingAggregatorTest, TakenMeanEqualsTheMeanAndSpendsTheAggregator) {
  const int64_t n = (int64_t{1} << 19) + 1234;  // two blocks of 2^18 and a ragged tail
  StreamingAggregator agg(n, TempDir());
  std::vector<float> a(n), b(n);
  for (int64_t i = 0; i < n; ++i) {
    a[i] = static_cast<float>(i % 1000) / 8.0f;
    b[i] = -static_cast<float>(i % 77) / 4.0f;
  }
  for (auto [name, values, weight] : {std::tuple{"a", &a, 1.0}, std::tuple{"b", &b, 3.0}}) {
    auto c = agg.Begin(name, weight);
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE((*c)->Fold(0, values->data(), values->size()).ok());
    ASSERT_TRUE((*c)->Commit().ok());
  }
  auto want = agg.WeightedMean();
  ASSERT_TRUE(want.ok()) << want.status();
  auto taken = agg.TakeWeightedMean();
  ASSERT_TRUE(taken.ok()) << taken.status();
  ASSERT_EQ(taken->size(), static_cast<size_t>(n));
  EXPECT_TRUE(*taken == *want);
  EXPECT_EQ((*taken)[n - 1], static_cast<float>((a[n - 1] + 3.0 * b[n - 1]) / 4.0));
  auto again = agg.TakeWeightedMean();
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("already taken"));
}

TEST(StreamingAggregatorTest, NothingCommittedHasNoMeanToTake) {
  StreamingAggregator agg(10, TempDir());
  auto taken = agg.TakeWeightedMean();
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(taken.status().message()), HasSubstr("no update was committed"));
}

TEST(StreamingAggregatorTest, AbortedContributionLeavesNoTrace) {
  const int64_t n = 1000;
  StreamingAggregator agg(n, TempDir());
  std::vector<float> a(n, 0.5f), b(n, -3.25f);
  auto ca = agg.Begin("a", 2);
  ASSERT_TRUE((*ca)->Fold(0, a.data(), n).ok());
  ASSERT_TRUE((*ca)->Commit().ok());
  {
    auto cb = agg.Begin("b", 5);
    ASSERT_TRUE((*cb)->Fold(0, b.data(), 600).ok());
    // Destroyed without Commit: a site died half way through its upload.
  }
  auto mean = agg.WeightedMean();
  ASSERT_TRUE(mean.ok());
  for (float v : *mean) ASSERT_EQ(v, 0.5f);
  EXPECT_EQ(agg.committed(), 1);
}

TEST(StreamingAggregatorTest, RefusesNonFiniteGapsAndShortUpdates) {
  StreamingAggregator agg(10, TempDir());
  auto c = agg.Begin("x", 1);
  std::vector<float> v(10, 1.0f);
  v[3] = std::numeric_limits<float>::quiet_NaN();
  Status st = (*c)->Fold(0, v.data(), 10);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("at value 3; NaN and Inf are refused"));
  v[3] = 1;
  ASSERT_TRUE((*c)->Fold(0, v.data(), 4).ok());
  EXPECT_THAT(std::string((*c)->Fold(5, v.data(), 2).message()), HasSubstr("4 was expected"));
  EXPECT_THAT(std::string((*c)->Commit().message()), HasSubstr("ended after 4 of 10 values"));
  EXPECT_FALSE(agg.Begin("y", 0).ok());
  EXPECT_EQ(agg.WeightedMean().status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace hansa

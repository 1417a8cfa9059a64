#include "coordinator/state_store.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace hansa {
namespace {

TEST(StateStoreTest, KeepsRoundsAndMetricsAcrossReopen) {
  std::string path = ::testing::TempDir() + "state_store_test.db";
  std::filesystem::remove(path);
  {
    auto store = StateStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    auto none = (*store)->LastRound();
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
    RoundRecord r;
    r.round = 1;
    r.model_sha256 = "aa";
    r.checkpoint = "/x/round-0001.safetensors";
    r.sites = {"berlin", "paris"};
    r.examples = 42;
    ASSERT_TRUE((*store)->RecordRound(r).ok());
    r.round = 2;
    ASSERT_TRUE((*store)->RecordRound(r).ok());
    ASSERT_TRUE((*store)->RecordMetrics(1, R"({"round":1})").ok());
    EXPECT_EQ((*store)->RecordMetrics(7, "{}").code(), absl::StatusCode::kFailedPrecondition);
    ASSERT_TRUE((*store)->Put("federation", "demo").ok());
  }
  auto store = StateStore::Open(path);
  ASSERT_TRUE(store.ok());
  auto last = (*store)->LastRound();
  ASSERT_TRUE(last.ok() && last->has_value());
  EXPECT_EQ((*last)->round, 2);
  EXPECT_EQ((*last)->sites, (std::vector<std::string>{"berlin", "paris"}));
  EXPECT_FALSE((*last)->metrics_json.has_value());
  auto metrics = (*store)->AllMetrics();
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(*metrics, std::vector<std::string>{R"({"round":1})"});
  EXPECT_EQ(*(*store)->Get("federation").value(), "demo");
}

}  // namespace
}  // namespace hansa

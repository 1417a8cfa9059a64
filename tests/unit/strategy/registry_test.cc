// The strategy registry: every built-in strategy is registered (and survives the static link),
// lists come in a fixed order, and unknown names are refused with the list.
#include "coordinator/strategies/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(StrategyRegistryTest, ListsEveryBuiltinStrategyInOrder) {
  EXPECT_THAT(StrategyNames(),
              ElementsAre("fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "fedprox",
                          "scaffold", "fednova", "median", "trimmed_mean", "krum", "multikrum"));
  EXPECT_THAT(DeployableStrategies(),
              ElementsAre("fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad"));
}

TEST(StrategyRegistryTest, EveryEntryCreatesItsStrategy) {
  const ModelLayout layout({{"w", DType::kF32, {3}}});
  for (const std::string& name : StrategyNames()) {
    const StrategyEntry* entry = FindStrategy(name);
    ASSERT_NE(entry, nullptr) << name;
    EXPECT_EQ(entry->name, name);
    StatusOr<StrategyOptions> options = ParseStrategySpec(name);
    ASSERT_TRUE(options.ok()) << options.status();
    StatusOr<std::unique_ptr<Strategy>> strategy = Strategy::Create(*options, layout);
    ASSERT_TRUE(strategy.ok()) << strategy.status();
    EXPECT_EQ((*strategy)->options().name, name);
    EXPECT_EQ((*strategy)->needs_individual_updates(), entry->individual_updates) << name;
    EXPECT_FALSE(entry->deployable && entry->individual_updates) << name;
  }
}

TEST(StrategyRegistryTest, UnknownNameIsRefusedWithTheKnownOnes) {
  EXPECT_EQ(FindStrategy("fedsgd"), nullptr);
  StatusOr<StrategyOptions> parsed = ParseStrategySpec("fedsgd:server_lr=1");
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()),
              HasSubstr("unknown strategy 'fedsgd'; known: fedavg, fedavgm, fedadam, fedyogi, "
                        "fedadagrad, fedprox, scaffold, fednova, median, trimmed_mean, krum, "
                        "multikrum"));
  StrategyOptions options;
  options.name = "fedsgd";
  StatusOr<std::unique_ptr<Strategy>> created =
      Strategy::Create(options, ModelLayout({{"w", DType::kF32, {1}}}));
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(created.status().message()), HasSubstr("known: fedavg,"));
}

TEST(StrategyRegistryTest, SecureAggregationErrorListsTheStrategiesThatWork) {
  Status st = CheckStrategyCompatible(*ParseStrategySpec("krum"), /*secure_aggregation=*/true);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("choose one of fedavg, fedavgm, fedadam, fedyogi, fedadagrad, fedprox, "
                        "scaffold, fednova"));
}

TEST(StrategyRegistryTest, LabelsCarryEachStrategysOwnParameters) {
  EXPECT_EQ(ParseStrategySpec("fedavg")->Label(), "fedavg");
  EXPECT_EQ(ParseStrategySpec("fedavgm:momentum=0.5,server_lr=2")->Label(),
            "fedavgm:server_lr=2,momentum=0.5");
  EXPECT_EQ(ParseStrategySpec("fedyogi:tau=0.01")->Label(), "fedyogi:tau=0.01");
  EXPECT_EQ(ParseStrategySpec("trimmed_mean")->Label(), "trimmed_mean:beta=0.1");
  EXPECT_EQ(ParseStrategySpec("multikrum:f=1,m=3")->Label(), "multikrum:f=1,m=3");
  EXPECT_EQ(ParseStrategySpec("krum:f=1,m=3")->Label(), "krum:f=1");
}

}  // namespace
}  // namespace hansa

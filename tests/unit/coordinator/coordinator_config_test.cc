#include "coordinator/coordinator_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

namespace hansa {
namespace {

using ::testing::HasSubstr;

// One file per test: ctest runs the tests of this binary as parallel processes.
std::string Write(const std::string& text) {
  std::string path = ::testing::TempDir() + "coordinator_config_" +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".toml";
  std::ofstream(path) << text;
  return path;
}

TEST(CoordinatorConfigTest, ReadsProvisionedFileWithDefaults) {
  auto c = LoadCoordinatorConfig(Write(R"(
[federation]
name = "demo"
[coordinator]
listen = "127.0.0.1:6000"
state_dir = "st"
[sites]
allowed = ["a", "b"]
[rounds]
total = 3
min_sites = 2
[aggregation]
mode = "plaintext"
)"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->engine.federation, "demo");
  EXPECT_EQ(c->engine.rounds, 3);
  EXPECT_EQ(c->engine.min_sites, 2);
  EXPECT_EQ(c->engine.max_attempts, 10);
  EXPECT_EQ(c->engine.model, "simple_cnn");
  EXPECT_EQ(c->engine.chunk_bytes, 1u << 20);
  EXPECT_EQ(c->engine.state_dir, ::testing::TempDir() + "st");
}

TEST(CoordinatorConfigTest, UnknownKeyAndImpossibleSettingsAreErrors) {
  auto typo = LoadCoordinatorConfig(Write("[sites]\nallowed=[\"a\"]\n[rounds]\nmin_site = 2\n"));
  EXPECT_THAT(std::string(typo.status().message()), HasSubstr("unknown key 'rounds.min_site'"));
  auto too_many = LoadCoordinatorConfig(Write(
      "[sites]\nallowed=[\"a\"]\n[rounds]\nmin_sites = 2\n[aggregation]\nmode = \"plaintext\"\n"));
  EXPECT_THAT(std::string(too_many.status().message()), HasSubstr("only 1 sites are allowed"));
  auto chunks = LoadCoordinatorConfig(Write(
      "[sites]\nallowed=[\"a\"]\n[transfer]\nchunk_bytes = 9000000\nmax_chunk_bytes = 8192\n"));
  EXPECT_THAT(std::string(chunks.status().message()),
              HasSubstr("exceeds transfer.max_chunk_bytes"));
  auto too_few_for_secure =
      LoadCoordinatorConfig(Write("[sites]\nallowed=[\"a\", \"b\"]\n[rounds]\nmin_sites = 2\n"));
  EXPECT_THAT(std::string(too_few_for_secure.status().message()),
              HasSubstr("secure aggregation needs rounds.min_sites >= 3"));
  auto device = LoadCoordinatorConfig(
      Write("[sites]\nallowed=[\"a\", \"b\", \"c\"]\n[aggregation]\nunmask_device = \"gpu\"\n"));
  EXPECT_THAT(std::string(device.status().message()),
              HasSubstr("aggregation.unmask_device is 'gpu'; it must be \"auto\" or \"cpu\""));
  auto missing = LoadCoordinatorConfig("/nonexistent/coordinator.toml");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(CoordinatorConfigTest, AttemptsPerRoundAreReadAndBounded) {
  auto three = LoadCoordinatorConfig(
      Write("[sites]\nallowed=[\"a\"]\n[rounds]\nmax_attempts = 3\n[aggregation]\n"
            "mode = \"plaintext\"\n"));
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(three->engine.max_attempts, 3);
  auto none = LoadCoordinatorConfig(
      Write("[sites]\nallowed=[\"a\"]\n[rounds]\nmax_attempts = 0\n[aggregation]\n"
            "mode = \"plaintext\"\n"));
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("rounds.max_attempts"));
}

TEST(CoordinatorConfigTest, SecAggParametersMustFitEveryCohortSize) {
  // 3 to 5 sites: threshold 4 is above the degree a cohort of 3 can have (2).
  auto c = LoadCoordinatorConfig(Write(
      "[sites]\nallowed=[\"a\", \"b\", \"c\", \"d\", \"e\"]\n[aggregation]\nthreshold = 4\n"));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("do not fit a cohort of 3 sites"));
  auto fits = LoadCoordinatorConfig(
      Write("[sites]\nallowed=[\"a\", \"b\", \"c\", \"d\", \"e\"]\n[rounds]\nmin_sites = 5\n"
            "[aggregation]\nthreshold = 4\n"));
  EXPECT_TRUE(fits.ok()) << fits.status();
}

TEST(CoordinatorConfigTest, ClientLevelPrivacyNeedsSecureAggregation) {
  const std::string sites = "[sites]\nallowed=[\"a\", \"b\", \"c\"]\n";
  const std::string ddg =
      "[privacy]\nmechanism = \"distributed_discrete_gaussian\"\nnoise_multiplier = 0.8\n"
      "epsilon = 4\ndelta = 1e-6\n";
  auto on = LoadCoordinatorConfig(Write(sites + ddg));
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_TRUE(on->engine.privacy.enabled);
  EXPECT_EQ(on->engine.privacy.noise_multiplier, 0.8);
  EXPECT_EQ(on->engine.privacy.budget.epsilon, 4);
  EXPECT_EQ(on->engine.privacy.budget.delta, 1e-6);
  auto plaintext =
      LoadCoordinatorConfig(Write(sites + "[aggregation]\nmode = \"plaintext\"\n" + ddg));
  EXPECT_THAT(std::string(plaintext.status().message()),
              HasSubstr("needs aggregation.mode = \"secure\""));
  auto unknown = LoadCoordinatorConfig(Write(sites + "[privacy]\nmechanism = \"laplace\"\n"));
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("must be \"none\", \"distributed_discrete_gaussian\""));
  const std::string central = "[privacy]\nmechanism = \"central_gaussian\"\n";
  auto central_secure = LoadCoordinatorConfig(Write(sites + central));
  EXPECT_THAT(std::string(central_secure.status().message()),
              HasSubstr("needs aggregation.mode = \"plaintext\""));
  auto central_plain =
      LoadCoordinatorConfig(Write(sites + "[aggregation]\nmode = \"plaintext\"\n" + central));
  ASSERT_TRUE(central_plain.ok()) << central_plain.status();
  EXPECT_EQ(central_plain->engine.privacy.mechanism, "central_gaussian");
}

TEST(CoordinatorConfigTest, RecordLevelPrivacyIsReadAndWorksInEitherMode) {
  const std::string sites = "[sites]\nallowed=[\"a\", \"b\", \"c\"]\n";
  const std::string dp =
      "[record_privacy]\nenabled = true\nclip_norm = 0.5\nsampling_rate = 0.02\n"
      "steps_per_round = 30\nepsilon = 3\ndelta = 1e-6\n";
  for (const std::string mode : {"secure", "plaintext"}) {
    auto c = LoadCoordinatorConfig(Write(sites + "[aggregation]\nmode = \"" + mode + "\"\n" + dp));
    ASSERT_TRUE(c.ok()) << c.status();
    const RecordPrivacyOptions& r = c->engine.record_privacy;
    EXPECT_TRUE(r.enabled);
    EXPECT_EQ(r.clip_norm, 0.5);
    EXPECT_EQ(r.sampling_rate, 0.02);
    EXPECT_EQ(r.steps, 30);
    EXPECT_EQ(r.noise_multiplier, 0);  // planned from the budget by the engine
    EXPECT_EQ(r.budget.epsilon, 3);
    EXPECT_EQ(r.budget.delta, 1e-6);
    EXPECT_FALSE(c->engine.privacy.enabled);
  }
  auto off = LoadCoordinatorConfig(Write(sites));
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->engine.record_privacy.enabled);
  auto bad = LoadCoordinatorConfig(Write(sites + "[record_privacy]\nsampling_rate = 2\n"));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("record_privacy.sampling_rate"));
}

TEST(CoordinatorConfigTest, StrategiesTheCoordinatorCannotRunAreRefusedWithWhatToUse) {
  const std::string sites = "[sites]\nallowed=[\"a\", \"b\", \"c\"]\n";
  auto adam = LoadCoordinatorConfig(
      Write(sites + "[strategy]\nname = \"fedadam\"\nbeta1 = 0.8\ntau = 0.01\n"));
  ASSERT_TRUE(adam.ok()) << adam.status();
  EXPECT_EQ(adam->engine.strategy.name, "fedadam");
  EXPECT_EQ(adam->engine.strategy.beta1, 0.8);
  EXPECT_EQ(adam->engine.strategy.tau, 0.01);
  // Secure aggregation is the default: an aggregator that needs each update is refused.
  auto krum = LoadCoordinatorConfig(Write(sites + "[strategy]\nname = \"krum\"\n"));
  EXPECT_EQ(krum.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(krum.status().message()),
              HasSubstr("needs every site's individual update, but secure aggregation"));
  EXPECT_THAT(std::string(krum.status().message()), HasSubstr("mode = \"plaintext\""));
  auto scaffold = LoadCoordinatorConfig(
      Write(sites + "[aggregation]\nmode = \"plaintext\"\n[strategy]\nname = \"scaffold\"\n"));
  EXPECT_THAT(std::string(scaffold.status().message()),
              HasSubstr("not available in a deployed federation yet"));
  auto unknown = LoadCoordinatorConfig(Write(sites + "[strategy]\nname = \"fedsgd\"\n"));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hansa

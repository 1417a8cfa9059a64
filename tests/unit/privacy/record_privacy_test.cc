#include "common/privacy/record_privacy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/privacy/ledger.h"
#include "common/privacy/rdp.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

TEST(RecordPrivacyTest, StepsDefaultToTheEpochsWorthOfSamplingRate) {
  RecordPrivacyOptions o;
  o.sampling_rate = 0.0128;
  o.noise_multiplier = 1.1;
  auto p = ResolveRecordPrivacy(o, 2, 10);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->steps, 156);  // round(2 / 0.0128) = round(156.25)
  EXPECT_EQ(p->noise_multiplier, 1.1);
  EXPECT_EQ(p->delta, o.budget.delta);
  o.steps = 40;
  EXPECT_EQ(ResolveRecordPrivacy(o, 2, 10)->steps, 40);
}

// The planned z spends the whole budget over every round: the published case q = 0.0025,
// T = 6000 (3 rounds of 2000 steps), delta 1e-5, epsilon 0.7242 gives back z = 1.3; all rounds
// fit a ledger with that budget, one more does not.
TEST(RecordPrivacyTest, PlannedNoiseSpendsTheBudgetOverAllRounds) {
  RecordPrivacyOptions o;
  o.sampling_rate = 0.0025;
  o.steps = 2000;
  o.budget = {0.7242234026, 1e-5};
  auto p = ResolveRecordPrivacy(o, 1, 3);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_NEAR(p->noise_multiplier, 1.3, 1e-4);
  auto round = ComputeSampledGaussianRdp(p->sampling_rate, p->noise_multiplier, p->steps,
                                         DefaultRdpOrders());
  ASSERT_TRUE(round.ok());
  auto ledger = PrivacyLedger::Open(::testing::TempDir() + "record_privacy_plan.json", o.budget);
  ASSERT_TRUE(ledger.ok());
  for (int r = 1; r <= 3; ++r) ASSERT_TRUE(ledger->Record(r, "dp_sgd", *round).ok()) << r;
  EXPECT_EQ(ledger->CheckFits(*round).code(), absl::StatusCode::kFailedPrecondition);
  std::remove((::testing::TempDir() + "record_privacy_plan.json").c_str());
}

TEST(RecordPrivacyTest, RejectsBadParametersAndUnreachableBudgets) {
  auto expect = [](RecordPrivacyOptions o, const std::string& text) {
    auto p = ResolveRecordPrivacy(o, 1, 5);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << p.status();
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(text));
  };
  RecordPrivacyOptions o;
  o.sampling_rate = 0;
  expect(o, "sampling_rate = 0");
  o = RecordPrivacyOptions();
  o.clip_norm = -1;
  expect(o, "clip_norm = -1");
  o = RecordPrivacyOptions();
  o.budget.epsilon = 1e-4;  // no noise multiplier gets there with 500 steps at q = 0.01
  expect(o, "planning the noise multiplier");
  EXPECT_THAT(std::string(ResolveRecordPrivacy(RecordPrivacyOptions(), 0, 5).status().message()),
              HasSubstr("epochs (0)"));
}

}  // namespace
}  // namespace hansa

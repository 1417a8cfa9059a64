// What both sides compute from a round plan alike: its digest.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "proto/plan_digest.h"
#include "tests/support/secure_plan.h"

namespace hansa {
namespace {

using testing::SecurePlan;

TEST(PlanDigestTest, NamesThePlanButNotItsUploadDeadline) {
  v1::RoundPlan plan = SecurePlan(10);
  const std::string digest = PlanSha256(plan);
  EXPECT_EQ(digest.size(), 64u);
  plan.set_upload_deadline_unix_ms(123456);
  EXPECT_EQ(PlanSha256(plan), digest);
  plan.set_cohort(2, "mallory");
  EXPECT_NE(PlanSha256(plan), digest);
}

}  // namespace
}  // namespace hansa

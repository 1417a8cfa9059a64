// What both sides compute from a round plan alike: its digest.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "proto/plan_digest.h"

namespace hansa {
namespace {

v1::RoundPlan SecurePlan(uint64_t values) {
  v1::RoundPlan plan;
  plan.set_round(4);
  plan.set_model_name("mlp");
  plan.set_global_model_sha256(std::string(64, 'a'));
  for (const char* site : {"alpha", "beta", "gamma"}) plan.add_cohort(site);
  plan.set_chunk_bytes(4096);
  plan.set_aggregation_mode(v1::AGGREGATION_SECURE);
  v1::SecAggPlan* sp = plan.mutable_secagg();
  sp->set_num_sites(3);
  sp->set_ring_bits(32);
  sp->set_vector_length(values + 1);
  sp->set_round_seed(std::string(32, 's'));
  sp->set_graph_seed_commitment(std::string(32, 'c'));
  sp->set_clip(1.0);
  sp->set_bits(16);
  sp->set_max_examples(1000);
  return plan;
}

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

// A secure round plan as a coordinator would announce it, for tests of what sites read from one
// (common/plan) and of its digest (proto/plan_digest.h): round 4, model "mlp", cohort alpha,
// beta and gamma, a 32-bit ring, `values` update values plus the weight element.
#pragma once

#include <cstdint>
#include <string>

#include "hansa/v1/hansa.pb.h"

namespace hansa::testing {

inline v1::RoundPlan SecurePlan(uint64_t values) {
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

}  // namespace hansa::testing

// The secure-aggregation parameters a round plan announces, read the same way by every site
// (and by benchmarks that act as sites).
#pragma once

#include <cstdint>
#include <string>

#include <vector>

#include "common/secagg/client.h"
#include "common/secagg/params.h"
#include "common/status/status.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// The plan's SecAgg+ parameters, unresolved, and `site`'s number in the cohort (1-based) in
// *self. InvalidArgument when the plan is inconsistent or `site` is not in its cohort. In
// malicious mode the caller adds the signing keys, after checking the cohort's certificates
// against the federation CA itself, then calls ResolveParams.
StatusOr<SecAggParams> SecAggParamsOfPlan(const v1::RoundPlan& plan, const std::string& site,
                                          uint32_t* self);

// The site's masked input for the plan, as the serialized chunks of its upload (MaskUpdate):
// encoded with the plan's clip, bits and cohort, weight min(1, examples / max_examples), cut
// to the plan's chunk size. InvalidArgument when the plan does not fit `values`.
StatusOr<std::vector<std::string>> MaskUpdateForPlan(const v1::RoundPlan& plan,
                                                     ClientSession& session,
                                                     const std::vector<float>& values,
                                                     int64_t examples);

}  // namespace hansa

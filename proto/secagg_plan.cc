#include "proto/secagg_plan.h"

#include <algorithm>

#include "common/secagg/encoding.h"
#include "common/secagg/masked_upload.h"

namespace hansa {

StatusOr<SecAggParams> SecAggParamsOfPlan(const v1::RoundPlan& plan, const std::string& site,
                                          uint32_t* self) {
  const v1::SecAggPlan& sp = plan.secagg();
  SecAggParams p;
  p.round = plan.round();
  p.num_sites = sp.num_sites();
  p.degree = static_cast<int>(sp.degree());
  p.threshold = static_cast<int>(sp.threshold());
  p.malicious = sp.malicious();
  p.ring = sp.ring_bits() == 64 ? RingWidth::k64 : RingWidth::k32;
  p.vector_length = sp.vector_length();
  if (sp.round_seed().size() != p.round_seed.size()) {
    return absl::InvalidArgumentError("secure-aggregation plan has no 32-byte round seed");
  }
  std::copy(sp.round_seed().begin(), sp.round_seed().end(), p.round_seed.begin());
  if (static_cast<int>(sp.num_sites()) != plan.cohort_size()) {
    return absl::InvalidArgumentError("secure-aggregation plan disagrees with its cohort");
  }
  *self = 0;
  for (int i = 0; i < plan.cohort_size(); ++i) {
    if (plan.cohort(i) == site) *self = static_cast<uint32_t>(i + 1);
  }
  if (*self == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), ": this site is not in the plan's cohort"));
  }
  return p;
}

StatusOr<std::vector<std::string>> MaskUpdateForPlan(const v1::RoundPlan& plan,
                                                     ClientSession& session,
                                                     const std::vector<float>& values,
                                                     int64_t examples) {
  const v1::SecAggPlan& sp = plan.secagg();
  EncodingParams encoding{sp.clip(), static_cast<int>(sp.bits()), static_cast<int>(sp.num_sites())};
  ASSIGN_OR_RETURN(Encoder encoder, Encoder::Create(encoding));
  const RingWidth ring = sp.ring_bits() == 64 ? RingWidth::k64 : RingWidth::k32;
  if (encoder.ring() != ring || Encoder::EncodedSize(values.size()) != sp.vector_length()) {
    return absl::InvalidArgumentError("secure-aggregation plan does not fit this model");
  }
  const double weight =
      std::min(1.0, static_cast<double>(examples) /
                        static_cast<double>(std::max<uint64_t>(1, sp.max_examples())));
  const size_t word = ring == RingWidth::k64 ? 8 : 4;
  const size_t step =
      std::max<size_t>(1, (plan.chunk_bytes() ? plan.chunk_bytes() : (1 << 20)) / word);
  return MaskUpdate(session, encoder, ring, values.data(), values.size(), weight, step);
}

}  // namespace hansa

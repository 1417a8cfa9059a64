// The round plan's readers: what a plan asks for (aggregation, the SecAgg+ parameters, the ring,
// privacy), read the same way by every site, the simulator's virtual sites and the benchmarks
// that act as sites, and by the coordinator when it records or prices a plan. The one writer is
// plan_writer.h. Plain functions over an immutable plan: safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/privacy/ddg.h"
#include "common/secagg/client.h"
#include "common/secagg/encoding.h"
#include "common/secagg/params.h"
#include "common/status/status.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// True when the plan asks for secure aggregation (AGGREGATION_SECURE).
bool IsSecure(const v1::RoundPlan& plan);
// True when the plan names an aggregation this build knows (plaintext or secure); false for
// AGGREGATION_UNSPECIFIED and for values from a newer contract.
bool HasKnownAggregation(const v1::RoundPlan& plan);
// "plaintext", "secure", "unspecified", or "unknown (N)", for messages.
std::string AggregationName(const v1::RoundPlan& plan);

// The ring the plan's SecAgg+ vectors live in, from ring_bits: the one place it is parsed.
// InvalidArgument for anything but 32 or 64.
StatusOr<RingWidth> RingOfPlan(const v1::SecAggPlan& plan);

// The plan's SecAgg+ parameters, unresolved, and `site`'s number in the cohort (1-based) in
// *self. InvalidArgument when the plan is inconsistent (a round seed or graph-seed commitment
// not of 32 bytes, a ring neither 32 nor 64 bits wide among it) or `site` is not in its cohort. A
// site then checks its own floor under k and t with CheckSecAggPolicy (common/secagg/params.h). In
// malicious mode the caller adds the signing keys, after checking the cohort's certificates
// against the federation CA itself, then calls ResolveParams.
StatusOr<SecAggParams> SecAggParamsOfPlan(const v1::RoundPlan& plan, const std::string& site,
                                          uint32_t* self);

inline constexpr char kDistributedDiscreteGaussian[] = "distributed_discrete_gaussian";
// Plaintext mode, a trusted coordinator (research comparisons): sites clip their update in
// L2, the coordinator adds Gaussian noise to the sum (common/privacy/central_gaussian.h).
inline constexpr char kCentralGaussian[] = "central_gaussian";

// True when the plan asks for client-level differential privacy (the distributed discrete
// Gaussian); InvalidArgument-worthy mechanisms are caught by DdgParamsOfPlan's Validate.
bool HasClientPrivacy(const v1::RoundPlan& plan);
// The mechanism's parameters as the plan announces them, for a model of `dimension` values.
DdgParams DdgParamsOfPlan(const v1::PrivacyPlan& privacy, int64_t dimension);
// One round's RDP curve on DefaultRdpOrders() for the plan's mechanism and a model of
// `dimension` values. The central Gaussian is accounted without amplification (q = 1): the
// cohort is the coordinator's choice. InvalidArgument for an unknown mechanism.
StatusOr<std::vector<double>> RoundRdpOfPlan(const v1::PrivacyPlan& privacy, int64_t dimension);

// Record-level DP-SGD: true when the plan asks every site for it (clip norm > 0).
bool HasRecordPrivacy(const v1::RoundPlan& plan);
// One round's RDP curve on DefaultRdpOrders(): `steps` compositions of the sampled Gaussian.
// InvalidArgument, naming the field, for a plan that is not a valid mechanism (z must be > 0).
StatusOr<std::vector<double>> RecordRoundRdp(const v1::RecordPrivacyPlan& plan);

// How a site encodes an update of `n` values for a plan without client-level privacy: the
// encoder's clip, bits and cohort, the ring, the weight min(1, examples / max_examples) and the
// ring words per wire chunk. InvalidArgument when the plan does not fit `n` values.
struct PlanEncoding {
  EncodingParams params;
  RingWidth ring = RingWidth::k32;
  double weight = 1.0;
  size_t values_per_chunk = 1;
};
StatusOr<PlanEncoding> PlanEncodingFor(const v1::RoundPlan& plan, size_t n, int64_t examples);

// The site's masked input for the plan, as the serialized chunks of its upload (MaskUpdate):
// encoded with the plan's clip, bits and cohort, weight min(1, examples / max_examples), cut
// to the plan's chunk size. With client-level privacy the update is instead clipped in L2,
// rotated, rounded and noised (DdgEncode, noise from the operating system's CSPRNG) and
// carries no weight: the coordinator averages the survivors' clipped updates.
// InvalidArgument when the plan does not fit `values`. `rounding_seed` (32 bytes), when given,
// seeds the stochastic rounding instead of the CSPRNG, for simulations that must repeat.
// `values` is consumed: without client-level privacy its memory pages go back to the system as
// its chunks are made, so the update and its masked chunks are not held side by side.
StatusOr<std::vector<std::string>> MaskUpdateForPlan(const v1::RoundPlan& plan,
                                                     ClientSession& session,
                                                     std::vector<float> values, int64_t examples,
                                                     const SecretBytes* rounding_seed = nullptr);

// The upload header of a masked input: the round, the chunks' total size and the SHA-256 over
// all of them in order, and no example count (it travels inside the masked vector, as the
// weight element). What hansa-client sends before the first chunk, and what the simulator and
// the benchmarks send as sites.
v1::TransferHeader MaskedUploadHeader(uint64_t round, const std::vector<std::string>& chunks);

}  // namespace hansa

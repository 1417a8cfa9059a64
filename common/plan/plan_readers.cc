#include "common/plan/plan_readers.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/crypto/sha256.h"
#include "common/privacy/central_gaussian.h"
#include "common/privacy/ddg_accountant.h"
#include "common/privacy/uniform_source.h"
#include "common/secagg/encoding.h"
#include "common/secagg/masked_upload.h"
#include "common/tensor/huge_pages.h"

namespace hansa {

bool IsSecure(const v1::RoundPlan& plan) {
  return plan.aggregation_mode() == v1::AGGREGATION_SECURE;
}

bool HasKnownAggregation(const v1::RoundPlan& plan) {
  return plan.aggregation_mode() == v1::AGGREGATION_PLAINTEXT || IsSecure(plan);
}

std::string AggregationName(const v1::RoundPlan& plan) {
  switch (plan.aggregation_mode()) {
    case v1::AGGREGATION_PLAINTEXT:
      return "plaintext";
    case v1::AGGREGATION_SECURE:
      return "secure";
    case v1::AGGREGATION_UNSPECIFIED:
      return "unspecified";
    default:
      return absl::StrCat("unknown (", static_cast<int>(plan.aggregation_mode()), ")");
  }
}

StatusOr<RingWidth> RingOfPlan(const v1::SecAggPlan& plan) {
  if (plan.ring_bits() == 32) return RingWidth::k32;
  if (plan.ring_bits() == 64) return RingWidth::k64;
  return absl::InvalidArgumentError(absl::StrCat("secure-aggregation plan has a ", plan.ring_bits(),
                                                 "-bit ring; only 32 and 64 bits exist"));
}

StatusOr<SecAggParams> SecAggParamsOfPlan(const v1::RoundPlan& plan, const std::string& site,
                                          uint32_t* self) {
  const v1::SecAggPlan& sp = plan.secagg();
  SecAggParams p;
  p.round = plan.round();
  p.num_sites = sp.num_sites();
  p.degree = static_cast<int>(sp.degree());
  p.threshold = static_cast<int>(sp.threshold());
  p.malicious = sp.malicious();
  ASSIGN_OR_RETURN(p.ring, RingOfPlan(sp));
  p.vector_length = sp.vector_length();
  p.min_survivors = sp.min_survivors();
  if (HasClientPrivacy(plan) && sp.min_survivors() < plan.privacy().min_survivors()) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", plan.round(), ": the secure-aggregation plan would unmask a sum of ",
                     sp.min_survivors(), " sites, below the ", plan.privacy().min_survivors(),
                     " its privacy plan is calibrated for"));
  }
  if (sp.round_seed().size() != p.round_seed.size()) {
    return absl::InvalidArgumentError("secure-aggregation plan has no 32-byte round seed");
  }
  std::copy(sp.round_seed().begin(), sp.round_seed().end(), p.round_seed.begin());
  if (sp.graph_seed_commitment().size() != p.graph_seed_commitment.size()) {
    return absl::InvalidArgumentError(
        "secure-aggregation plan has no 32-byte graph-seed commitment (a coordinator too old "
        "for this site, or one that would choose the neighbour graph alone)");
  }
  std::copy(sp.graph_seed_commitment().begin(), sp.graph_seed_commitment().end(),
            p.graph_seed_commitment.begin());
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

bool HasClientPrivacy(const v1::RoundPlan& plan) { return !plan.privacy().mechanism().empty(); }

DdgParams DdgParamsOfPlan(const v1::PrivacyPlan& privacy, int64_t dimension) {
  DdgParams p;
  p.dimension = dimension;
  p.clip_norm = privacy.clip_norm();
  p.granularity = privacy.granularity();
  p.noise_multiplier = privacy.noise_multiplier();
  p.beta = privacy.beta();
  p.min_survivors = privacy.min_survivors();
  return p;
}

StatusOr<std::vector<double>> RoundRdpOfPlan(const v1::PrivacyPlan& privacy, int64_t dimension) {
  if (privacy.mechanism() == kDistributedDiscreteGaussian) {
    DdgParams params = DdgParamsOfPlan(privacy, dimension);
    RETURN_IF_ERROR(params.Validate());
    return DdgRdp(params, 1, DefaultRdpOrders());
  }
  if (privacy.mechanism() == kCentralGaussian) {
    return CentralGaussianRdp(1, 1, privacy.noise_multiplier(), 1, DefaultRdpOrders());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("privacy mechanism '", privacy.mechanism(), "' is not known here"));
}

bool HasRecordPrivacy(const v1::RoundPlan& plan) {
  return plan.has_record_privacy() && plan.record_privacy().clip_norm() != 0;
}

StatusOr<std::vector<double>> RecordRoundRdp(const v1::RecordPrivacyPlan& plan) {
  if (!(plan.clip_norm() > 0) || std::isinf(plan.clip_norm())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "record-level privacy: clip_norm = ", plan.clip_norm(), " must be positive and finite"));
  }
  if (!(plan.delta() > 0 && plan.delta() < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("record-level privacy: delta = ", plan.delta(), " must be in (0, 1)"));
  }
  StatusOr<std::vector<double>> rdp = ComputeSampledGaussianRdp(
      plan.sampling_rate(), plan.noise_multiplier(), plan.steps(), DefaultRdpOrders());
  RETURN_IF_ERROR(Annotate(rdp.status(), "record-level privacy"));
  return rdp;
}

namespace {

// Ring words per wire chunk: a serialized chunk, header included, fits the plan's chunk size
// (which the coordinator also caps chunks at when it equals max_chunk_bytes).
size_t ValuesPerChunk(const v1::RoundPlan& plan, size_t word_bytes) {
  const size_t chunk = plan.chunk_bytes() ? plan.chunk_bytes() : (1 << 20);
  return std::max<size_t>(1, (chunk - std::min(chunk, kMaskedChunkOverhead)) / word_bytes);
}

// DdgEncode's integers, reduced into the ring, masked chunk by chunk.
StatusOr<std::vector<std::string>> MaskDdgUpdate(const v1::RoundPlan& plan, ClientSession& session,
                                                 const std::vector<float>& values) {
  const v1::SecAggPlan& sp = plan.secagg();
  if (plan.privacy().mechanism() != kDistributedDiscreteGaussian) {
    return absl::InvalidArgumentError(
        absl::StrCat("privacy mechanism '", plan.privacy().mechanism(), "' is not known here"));
  }
  DdgParams params = DdgParamsOfPlan(plan.privacy(), static_cast<int64_t>(values.size()));
  RETURN_IF_ERROR(params.Validate());
  if (static_cast<uint64_t>(params.PaddedDimension()) != sp.vector_length()) {
    return absl::InvalidArgumentError("secure-aggregation plan does not fit this model");
  }
  const std::vector<double> update(values.begin(), values.end());
  CryptoUniformSource source;
  const std::string_view seed(sp.round_seed());
  ASSIGN_OR_RETURN(std::vector<int64_t> encoded, DdgEncode(update, params, seed, source));
  ASSIGN_OR_RETURN(const RingWidth ring, RingOfPlan(sp));
  const int bits = ring == RingWidth::k64 ? 64 : 32;
  std::vector<uint64_t> words = ToRing(encoded, bits);
  const size_t step = ValuesPerChunk(plan, bits / 8);
  std::vector<std::string> chunks;
  for (size_t off = 0; off < words.size(); off += step) {
    const size_t count = std::min(step, words.size() - off);
    RingVector part = RingVector::Zeros(ring, count);
    for (size_t i = 0; i < count; ++i) {
      if (ring == RingWidth::k32) {
        part.w32[i] = static_cast<uint32_t>(words[off + i]);
      } else {
        part.w64[i] = words[off + i];
      }
    }
    ASSIGN_OR_RETURN(MaskedInputChunk masked, session.MaskChunk(off, std::move(part)));
    chunks.push_back(masked.Serialize());
  }
  return chunks;
}

}  // namespace

StatusOr<std::vector<std::string>> MaskUpdateForPlan(const v1::RoundPlan& plan,
                                                     ClientSession& session,
                                                     std::vector<float> values, int64_t examples,
                                                     const SecretBytes* rounding_seed) {
  if (HasClientPrivacy(plan)) return MaskDdgUpdate(plan, session, values);
  ASSIGN_OR_RETURN(PlanEncoding e, PlanEncodingFor(plan, values.size(), examples));
  ASSIGN_OR_RETURN(Encoder encoder, rounding_seed
                                        ? Encoder::CreateWithSeed(e.params, *rounding_seed)
                                        : Encoder::Create(e.params));
  size_t released = 0;
  return MaskUpdate(session, encoder, e.ring, values.data(), values.size(), e.weight,
                    e.values_per_chunk, [&](size_t done) {
                      ReleaseConsumedPages(values.data(), released * sizeof(float),
                                           done * sizeof(float));
                      released = done;
                    });
}

StatusOr<PlanEncoding> PlanEncodingFor(const v1::RoundPlan& plan, size_t n, int64_t examples) {
  const v1::SecAggPlan& sp = plan.secagg();
  PlanEncoding e;
  e.params = {sp.clip(), static_cast<int>(sp.bits()), static_cast<int>(sp.num_sites())};
  ASSIGN_OR_RETURN(RingWidth ring, ChooseRing(e.params));
  ASSIGN_OR_RETURN(e.ring, RingOfPlan(sp));
  if (ring != e.ring || Encoder::EncodedSize(n) != sp.vector_length()) {
    return absl::InvalidArgumentError("secure-aggregation plan does not fit this model");
  }
  e.weight = std::min(1.0, static_cast<double>(examples) /
                               static_cast<double>(std::max<uint64_t>(1, sp.max_examples())));
  e.values_per_chunk = ValuesPerChunk(plan, e.ring == RingWidth::k64 ? 8 : 4);
  return e;
}

v1::TransferHeader MaskedUploadHeader(uint64_t round, const std::vector<std::string>& chunks) {
  Sha256Hasher hasher;
  uint64_t total = 0;
  for (const std::string& c : chunks) {
    hasher.Update(c);
    total += c.size();
  }
  v1::TransferHeader header;
  header.set_round(round);
  header.set_total_bytes(total);
  header.set_sha256(ToHex(hasher.Finish()));
  return header;
}

}  // namespace hansa

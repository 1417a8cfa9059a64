// The distributed discrete Gaussian under secure aggregation: what the coordinator unmasks is
// exactly the integer sum of the sites' rounded updates and their noise, and decoding it gives
// the real-valued sum the mechanism promises.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "common/privacy/ddg.h"
#include "common/privacy/uniform_source.h"
#include "common/secagg/client.h"
#include "common/secagg/server.h"

namespace hansa {
namespace {

// Runs one SecAgg+ round without dropouts over the given inputs; the unmasked sum.
StatusOr<RingVector> SecureSum(const std::vector<RingVector>& inputs, RingWidth ring) {
  SecAggParams params;
  params.round = 3;
  params.num_sites = static_cast<uint32_t>(inputs.size());
  params.ring = ring;
  params.vector_length = inputs[0].size();
  params.round_seed = {7};
  ASSIGN_OR_RETURN(params, ResolveParams(params));
  ASSIGN_OR_RETURN(auto server, ServerSession::Create(params));
  std::vector<std::unique_ptr<ClientSession>> sites;
  for (SiteId id = 1; id <= params.num_sites; ++id) {
    ASSIGN_OR_RETURN(auto site, ClientSession::Create(server->params(), id, nullptr));
    ASSIGN_OR_RETURN(AdvertiseKeys keys, site->Start());
    RETURN_IF_ERROR(server->OnAdvertiseKeys(keys));
    sites.push_back(std::move(site));
  }
  ASSIGN_OR_RETURN(KeyDirectory directory, server->CloseAdvertiseKeys());
  for (auto& site : sites) {
    ASSIGN_OR_RETURN(ShareKeys shares, site->OnKeyDirectory(directory));
    RETURN_IF_ERROR(server->OnShareKeys(shares));
  }
  ASSIGN_OR_RETURN(std::vector<ShareDelivery> deliveries, server->CloseShareKeys());
  for (const ShareDelivery& d : deliveries) {
    ClientSession& site = *sites[d.receiver - 1];
    RETURN_IF_ERROR(site.OnShareDelivery(d));
    ASSIGN_OR_RETURN(MaskedInputChunk masked, site.MaskChunk(0, inputs[d.receiver - 1]));
    RETURN_IF_ERROR(server->OnMaskedInputChunk(masked));
  }
  RETURN_IF_ERROR(server->CloseMaskedInput().status());
  ASSIGN_OR_RETURN(UnmaskRequest request, server->StartUnmask());
  for (auto& site : sites) {
    ASSIGN_OR_RETURN(UnmaskResponse response, site->OnUnmaskRequest(request));
    RETURN_IF_ERROR(server->OnUnmaskResponse(response));
  }
  ASSIGN_OR_RETURN(SecAggResult result, server->Finish());
  return result.sum;
}

RingVector Words(const std::vector<uint64_t>& values, RingWidth ring) {
  RingVector v = RingVector::Zeros(ring, values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (ring == RingWidth::k32) {
      v.w32[i] = static_cast<uint32_t>(values[i]);
    } else {
      v.w64[i] = values[i];
    }
  }
  return v;
}

TEST(DdgSecAggTest, UnmaskedSumIsExactlyTheRoundedUpdatesPlusTheSitesNoise) {
  for (RingWidth ring : {RingWidth::k32, RingWidth::k64}) {
    const int bits = ring == RingWidth::k32 ? 32 : 64;
    DdgParams params;
    params.dimension = 300;  // padded to 512
    params.clip_norm = 1.0;
    params.granularity = 1e-3;
    params.noise_multiplier = 0.5;
    params.min_survivors = 4;
    ASSERT_TRUE(params.Validate().ok());
    const std::string seed = "public round seed";
    std::mt19937_64 rng(bits);
    std::normal_distribution<double> normal(0, 0.1);
    std::vector<RingVector> inputs;
    std::vector<int64_t> plain(static_cast<size_t>(params.PaddedDimension()), 0);
    for (int site = 0; site < 4; ++site) {
      std::vector<double> update(static_cast<size_t>(params.dimension));
      for (double& x : update) x = normal(rng);
      SeededUniformSource rounding("rounding " + std::to_string(site));
      SeededUniformSource noise("noise " + std::to_string(site));
      auto rounded = DdgRoundUpdate(update, params, seed, rounding);
      auto site_noise = DdgSiteNoise(params, noise);
      ASSERT_TRUE(rounded.ok() && site_noise.ok()) << rounded.status() << site_noise.status();
      std::vector<int64_t> encoded(rounded->size());
      for (size_t i = 0; i < encoded.size(); ++i) {
        encoded[i] = (*rounded)[i] + (*site_noise)[i];
        plain[i] += encoded[i];
      }
      inputs.push_back(Words(ToRing(encoded, bits), ring));
    }
    auto sum = SecureSum(inputs, ring);
    ASSERT_TRUE(sum.ok()) << sum.status();
    EXPECT_EQ(*sum, Words(ToRing(plain, bits), ring)) << bits << "-bit ring";
    // Decoding the unmasked sum is decoding the plaintext integer sum.
    std::vector<uint64_t> words(sum->size());
    for (size_t i = 0; i < words.size(); ++i) {
      words[i] = ring == RingWidth::k32 ? sum->w32[i] : sum->w64[i];
    }
    auto decoded = DdgDecodeSum(words, bits, params, seed, 4);
    auto reference = DdgDecodeSum(ToRing(plain, bits), bits, params, seed, 4);
    ASSERT_TRUE(decoded.ok() && reference.ok());
    EXPECT_EQ(*decoded, *reference);
    // Fewer survivors than the noise was calibrated for: not released.
    EXPECT_EQ(DdgDecodeSum(words, bits, params, seed, 3).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace hansa

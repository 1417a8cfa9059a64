// The plan readers on hand-made plans: the SecAgg+ parameters, refusals of inconsistent plans,
// and the masked upload's chunks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/plan/plan_readers.h"
#include "common/plan/plan_writer.h"
#include "common/secagg/local_round.h"
#include "common/secagg/masked_upload.h"
#include "common/secagg/server.h"
#include "tests/support/secure_plan.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

using testing::SecurePlan;

TEST(SecAggPlanTest, ReadsParametersAndTheSitesNumber) {
  v1::RoundPlan plan = SecurePlan(10);
  uint32_t self = 0;
  auto params = SecAggParamsOfPlan(plan, "beta", &self);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(self, 2u);
  EXPECT_EQ(params->num_sites, 3u);
  EXPECT_EQ(params->vector_length, 11u);
  EXPECT_EQ(params->round_seed[0], 's');
  EXPECT_THAT(std::string(SecAggParamsOfPlan(plan, "mallory", &self).status().message()),
              HasSubstr("not in the plan's cohort"));
  EXPECT_EQ(params->graph_seed_commitment[0], 'c');
  plan.mutable_secagg()->set_round_seed("short");
  EXPECT_THAT(std::string(SecAggParamsOfPlan(plan, "beta", &self).status().message()),
              HasSubstr("32-byte round seed"));
  // Without the coordinator's commitment to its graph seed the site does not take part.
  plan = SecurePlan(10);
  plan.mutable_secagg()->clear_graph_seed_commitment();
  EXPECT_THAT(std::string(SecAggParamsOfPlan(plan, "beta", &self).status().message()),
              HasSubstr("32-byte graph-seed commitment"));
  // The minimum sum is read, and may not be below what the privacy plan is calibrated for.
  plan = SecurePlan(10);
  plan.mutable_secagg()->set_min_survivors(3);
  auto read = SecAggParamsOfPlan(plan, "beta", &self);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->min_survivors, 3u);
  plan.mutable_privacy()->set_mechanism("distributed_discrete_gaussian");
  plan.mutable_privacy()->set_min_survivors(4);
  EXPECT_THAT(std::string(SecAggParamsOfPlan(plan, "beta", &self).status().message()),
              HasSubstr("below the 4 its privacy plan is calibrated for"));
}

// Three sessions through key sharing; returns site 1's, ready to mask.
std::unique_ptr<ClientSession> SessionReadyToMask(const v1::RoundPlan& plan) {
  uint32_t self = 0;
  auto params = ResolveParams(*SecAggParamsOfPlan(plan, "alpha", &self));
  EXPECT_TRUE(params.ok()) << params.status();
  auto server = *ServerSession::Create(*params);
  std::vector<std::unique_ptr<ClientSession>> sites;
  for (SiteId id = 1; id <= 3; ++id) {
    sites.push_back(*ClientSession::Create(server->params(), id, nullptr));
    EXPECT_TRUE(server->OnAdvertiseKeys(*sites.back()->Start()).ok());
  }
  KeyDirectory directory = *server->CloseAdvertiseKeys();
  for (auto& site : sites) EXPECT_TRUE(server->OnShareKeys(*site->OnKeyDirectory(directory)).ok());
  auto deliveries = server->CloseShareKeys();
  EXPECT_TRUE(deliveries.ok()) << deliveries.status();
  for (const ShareDelivery& d : *deliveries) {
    if (d.receiver == 1) {
      EXPECT_TRUE(sites[0]->OnShareDelivery(d).ok());
    }
  }
  return std::move(sites[0]);
}

TEST(SecAggPlanTest, MaskedChunksFitThePlansChunkSizeHeaderIncluded) {
  const uint64_t n = 3000;
  std::vector<float> values(n, 0.25f);
  for (bool private_round : {false, true}) {
    v1::RoundPlan plan = SecurePlan(n);
    if (private_round) {
      DdgParams ddg;
      ddg.dimension = static_cast<int64_t>(n);
      ddg.granularity = 1e-3;
      ddg.noise_multiplier = 0.5;
      ddg.min_survivors = 3;
      SetPrivacyPlan(ddg, 1e-5, plan.mutable_privacy());
      plan.mutable_secagg()->set_vector_length(static_cast<uint64_t>(ddg.PaddedDimension()));
      plan.mutable_secagg()->set_min_survivors(3);
    }
    auto session = SessionReadyToMask(plan);
    auto chunks = MaskUpdateForPlan(plan, *session, values, 100);
    ASSERT_TRUE(chunks.ok()) << chunks.status();
    uint64_t words = 0;
    for (const std::string& c : *chunks) {
      EXPECT_LE(c.size(), plan.chunk_bytes());
      auto parsed = MaskedInputChunk::Parse(c);
      ASSERT_TRUE(parsed.ok()) << parsed.status();
      EXPECT_EQ(parsed->offset, words);
      words += parsed->data.size();
    }
    EXPECT_EQ(words, plan.secagg().vector_length()) << (private_round ? "DDG" : "plain");
    EXPECT_GT(chunks->size(), 2u);
  }
}

// MaskUpdateForPlan gives the update's memory pages back as its chunks are made: values not
// yet encoded must be left as they were, so a round of updates of many pages unmasks to the
// sum of their encodings, bit for bit.
TEST(SecAggPlanTest, AnUpdateGivenBackPageByPageStillSumsExactly) {
  const uint64_t n = (uint64_t{1} << 20) + 3;  // 4 MiB, masked in chunks of 4 KiB
  const v1::RoundPlan plan = SecurePlan(n);
  uint32_t self = 0;
  auto params = ResolveParams(*SecAggParamsOfPlan(plan, "alpha", &self));
  ASSERT_TRUE(params.ok()) << params.status();
  auto round = LocalRound::Create(*params);
  ASSERT_TRUE(round.ok()) << round.status();
  ASSERT_TRUE(round->ExchangeKeys().ok());
  const SecretBytes seed(std::string(32, 'r'));
  auto encoding = PlanEncodingFor(plan, n, 100);
  ASSERT_TRUE(encoding.ok()) << encoding.status();
  RingVector expected = RingVector::Zeros(encoding->ring, Encoder::EncodedSize(n));
  for (SiteId id = 1; id <= 3; ++id) {
    std::vector<float> values(n);
    for (uint64_t i = 0; i < n; ++i) {
      values[i] = static_cast<float>(static_cast<int64_t>((i * 7919 + id) % 2001) - 1000) / 900;
    }
    auto reference = Encoder::CreateWithSeed(encoding->params, seed);
    ASSERT_TRUE(reference.ok()) << reference.status();
    ASSERT_TRUE(expected.AddInPlace(*reference->Encode(values, encoding->weight)).ok());
    auto chunks = MaskUpdateForPlan(plan, round->site(id), std::move(values), 100, &seed);
    ASSERT_TRUE(chunks.ok()) << chunks.status();
    ASSERT_TRUE(round->Upload(*chunks).ok());
  }
  auto result = round->Unmask();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->sum == expected);
}

TEST(SecAggPlanTest, PlanThatDoesNotFitTheModelIsRefused) {
  v1::RoundPlan plan = SecurePlan(10);
  auto session = SessionReadyToMask(plan);
  std::vector<float> values(11, 0.f);  // one value too many for the plan
  EXPECT_THAT(std::string(MaskUpdateForPlan(plan, *session, values, 1).status().message()),
              HasSubstr("does not fit this model"));
}

}  // namespace
}  // namespace hansa

// The round plan's round trip: plans written by the one writer (plaintext and secure, with and
// without privacy), serialized and parsed as a site receives them, read back field by field
// through the readers; and the site's policy refusing a plan whose aggregation it cannot read.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/local_trainer.h"
#include "client/policy.h"
#include "common/net/chunk_limits.h"
#include "common/plan/plan_readers.h"
#include "common/plan/plan_writer.h"
#include "common/privacy/central_gaussian.h"
#include "common/privacy/ddg_accountant.h"
#include "common/privacy/rdp.h"
#include "common/secagg/encoding.h"
#include "proto/plan_digest.h"

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint64_t kRound = 7;
constexpr size_t kModelValues = 5000;
const std::vector<std::string> kCohort = {"berlin", "milan", "paris", "vienna"};

v1::TrainingSettings Training() {
  v1::TrainingSettings t;
  t.set_epochs(2);
  t.set_batch_size(64);
  t.set_learning_rate(0.01);
  t.set_momentum(0.9);
  t.set_weight_decay(1e-5);
  t.set_seed(42);
  return t;
}

// The federation's choices a round plan is written from; `privacy` and `record` outlive it.
RoundPlanInputs Inputs(const v1::TrainingSettings& training, uint32_t attempt, bool secure) {
  RoundPlanInputs in;
  in.basics.round = kRound;
  in.basics.model_name = "simple_cnn";
  in.basics.global_model_sha256 = "ab12";
  in.basics.global_model_bytes = 123456;
  in.basics.cohort = &kCohort;
  in.basics.chunk_bytes = 65536;
  in.attempt = attempt;
  in.training = &training;
  in.secure = secure;
  return in;
}

// What a site holds after the plan crossed the wire.
v1::RoundPlan OverTheWire(const v1::RoundPlan& written) {
  std::string bytes;
  EXPECT_TRUE(written.SerializeToString(&bytes));
  v1::RoundPlan read;
  EXPECT_TRUE(read.ParseFromString(bytes));
  return read;
}

// SecAgg+ parameters as the coordinator resolves them for the cohort and `ring`.
SecAggParams Resolved(RingWidth ring, uint64_t vector_length, uint32_t min_survivors,
                      bool malicious) {
  SecAggParams p;
  p.round = kRound;
  p.num_sites = static_cast<uint32_t>(kCohort.size());
  p.ring = ring;
  p.vector_length = vector_length;
  p.min_survivors = min_survivors;
  for (size_t i = 0; i < p.round_seed.size(); ++i) {
    p.round_seed[i] = static_cast<uint8_t>(i);
    p.graph_seed_commitment[i] = static_cast<uint8_t>(255 - i);
  }
  // Resolved without the signing keys malicious mode wants: the plan carries certificates.
  p.malicious = false;
  StatusOr<SecAggParams> resolved = ResolveParams(p);
  EXPECT_TRUE(resolved.ok()) << resolved.status();
  if (!resolved.ok()) return p;
  resolved->malicious = malicious;
  return *resolved;
}

void ExpectBasics(const v1::RoundPlan& plan) {
  EXPECT_EQ(plan.round(), kRound);
  EXPECT_EQ(plan.model_name(), "simple_cnn");
  EXPECT_EQ(plan.global_model_sha256(), "ab12");
  EXPECT_EQ(plan.global_model_bytes(), 123456u);
  EXPECT_THAT(plan.cohort(), ElementsAre("berlin", "milan", "paris", "vienna"));
  EXPECT_EQ(plan.chunk_bytes(), 65536u);
}

TEST(RoundPlanTest, PlaintextPlanWithoutPrivacyReadsBack) {
  const v1::TrainingSettings training = Training();
  const v1::RoundPlan plan = OverTheWire(MakeRoundPlan(Inputs(training, 1, false)));
  ExpectBasics(plan);
  EXPECT_EQ(plan.attempt(), 1u);
  EXPECT_EQ(plan.aggregation_mode(), v1::AGGREGATION_PLAINTEXT);
  EXPECT_FALSE(IsSecure(plan));
  EXPECT_TRUE(HasKnownAggregation(plan));
  EXPECT_EQ(AggregationName(plan), "plaintext");
  EXPECT_FALSE(plan.has_secagg());
  EXPECT_FALSE(HasClientPrivacy(plan));
  EXPECT_FALSE(HasRecordPrivacy(plan));
  EXPECT_EQ(plan.upload_deadline_unix_ms(), 0);
  // The site's training settings: the federation's, with the round's own seed.
  const TrainSettings s = SettingsOfPlan(plan);
  EXPECT_EQ(s.epochs, 2);
  EXPECT_EQ(s.batch_size, 64);
  EXPECT_EQ(s.learning_rate, 0.01);
  EXPECT_EQ(s.momentum, 0.9);
  EXPECT_EQ(s.weight_decay, 1e-5);
  EXPECT_EQ(s.seed, 42u * 1000003 + kRound);
  EXPECT_EQ(s.seed, TrainingSeed(42, kRound, 1));
  EXPECT_EQ(s.dp.clip_norm, 0);
}

TEST(RoundPlanTest, RetryTrainsFromAnotherSeed) {
  const v1::TrainingSettings training = Training();
  const v1::RoundPlan first = MakeRoundPlan(Inputs(training, 1, false));
  const v1::RoundPlan retry = OverTheWire(MakeRoundPlan(Inputs(training, 2, false)));
  EXPECT_EQ(retry.attempt(), 2u);
  EXPECT_EQ(retry.training().seed(), (42u * 1000003 + kRound) * 1000033 + 2);
  EXPECT_NE(retry.training().seed(), first.training().seed());
  EXPECT_NE(PlanSha256(retry), PlanSha256(first));
}

TEST(RoundPlanTest, PlaintextPlanWithCentralGaussianAndRecordPrivacyReadsBack) {
  const v1::TrainingSettings training = Training();
  DdgParams central;
  central.clip_norm = 0.5;
  central.noise_multiplier = 1.5;
  central.min_survivors = 3;
  v1::PrivacyPlan privacy;
  SetPrivacyPlan(central, 1e-6, &privacy, kCentralGaussian);
  RecordPrivacyParams record{1.0, 1.1, 0.02, 150, 1e-5};
  v1::RecordPrivacyPlan record_plan;
  SetRecordPrivacyPlan(record, &record_plan);
  RoundPlanInputs in = Inputs(training, 1, false);
  in.privacy = &privacy;
  in.record_privacy = &record_plan;
  const v1::RoundPlan plan = OverTheWire(MakeRoundPlan(in));

  EXPECT_FALSE(IsSecure(plan));
  ASSERT_TRUE(HasClientPrivacy(plan));
  EXPECT_EQ(plan.privacy().mechanism(), kCentralGaussian);
  EXPECT_EQ(plan.privacy().clip_norm(), 0.5);
  EXPECT_EQ(plan.privacy().delta(), 1e-6);
  auto rdp = RoundRdpOfPlan(plan.privacy(), kModelValues);
  ASSERT_TRUE(rdp.ok()) << rdp.status();
  EXPECT_EQ(*rdp, *CentralGaussianRdp(1, 1, 1.5, 1, DefaultRdpOrders()));

  ASSERT_TRUE(HasRecordPrivacy(plan));
  const v1::RecordPrivacyPlan& r = plan.record_privacy();
  EXPECT_EQ(r.clip_norm(), 1.0);
  EXPECT_EQ(r.noise_multiplier(), 1.1);
  EXPECT_EQ(r.sampling_rate(), 0.02);
  EXPECT_EQ(r.steps(), 150u);
  EXPECT_EQ(r.delta(), 1e-5);
  auto record_rdp = RecordRoundRdp(r);
  ASSERT_TRUE(record_rdp.ok()) << record_rdp.status();
  EXPECT_EQ(*record_rdp, *ComputeSampledGaussianRdp(0.02, 1.1, 150, DefaultRdpOrders()));
  // DP-SGD reaches the trainer with the same parameters.
  const TrainSettings s = SettingsOfPlan(plan);
  EXPECT_EQ(s.dp.clip_norm, 1.0);
  EXPECT_EQ(s.dp.noise_multiplier, 1.1);
  EXPECT_EQ(s.dp.sampling_rate, 0.02);
  EXPECT_EQ(s.dp.steps, 150);
}

TEST(RoundPlanTest, SecurePlanWithoutPrivacyReadsBack) {
  const v1::TrainingSettings training = Training();
  const EncodingParams encoding{2.0, 16, static_cast<int>(kCohort.size())};
  const RingWidth ring = *ChooseRing(encoding);
  const SecAggParams params = Resolved(ring, Encoder::EncodedSize(kModelValues), 3, false);
  v1::RoundPlan written = MakeRoundPlan(Inputs(training, 1, true));
  const std::vector<std::string> certificates = {"not", "sent", "when", "honest"};
  WriteSecAggPlan({&params, 2.0, 16, 1000, absl::Seconds(90), &certificates}, &written);
  SetUploadDeadline(absl::FromUnixMillis(1700000000123), &written);
  const v1::RoundPlan plan = OverTheWire(written);

  ExpectBasics(plan);
  EXPECT_EQ(plan.aggregation_mode(), v1::AGGREGATION_SECURE);
  EXPECT_TRUE(IsSecure(plan));
  EXPECT_EQ(AggregationName(plan), "secure");
  EXPECT_FALSE(HasClientPrivacy(plan));
  EXPECT_FALSE(HasRecordPrivacy(plan));
  EXPECT_EQ(plan.upload_deadline_unix_ms(), 1700000000123);
  const v1::SecAggPlan& sp = plan.secagg();
  EXPECT_EQ(sp.deadline_seconds(), 90u);
  EXPECT_EQ(sp.certificates_size(), 0);  // only malicious mode carries them

  uint32_t self = 0;
  auto read = SecAggParamsOfPlan(plan, "paris", &self);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(self, 3u);
  EXPECT_EQ(read->round, kRound);
  EXPECT_EQ(read->num_sites, params.num_sites);
  EXPECT_EQ(read->degree, params.degree);
  EXPECT_EQ(read->threshold, params.threshold);
  EXPECT_FALSE(read->malicious);
  EXPECT_EQ(read->ring, ring);
  EXPECT_EQ(*RingOfPlan(sp), ring);
  EXPECT_EQ(read->vector_length, params.vector_length);
  EXPECT_EQ(read->min_survivors, 3u);
  EXPECT_EQ(read->round_seed, params.round_seed);
  EXPECT_EQ(read->graph_seed_commitment, params.graph_seed_commitment);

  auto e = PlanEncodingFor(plan, kModelValues, 250);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->params.clip, 2.0);
  EXPECT_EQ(e->params.bits, 16);
  EXPECT_EQ(e->params.cohort_size, static_cast<int>(kCohort.size()));
  EXPECT_EQ(e->ring, ring);
  EXPECT_EQ(e->weight, 0.25);  // 250 of max_examples 1000
  const size_t word = ring == RingWidth::k64 ? 8 : 4;
  EXPECT_GT(e->values_per_chunk, 0u);
  EXPECT_LE(e->values_per_chunk * word, 65536u);
}

// The distributed discrete Gaussian's parameters for a model of kModelValues values.
DdgParams Ddg(int64_t min_survivors) {
  DdgParams ddg;
  ddg.dimension = kModelValues;
  ddg.clip_norm = 1.0;
  ddg.granularity = 1e-3;
  ddg.noise_multiplier = 0.8;
  ddg.min_survivors = min_survivors;
  return ddg;
}

TEST(RoundPlanTest, SecurePlanWithClientPrivacyAndMaliciousChecksReadsBack) {
  const v1::TrainingSettings training = Training();
  const DdgParams ddg = Ddg(3);
  ASSERT_TRUE(ddg.Validate().ok());
  v1::PrivacyPlan privacy;
  SetPrivacyPlan(ddg, 1e-5, &privacy);
  RoundPlanInputs in = Inputs(training, 3, true);
  in.privacy = &privacy;
  v1::RoundPlan written = MakeRoundPlan(in);
  const SecAggParams params =
      Resolved(RingWidth::k64, static_cast<uint64_t>(ddg.PaddedDimension()), 3, true);
  const std::vector<std::string> certificates = {"pem 1", "pem 2", "pem 3", "pem 4"};
  WriteSecAggPlan({&params, 1.0, 20, 60000, absl::Minutes(2), &certificates}, &written);
  const v1::RoundPlan plan = OverTheWire(written);

  EXPECT_TRUE(IsSecure(plan));
  EXPECT_EQ(plan.attempt(), 3u);
  EXPECT_EQ(plan.training().seed(), TrainingSeed(42, kRound, 3));
  ASSERT_TRUE(HasClientPrivacy(plan));
  EXPECT_FALSE(HasRecordPrivacy(plan));
  const DdgParams back = DdgParamsOfPlan(plan.privacy(), kModelValues);
  EXPECT_EQ(back.clip_norm, 1.0);
  EXPECT_EQ(back.granularity, 1e-3);
  EXPECT_EQ(back.noise_multiplier, 0.8);
  EXPECT_EQ(back.beta, ddg.beta);
  EXPECT_EQ(back.min_survivors, 3);
  EXPECT_EQ(back.PaddedDimension(), ddg.PaddedDimension());
  auto rdp = RoundRdpOfPlan(plan.privacy(), kModelValues);
  ASSERT_TRUE(rdp.ok()) << rdp.status();
  EXPECT_EQ(*rdp, *DdgRdp(ddg, 1, DefaultRdpOrders()));

  const v1::SecAggPlan& sp = plan.secagg();
  EXPECT_EQ(sp.ring_bits(), 64u);
  EXPECT_EQ(sp.bits(), 20u);
  EXPECT_EQ(sp.max_examples(), 60000u);
  EXPECT_EQ(sp.deadline_seconds(), 120u);
  EXPECT_THAT(sp.certificates(), ElementsAre("pem 1", "pem 2", "pem 3", "pem 4"));
  uint32_t self = 0;
  auto read = SecAggParamsOfPlan(plan, "berlin", &self);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(self, 1u);
  EXPECT_TRUE(read->malicious);
  EXPECT_EQ(read->ring, RingWidth::k64);
  EXPECT_EQ(read->vector_length, static_cast<uint64_t>(ddg.PaddedDimension()));
}

TEST(RoundPlanTest, EvaluationPlanNamesOnlyTheBasics) {
  PlanBasics basics = Inputs(Training(), 1, false).basics;
  const v1::RoundPlan plan = OverTheWire(MakeEvaluationPlan(basics));
  ExpectBasics(plan);
  EXPECT_FALSE(plan.has_training());
  EXPECT_EQ(plan.attempt(), 0u);
  EXPECT_EQ(plan.aggregation_mode(), v1::AGGREGATION_UNSPECIFIED);
  EXPECT_FALSE(HasKnownAggregation(plan));
  EXPECT_FALSE(plan.has_secagg());
  EXPECT_FALSE(HasClientPrivacy(plan));
  EXPECT_FALSE(HasRecordPrivacy(plan));
}

TEST(RoundPlanTest, RingOtherThan32Or64BitsIsRefused) {
  v1::SecAggPlan sp;
  for (uint32_t bits : {0u, 16u, 128u}) {
    sp.set_ring_bits(bits);
    Status st = RingOfPlan(sp).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << bits;
    EXPECT_THAT(std::string(st.message()), HasSubstr(absl::StrCat(bits, "-bit ring")));
  }
  sp.set_ring_bits(32);
  EXPECT_EQ(*RingOfPlan(sp), RingWidth::k32);
}

// A policy that would accept the plan but for its aggregation.
SitePolicy Lenient() {
  SitePolicy policy;
  policy.allowed_models = {"simple_cnn"};
  policy.require_secure_aggregation = false;
  return policy;
}

TEST(SitePolicyPlanTest, TrainingPlanWithUnspecifiedAggregationIsRefused) {
  v1::RoundPlan plan = MakeRoundPlan(Inputs(Training(), 1, false));
  ASSERT_TRUE(CheckPlan(Lenient(), plan, /*sends_update=*/true).ok());
  plan.clear_aggregation_mode();
  Status st = CheckPlan(Lenient(), OverTheWire(plan), /*sends_update=*/true);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("round 7 names an aggregation this site does not know (unspecified; "
                        "plaintext or secure expected)"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("refused"));
}

TEST(SitePolicyPlanTest, TrainingPlanWithAggregationFromANewerContractIsRefused) {
  v1::RoundPlan plan = MakeRoundPlan(Inputs(Training(), 1, true));
  plan.set_aggregation_mode(static_cast<v1::Aggregation>(7));
  const v1::RoundPlan read = OverTheWire(plan);  // proto3 keeps the unknown value
  EXPECT_FALSE(IsSecure(read));
  Status st = CheckPlan(Lenient(), read, /*sends_update=*/true);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("names an aggregation this site does not know (unknown (7)"));
}

TEST(SitePolicyPlanTest, EvaluationPlanNeedsNoAggregation) {
  PlanBasics basics = Inputs(Training(), 1, false).basics;
  EXPECT_TRUE(CheckPlan(Lenient(), MakeEvaluationPlan(basics), /*sends_update=*/false).ok());
}

TEST(SitePolicyPlanTest, PlaintextPlanIsRefusedWhereSecureAggregationIsRequired) {
  SitePolicy policy = Lenient();
  policy.require_secure_aggregation = true;
  Status st = CheckPlan(policy, MakeRoundPlan(Inputs(Training(), 1, false)), /*sends_update=*/true);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("round 7 uses plaintext aggregation but this site's policy requires "
                        "secure aggregation (policy.require_secure_aggregation)"));
}

// The site adds its noise only under the distributed discrete Gaussian, inside a secure sum;
// under the central Gaussian the coordinator adds it to a plaintext sum. A plan that pairs
// them otherwise (or names a mechanism the site does not know) would book a guarantee while
// the update leaves without noise: refused, and the two real pairings pass.
TEST(SitePolicyPlanTest, APrivacyMechanismWithTheWrongAggregationIsRefused) {
  const DdgParams ddg = Ddg(1);
  ASSERT_TRUE(ddg.Validate().ok());
  const v1::TrainingSettings training = Training();  // the inputs point to it
  auto plan_with = [&](const char* mechanism, bool secure) {
    v1::PrivacyPlan privacy;
    SetPrivacyPlan(ddg, 1e-5, &privacy, mechanism);
    RoundPlanInputs in = Inputs(training, 1, secure);
    in.privacy = &privacy;
    return OverTheWire(MakeRoundPlan(in));
  };
  EXPECT_TRUE(CheckPlan(Lenient(), plan_with(kCentralGaussian, false), true).ok());
  Status secure_ddg = CheckPlan(Lenient(), plan_with(kDistributedDiscreteGaussian, true), true);
  EXPECT_THAT(std::string(secure_ddg.message()), Not(HasSubstr("privacy mechanism"))) << secure_ddg;
  struct Case {
    const char* mechanism;
    bool secure;
    const char* says;
  };
  for (const Case& c : {Case{kDistributedDiscreteGaussian, false,
                             "names the privacy mechanism 'distributed_discrete_gaussian' with "
                             "plaintext aggregation"},
                        Case{kCentralGaussian, true,
                             "names the privacy mechanism 'central_gaussian' with secure "
                             "aggregation"},
                        Case{"laplace", false, "names the privacy mechanism 'laplace'"}}) {
    Status st = CheckPlan(Lenient(), plan_with(c.mechanism, c.secure), /*sends_update=*/true);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.mechanism;
    EXPECT_THAT(std::string(st.message()), HasSubstr(c.says));
    EXPECT_THAT(std::string(st.message()), HasSubstr("refused"));
  }
}

// A plan's chunk size is the coordinator's to set, and the site cuts its update by it: a plan of
// one-byte chunks had the site make a view, and send a message, per byte of its update. Refused
// outside what a federation may use (chunk_limits.h); 0 (the default size) and both ends pass.
TEST(SitePolicyPlanTest, ChunksOutsideWhatAFederationMayUseAreRefused) {
  const v1::TrainingSettings training = Training();  // the inputs point to it
  auto plan_of = [&](uint32_t chunk_bytes) {
    RoundPlanInputs in = Inputs(training, 1, false);
    in.basics.chunk_bytes = chunk_bytes;
    return OverTheWire(MakeRoundPlan(in));
  };
  for (uint32_t fine : {0u, kMinChunkBytes, 1u << 20, kMaxChunkBytes}) {
    EXPECT_TRUE(CheckPlan(Lenient(), plan_of(fine), /*sends_update=*/true).ok()) << fine;
  }
  for (uint32_t bad : {1u, kMinChunkBytes - 1, kMaxChunkBytes + 1, 0xffffffffu}) {
    for (bool sends_update : {true, false}) {
      Status st = CheckPlan(Lenient(), plan_of(bad), sends_update);
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << bad;
      EXPECT_THAT(std::string(st.message()),
                  HasSubstr(absl::StrCat("cuts transfers into chunks of ", bad, " bytes")));
      EXPECT_THAT(std::string(st.message()), HasSubstr("refused"));
    }
  }
}

}  // namespace
}  // namespace hansa

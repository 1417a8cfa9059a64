#include "common/privacy/ddg.h"

#include <cmath>
#include <numeric>
#include <string>

#include "common/privacy/central_gaussian.h"
#include "common/privacy/ddg_accountant.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

std::vector<double> RandomVector(size_t n, double scale, const std::string& seed) {
  SeededUniformSource src(seed);
  std::vector<double> v(n);
  for (double& x : v) x = scale * (static_cast<double>(src.NextUint64() >> 11) * 0x1.0p-53 - 0.5);
  return v;
}

double Norm(const std::vector<double>& v) {
  return std::sqrt(std::inner_product(v.begin(), v.end(), v.begin(), 0.0));
}

DdgParams TestParams() {
  DdgParams p;
  p.dimension = 37;  // padded to 64
  p.clip_norm = 1.0;
  p.granularity = 1.0 / 256;
  p.noise_multiplier = 0.5;
  p.min_survivors = 3;
  return p;
}

TEST(DdgTest, HadamardRotationIsInvertibleAndOrthonormal) {
  auto x = RandomVector(64, 2, "x");
  auto rotated = RandomizedHadamard(x, "round-7");
  EXPECT_NEAR(Norm(rotated), Norm(x), 1e-12);
  EXPECT_NE(rotated, RandomizedHadamard(x, "round-8"));  // the signs depend on the seed
  auto back = InverseRandomizedHadamard(rotated, "round-7");
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(back[i], x[i], 1e-12);
}

TEST(DdgTest, AggregateEqualsSumOfRoundedInputsPlusNoiseExactly) {
  const DdgParams p = TestParams();
  const int sites = 5;
  std::vector<int64_t> expected(p.PaddedDimension(), 0);
  std::vector<uint32_t> ring_sum(p.PaddedDimension(), 0);
  for (int s = 0; s < sites; ++s) {
    auto update = RandomVector(p.dimension, 3, "update-" + std::to_string(s));
    // Two copies of the same private stream: one encodes, one reproduces the parts.
    SeededUniformSource enc_src("site-" + std::to_string(s)), part_src("site-" + std::to_string(s));
    auto encoded = DdgEncode(update, p, "round-1", enc_src);
    auto rounded = DdgRoundUpdate(update, p, "round-1", part_src);
    auto noise = DdgSiteNoise(p, part_src);
    ASSERT_TRUE(encoded.ok() && rounded.ok() && noise.ok()) << encoded.status();
    bool any_noise = false;
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ((*encoded)[i], (*rounded)[i] + (*noise)[i]);
      expected[i] += (*rounded)[i] + (*noise)[i];
      any_noise |= (*noise)[i] != 0;
    }
    EXPECT_TRUE(any_noise);
    // What secure aggregation does: add in Z_2^32, with pairwise masks that cancel.
    auto ring = ToRing(*encoded, 32);
    SeededUniformSource mask_src("mask-" + std::to_string(s / 2));
    for (size_t i = 0; i < ring.size(); ++i) {
      uint32_t mask = static_cast<uint32_t>(mask_src.NextUint64());
      uint32_t masked = static_cast<uint32_t>(ring[i]) + (s == 4 ? 0 : (s % 2 ? -mask : mask));
      ring_sum[i] += masked;
    }
  }
  std::vector<uint64_t> ring_sum64(ring_sum.begin(), ring_sum.end());
  EXPECT_EQ(FromRing(ring_sum64, 32), expected);
}

TEST(DdgTest, DecodingWithoutNoiseRecoversClippedMeanWithinRoundingBound) {
  DdgParams p = TestParams();
  p.noise_multiplier = 0;
  const int sites = 4;
  std::vector<double> clipped_mean(p.dimension, 0);
  std::vector<int64_t> sum(p.PaddedDimension(), 0);
  CryptoUniformSource private_src;
  for (int s = 0; s < sites; ++s) {
    auto update = RandomVector(p.dimension, 4, "big-" + std::to_string(s));  // norm ~ 7 > C
    auto encoded = DdgEncode(update, p, "round-2", private_src);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += (*encoded)[i];
    ASSERT_GT(ClipToL2Norm(update, p.clip_norm), p.clip_norm);
    for (size_t i = 0; i < update.size(); ++i) clipped_mean[i] += update[i] / sites;
  }
  auto decoded = DdgDecodeSum(ToRing(sum, 64), 64, p, "round-2", sites);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  std::vector<double> err(p.dimension);
  for (size_t i = 0; i < err.size(); ++i) err[i] = (*decoded)[i] / sites - clipped_mean[i];
  // Each site's rounding moves each rotated coordinate by < 1 integer step: ||error of the
  // mean|| < gamma sqrt(d'). The mean itself has norm ~0.5, so this is a real check.
  EXPECT_LT(Norm(err), p.granularity * std::sqrt(double(p.PaddedDimension())));
  EXPECT_GT(Norm(clipped_mean), 0.2);
}

TEST(DdgTest, ConditionalRoundingStaysWithinTheNormBound) {
  DdgParams p = TestParams();
  p.granularity = 0.05;  // coarse, so rounding matters relative to the norm
  SeededUniformSource src("rounding");
  for (int i = 0; i < 50; ++i) {
    auto z = DdgRoundUpdate(RandomVector(p.dimension, 3, "r" + std::to_string(i)), p, "r", src);
    ASSERT_TRUE(z.ok());
    double norm2 = 0;
    for (int64_t v : *z) norm2 += double(v) * double(v);
    EXPECT_LE(std::sqrt(norm2), p.RoundedNormBound());
  }
}

TEST(DdgTest, RefusesToReleaseWhenTooFewSitesSurvive) {
  const DdgParams p = TestParams();
  std::vector<uint64_t> sum(p.PaddedDimension(), 0);
  auto decoded = DdgDecodeSum(sum, 32, p, "round-3", 2);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("retry the round"));
}

TEST(DdgTest, RejectsBadInput) {
  DdgParams p = TestParams();
  SeededUniformSource src("bad");
  auto st = DdgEncode(std::vector<double>(36, 0.0), p, "r", src).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("36 values"));
  std::vector<double> nan_update(37, 0.0);
  nan_update[5] = std::nan("");
  st = DdgEncode(nan_update, p, "r", src).status();
  EXPECT_THAT(std::string(st.message()), HasSubstr("value 5"));
  p.beta = 1;
  EXPECT_THAT(std::string(p.Validate().message()), HasSubstr("beta 1"));
}

TEST(DdgTest, RingMappingRoundTripsSignedValues) {
  std::vector<int64_t> v = {0, 1, -1, 2147483647, -2147483648LL, -12345};
  EXPECT_EQ(FromRing(ToRing(v, 32), 32), v);
  EXPECT_EQ(ToRing({-1}, 32)[0], 0xffffffffu);
  EXPECT_EQ(FromRing(ToRing(v, 64), 64), v);
}

// Reference epsilons: reference_values.py `ddg` (50-digit mpmath evaluation of Kairouz et al.
// Thm. 1 / Prop. 14 over the same orders, written separately from this code).
TEST(DdgAccountantTest, MatchesIndependentEvaluation) {
  struct Case {
    int64_t d;
    double c, gamma, z;
    int64_t n;
    double beta;
    int64_t rounds;
    double delta, eps, order, bound;
  };
  for (const Case& k : {
           Case{1000, 1, 0.01, 1.0, 5, std::exp(-0.5), 10, 1e-5, 19.5055868761, 2.4, 101.843016452},
           Case{10, 1, 1.0 / 32, 1.0, 1000, std::exp(-0.5), 50, 1e-5, 58.8842391588, 1.7,
                32.5883414736},  // tau = 4.3e-4 matters here
           Case{300, 2, 0.05, 3.0, 3, 0, 20, 1e-6, 14.0923644074, 3.2, 62.627416998},
       }) {
    DdgParams p;
    p.dimension = k.d;
    p.clip_norm = k.c;
    p.granularity = k.gamma;
    p.noise_multiplier = k.z;
    p.min_survivors = k.n;
    p.beta = k.beta;
    EXPECT_NEAR(p.RoundedNormBound(), k.bound, k.bound * 1e-10);
    auto spent = DdgEpsilon(p, k.rounds, k.delta);
    ASSERT_TRUE(spent.ok()) << spent.status();
    EXPECT_NEAR(spent->epsilon, k.eps, k.eps * 1e-9) << k.d;
    EXPECT_DOUBLE_EQ(spent->order, k.order);
  }
}

TEST(DdgAccountantTest, LargeNoiseReducesToTheGaussianMechanism) {
  // With per-site stddev >> 1, tau ~ 0 and the bound is that of the Gaussian mechanism with
  // z_eff = sqrt(n) s / Delta_2: compare with the sampled-Gaussian accountant at q = 1.
  DdgParams p;
  p.dimension = 5000;
  p.clip_norm = 0.5;
  p.granularity = 1e-3;
  p.noise_multiplier = 1.1;
  p.min_survivors = 8;
  double z_eff = std::sqrt(p.min_survivors * p.SiteNoiseVariance()) / p.RoundedNormBound();
  auto ddg = DdgRdp(p, 30, DefaultRdpOrders());
  auto gauss = ComputeSampledGaussianRdp(1.0, z_eff, 30, DefaultRdpOrders());
  ASSERT_TRUE(ddg.ok() && gauss.ok());
  for (size_t i = 0; i < ddg->size(); ++i) EXPECT_NEAR((*ddg)[i], (*gauss)[i], 1e-12 * (*gauss)[i]);
  // And the rounding inflation is visible: z_eff is below the nominal multiplier.
  EXPECT_LT(z_eff, p.noise_multiplier);
}

TEST(DdgAccountantTest, RejectsNoiseBelowTheoremRange) {
  DdgParams p = TestParams();
  p.granularity = 0.5;  // c/gamma = 2, total stddev 0.6, per-site 0.6/sqrt(3) = 0.35
  p.noise_multiplier = 0.3;
  auto st = DdgEpsilon(p, 1, 1e-5).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("below 1/2"));
  p.noise_multiplier = 0;
  EXPECT_THAT(std::string(DdgEpsilon(p, 1, 1e-5).status().message()), HasSubstr("no differential"));
}

TEST(CentralGaussianTest, NoiseHasPlannedStddev) {
  std::vector<double> sum(20000, 1.0);
  SeededUniformSource src("central");
  ASSERT_TRUE(AddCentralGaussianNoise(sum, 2.0, 1.5, src).ok());
  double m = 0, v = 0;
  for (double x : sum) m += (x - 1.0) / sum.size();
  for (double x : sum) v += (x - 1.0 - m) * (x - 1.0 - m) / sum.size();
  EXPECT_NEAR(m, 0, 6 * 3 / std::sqrt(20000.0));
  EXPECT_NEAR(v, 9, 6 * 9 * std::sqrt(2 / 20000.0));
}

TEST(CentralGaussianTest, AccountedAsSampledGaussianOverSites) {
  // 25 of 10000 sites per round = q 0.0025; 6000 rounds at z 1.3 is the published 0.7242.
  auto spent = CentralGaussianEpsilon(25, 10000, 1.3, 6000, 1e-5);
  ASSERT_TRUE(spent.ok());
  EXPECT_NEAR(spent->epsilon, 0.7242234026, 1e-7);
  auto st = CentralGaussianEpsilon(11, 10, 1.3, 1, 1e-5).status();
  EXPECT_THAT(std::string(st.message()), HasSubstr("cohort of 11 out of 10"));
}

}  // namespace
}  // namespace hansa

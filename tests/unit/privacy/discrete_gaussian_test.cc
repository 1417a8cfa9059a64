#include "common/privacy/discrete_gaussian.h"

#include <cmath>
#include <map>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

// Upper 1e-6 quantile of chi-square with `df` degrees of freedom (Wilson-Hilferty; within a
// few percent for df >= 5). A correct sampler fails with probability ~1e-6 for a random seed;
// the seed here is fixed, so the test is deterministic.
double ChiSquareCritical(int df) {
  const double z = 4.753424;  // standard normal upper 1e-6 quantile
  double a = 2.0 / (9.0 * df);
  return df * std::pow(1 - a + z * std::sqrt(a), 3);
}

// Pearson chi-square of `samples` against N_Z(0, sigma2): one bin per integer whose expected
// count is >= 20, plus one bin for each tail. Sets *df.
double ChiSquareAgainstDiscreteGaussian(const std::vector<int64_t>& samples, double sigma2,
                                        int* df) {
  double norm = 0;
  int64_t far = static_cast<int64_t>(40 * std::sqrt(sigma2)) + 40;
  for (int64_t x = -far; x <= far; ++x) norm += std::exp(-double(x * x) / (2 * sigma2));
  auto pmf = [&](int64_t x) { return std::exp(-double(x * x) / (2 * sigma2)) / norm; };
  const double n = static_cast<double>(samples.size());
  int64_t k = 0;
  while (pmf(k + 1) * n >= 20) ++k;
  std::map<int64_t, double> observed;
  for (int64_t s : samples) observed[std::max(-k - 1, std::min(k + 1, s))] += 1;
  double tail = 0.5 * (1 - [&] {
                  double c = 0;
                  for (int64_t x = -k; x <= k; ++x) c += pmf(x);
                  return c;
                }());
  double chi2 = 0;
  for (int64_t x = -k - 1; x <= k + 1; ++x) {
    double expected = (x < -k || x > k ? tail : pmf(x)) * n;
    double d = observed[x] - expected;
    chi2 += d * d / expected;
  }
  *df = static_cast<int>(2 * k + 3 - 1);
  return chi2;
}

std::vector<int64_t> Draw(const DiscreteGaussianSampler& s, UniformSource& src, int n) {
  std::vector<int64_t> out(n);
  for (auto& v : out) v = s.Sample(src);
  return out;
}

TEST(DiscreteGaussianTest, MatchesExactPmfForRationalVariance) {
  auto sampler = DiscreteGaussianSampler::Create(10, 3);  // sigma^2 = 10/3, sigma irrational
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  SeededUniformSource src("dg-gof-10/3");
  auto samples = Draw(*sampler, src, 100000);
  int df = 0;
  double chi2 = ChiSquareAgainstDiscreteGaussian(samples, 10.0 / 3, &df);
  EXPECT_GE(df, 10);
  EXPECT_LT(chi2, ChiSquareCritical(df)) << "df=" << df;
  // The same test has power: a 10% larger variance is rejected by far.
  double wrong = ChiSquareAgainstDiscreteGaussian(samples, 1.1 * 10.0 / 3, &df);
  EXPECT_GT(wrong, 3 * ChiSquareCritical(df));
}

TEST(DiscreteGaussianTest, MatchesExactPmfForLargerVariance) {
  auto sampler = DiscreteGaussianSampler::FromVariance(1000.5);
  ASSERT_TRUE(sampler.ok());
  EXPECT_EQ(sampler->sigma2(), 1000.5);  // 1000.5 * 256 is an integer: no rounding
  SeededUniformSource src("dg-gof-1000.5");
  auto samples = Draw(*sampler, src, 100000);
  int df = 0;
  double chi2 = ChiSquareAgainstDiscreteGaussian(samples, 1000.5, &df);
  EXPECT_GT(df, 100);
  EXPECT_LT(chi2, ChiSquareCritical(df)) << "df=" << df;
}

TEST(DiscreteGaussianTest, SmallVarianceIsNotTheRoundedContinuousGaussian) {
  // For sigma^2 = 1/4 the exact pmf has P[0] = 1/(1 + 2e^-2 + 2e^-8 + ...) = 0.8807.
  auto sampler = DiscreteGaussianSampler::Create(1, 4);
  ASSERT_TRUE(sampler.ok());
  SeededUniformSource src("dg-small");
  auto samples = Draw(*sampler, src, 50000);
  double zeros = 0;
  for (auto s : samples) zeros += s == 0;
  double p0 = 1 / (1 + 2 * std::exp(-2.0) + 2 * std::exp(-8.0) + 2 * std::exp(-18.0));
  double sd = std::sqrt(p0 * (1 - p0) / 50000);
  EXPECT_NEAR(zeros / 50000, p0, 5 * sd);
}

TEST(DiscreteGaussianTest, BernoulliExpNegHasExactRate) {
  SeededUniformSource src("bern");
  const int n = 200000;
  for (auto [num, den] : std::vector<std::pair<int, int>>{{1, 3}, {5, 2}, {0, 1}, {7, 7}}) {
    double hits = 0;
    for (int i = 0; i < n; ++i) hits += SampleBernoulliExpNeg(src, num, den);
    double p = std::exp(-double(num) / den);
    EXPECT_NEAR(hits / n, p, 5 * std::sqrt(p * (1 - p) / n) + 1e-12) << num << "/" << den;
  }
}

TEST(DiscreteGaussianTest, DiscreteLaplaceHasExactRatio) {
  // P[0] for DLap(t) is (1 - e^{-1/t}) / (1 + e^{-1/t}).
  SeededUniformSource src("dlap");
  const int n = 100000, t = 3;
  double zeros = 0;
  for (int i = 0; i < n; ++i) zeros += SampleDiscreteLaplace(src, t) == 0;
  double e = std::exp(-1.0 / t), p0 = (1 - e) / (1 + e);
  EXPECT_NEAR(zeros / n, p0, 5 * std::sqrt(p0 * (1 - p0) / n));
}

TEST(DiscreteGaussianTest, SeededSourceIsDeterministic) {
  SeededUniformSource a("seed"), b("seed"), c("other");
  uint64_t va = a.NextUint64();
  EXPECT_EQ(va, b.NextUint64());
  EXPECT_NE(va, c.NextUint64());
}

TEST(DiscreteGaussianTest, CryptoSourceDrawsPlausibleNoise) {
  auto sampler = DiscreteGaussianSampler::FromVariance(25);
  ASSERT_TRUE(sampler.ok());
  CryptoUniformSource src;
  double sum = 0, sum2 = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    double v = static_cast<double>(sampler->Sample(src));
    sum += v;
    sum2 += v * v;
  }
  // The variance of N_Z(0, 25) is within 1e-100 of 25 (CKS 2020 Prop. 19); 6 sd bounds.
  EXPECT_NEAR(sum / n, 0, 6 * 5 / std::sqrt(n));
  EXPECT_NEAR(sum2 / n, 25, 6 * 25 * std::sqrt(2.0 / n));
}

TEST(DiscreteGaussianTest, FromVarianceRoundsUp) {
  auto sampler = DiscreteGaussianSampler::FromVariance(1.0 / 3);
  ASSERT_TRUE(sampler.ok());
  EXPECT_EQ(sampler->sigma2_den(), 256u);
  EXPECT_EQ(sampler->sigma2_num(), 86u);  // ceil(256/3)
  EXPECT_GE(sampler->sigma2(), 1.0 / 3);
}

TEST(DiscreteGaussianTest, RejectsBadVariance) {
  auto st = DiscreteGaussianSampler::FromVariance(-1).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("variance -1"));
  st = DiscreteGaussianSampler::Create(uint64_t{1} << 62, 1 << 10).status();
  EXPECT_THAT(std::string(st.message()), HasSubstr("2^57"));
}

}  // namespace
}  // namespace hansa

// Strategies against hand-computed small cases (reference values: python3 with math.sqrt).
#include "coordinator/strategy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;

ModelLayout OneTensor(int64_t n) { return ModelLayout({{"w", DType::kF32, {n}}}); }

Model Make(const ModelLayout& layout, std::vector<float> values) {
  Model m;
  m.layout = layout;
  m.values = std::move(values);
  return m;
}

std::unique_ptr<Strategy> New(const std::string& spec, const ModelLayout& layout) {
  auto options = ParseStrategySpec(spec);
  EXPECT_TRUE(options.ok()) << options.status();
  auto s = Strategy::Create(*options, layout);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(*s);
}

std::vector<float> Step(Strategy* s, std::vector<float> global, std::vector<float> mean) {
  Model g = Make(s->model_layout(), std::move(global));
  auto next = s->Apply(g, Make(s->UpdateLayout(), std::move(mean)), RoundInfo{1, 2, 2});
  EXPECT_TRUE(next.ok()) << next.status();
  return next.ok() ? next->values : std::vector<float>{};
}

TEST(StrategyTest, FedAvgAddsTheMeanScaledByServerLr) {
  auto s = New("fedavg", OneTensor(2));
  EXPECT_THAT(Step(s.get(), {1, 2}, {0.5f, -1}), ElementsAre(1.5f, 1.0f));
  auto half = New("fedavg:server_lr=0.5", OneTensor(2));
  EXPECT_THAT(Step(half.get(), {1, 2}, {0.5f, -1}), ElementsAre(1.25f, 1.5f));
}

TEST(StrategyTest, FedProxIsFedAvgAtTheServerAndAsksSitesForMu) {
  auto s = New("fedprox:mu=0.1", OneTensor(1));
  EXPECT_FLOAT_EQ(s->recipe().proximal_mu, 0.1f);
  EXPECT_THAT(Step(s.get(), {1}, {0.25f}), ElementsAre(1.25f));
  EXPECT_EQ(New("fedavg", OneTensor(1))->recipe().proximal_mu, 0.0);
}

TEST(StrategyTest, FedAvgMAccumulatesServerMomentum) {
  auto s = New("fedavgm:momentum=0.5", OneTensor(2));
  EXPECT_THAT(Step(s.get(), {1, 2}, {1, 1}), ElementsAre(2.0f, 3.0f));  // v = 1
  EXPECT_THAT(Step(s.get(), {2, 3}, {1, 1}), ElementsAre(3.5f, 4.5f));  // v = 1.5
}

TEST(StrategyTest, AdaptiveVariantsMatchReddiAlgorithmTwo) {
  // d = 0.5, beta1 = 0.9, beta2 = 0.99, tau = 0.1, v0 = tau^2, m = 0.05.
  const char* spec = ":tau=0.1";
  EXPECT_THAT(Step(New(std::string("fedadam") + spec, OneTensor(1)).get(), {0}, {0.5f}),
              ElementsAre(FloatNear(0.2365685f, 1e-6)));
  EXPECT_THAT(Step(New(std::string("fedadagrad") + spec, OneTensor(1)).get(), {0}, {0.5f}),
              ElementsAre(FloatNear(0.0819804f, 1e-6)));
  EXPECT_THAT(Step(New(std::string("fedyogi") + spec, OneTensor(1)).get(), {0}, {0.5f}),
              ElementsAre(FloatNear(0.2360680f, 1e-6)));
}

TEST(StrategyTest, StateSurvivesSaveAndLoad) {
  const std::string path = ::testing::TempDir() + "/fedadam_state.safetensors";
  auto a = New("fedadam:tau=0.1", OneTensor(1));
  Step(a.get(), {0}, {0.5f});
  ASSERT_TRUE(a->SaveState(path).ok());
  auto b = New("fedadam:tau=0.1", OneTensor(1));
  ASSERT_TRUE(b->LoadState(path).ok());
  // Second round from the restored moments: 0.2365685 + 0.4287844.
  EXPECT_THAT(Step(b.get(), {0.2365685f}, {0.5f}), ElementsAre(FloatNear(0.6653529f, 1e-6)));
  auto other = New("fedavgm", OneTensor(1));
  Status st = other->LoadState(path);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("state of strategy 'fedadam'"));
  EXPECT_EQ(New("fedavg", OneTensor(1))->LoadState(path + ".missing").code(),
            absl::StatusCode::kNotFound);
}

TEST(StrategyTest, ScaffoldMovesServerControlVariateByParticipationShare) {
  auto s = New("scaffold", OneTensor(2));
  EXPECT_TRUE(s->recipe().scaffold);
  ASSERT_EQ(s->UpdateLayout().size(), 2u);
  EXPECT_EQ(s->UpdateLayout().tensors()[1].name, "scaffold.w");
  Model g = Make(OneTensor(2), {1, 1});
  Model mean = Make(s->UpdateLayout(), {0.5f, -0.5f, 2, 4});
  auto next = s->Apply(g, mean, RoundInfo{1, 2, 4});  // half the sites took part
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_THAT(next->values, ElementsAre(1.5f, 0.5f));
  auto c = s->ServerBroadcast();
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->layout.tensors()[0].name, "scaffold.w");
  EXPECT_THAT(c->values, ElementsAre(1.0f, 2.0f));
  // Option II at a site: -c + (x - y) / (K lr) = -1 + (2 - 1) / (10 * 0.1) = 0.
  EXPECT_THAT(ScaffoldControlDelta({1}, {2}, {1}, 10, 0.1), ElementsAre(FloatNear(0, 1e-6)));
}

TEST(StrategyTest, FedNovaNormalisesByEffectiveSteps) {
  EXPECT_DOUBLE_EQ(FedNovaCoefficient(1, 0.9), 1.0);
  EXPECT_NEAR(FedNovaCoefficient(2, 0.9), 2.9, 1e-12);  // lr g + lr (1 + 0.9) g
  EXPECT_DOUBLE_EQ(FedNovaCoefficient(7, 0.0), 7.0);
  auto s = New("fednova", OneTensor(2));
  EXPECT_TRUE(s->recipe().fednova);
  EXPECT_EQ(s->UpdateLayout().tensors().back().name, "fednova.a");
  // mean(delta / a) = [0.1, 0.2], tau_eff = 3.
  EXPECT_THAT(Step(s.get(), {1, 1}, {0.1f, 0.2f, static_cast<float>(3 / kFedNovaScale)}),
              ElementsAre(FloatNear(1.3f, 1e-5), FloatNear(1.6f, 1e-5)));
}

TEST(StrategyTest, RobustAggregatesMatchHandComputedValues) {
  std::vector<float> a{1}, b{5}, c{3}, d{10};
  EXPECT_THAT(*CoordinateMedian({&a, &b, &c}), ElementsAre(3.0f));
  EXPECT_THAT(*CoordinateMedian({&a, &b, &c, &d}), ElementsAre(4.0f));  // (3 + 5) / 2
  std::vector<float> e{2};
  EXPECT_THAT(*TrimmedMean({&a, &e, &c, &d}, 0.25), ElementsAre(2.5f));  // mean(2, 3)
  auto none = TrimmedMean({&a, &e, &c, &d}, 0.5);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("nothing is left"));

  std::vector<float> u0{0}, u1{0.1f}, u2{0.2f}, u3{10};
  std::vector<int> chosen;
  EXPECT_THAT(*MultiKrum({&u0, &u1, &u2, &u3}, 0, 1, &chosen), ElementsAre(0.1f));
  EXPECT_THAT(chosen, ElementsAre(1));
  EXPECT_THAT(*MultiKrum({&u0, &u1, &u2, &u3}, 0, 3, &chosen), ElementsAre(FloatNear(0.1f, 1e-7)));
  EXPECT_THAT(chosen, ElementsAre(1, 0, 2));
  auto few = MultiKrum({&u0, &u1, &u2, &u3}, 1, 1);
  EXPECT_THAT(std::string(few.status().message()), HasSubstr("needs more than 4 updates"));
}

TEST(StrategyTest, RobustStrategyStepsFromIndividualUpdates) {
  auto s = New("median", OneTensor(1));
  EXPECT_TRUE(s->needs_individual_updates());
  std::vector<float> a{1}, b{5}, c{100};
  auto next = s->ApplyIndividual(Make(OneTensor(1), {1}), {{&a, 1}, {&b, 1}, {&c, 1}}, {});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_THAT(next->values, ElementsAre(6.0f));
  auto mean = s->Apply(Make(OneTensor(1), {1}), Make(OneTensor(1), {1}), {});
  EXPECT_EQ(mean.status().code(), absl::StatusCode::kFailedPrecondition);
  // A mean-based strategy given individual updates uses their example-weighted mean.
  auto avg = New("fedavg", OneTensor(1));
  auto weighted = avg->ApplyIndividual(Make(OneTensor(1), {0}), {{&a, 3}, {&b, 1}}, {});
  ASSERT_TRUE(weighted.ok());
  EXPECT_THAT(weighted->values, ElementsAre(2.0f));
}

TEST(StrategyTest, RobustAggregatorsAreRefusedWithSecureAggregation) {
  for (const char* name : {"median", "trimmed_mean", "krum", "multikrum"}) {
    StrategyOptions o = *ParseStrategySpec(name);
    Status st = CheckStrategyCompatible(o, /*secure_aggregation=*/true);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(std::string(st.message()), HasSubstr("needs every site's individual update"));
    EXPECT_TRUE(CheckStrategyCompatible(o, false).ok());
  }
  for (const char* name : {"fedavg", "fedadam", "scaffold", "fednova", "fedprox"}) {
    EXPECT_TRUE(CheckStrategyCompatible(*ParseStrategySpec(name), true).ok()) << name;
  }
}

// Values of every magnitude and sign, so that rounding differences would show.
std::vector<float> Wiggle(size_t n, float scale, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t x = seed;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    v[i] = scale * (static_cast<float>(x >> 8) / 16777216.0f - 0.5f) *
           std::ldexp(1.0f, static_cast<int>(i % 9) - 4);
  }
  return v;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// ApplyToMean is Apply bit for bit, state included, over rounds, for every strategy that steps
// from the mean; the next model is the mean's own buffer, not a copy.
TEST(StrategyTest, ApplyToMeanStepsInTheMeansBufferAsApplyDoes) {
  const ModelLayout layout({{"a", DType::kF32, {3, 333}}, {"b", DType::kF32, {1000}}});
  const size_t n = static_cast<size_t>(layout.TotalElements());
  for (const char* spec : {"fedavg:server_lr=0.7", "fedprox", "fedavgm", "fedadam:tau=0.01",
                           "fedyogi", "fedadagrad:server_lr=0.3", "scaffold", "fednova"}) {
    SCOPED_TRACE(spec);
    auto by_copy = New(spec, layout);
    auto in_place = New(spec, layout);
    std::vector<float> global = Wiggle(n, 2.0f, 7);
    for (uint32_t round = 1; round <= 3; ++round) {
      std::vector<float> mean_values = Wiggle(by_copy->UpdateLayout().TotalElements(), 0.1f, round);
      if (std::string(spec) == "fednova") mean_values.back() = 3.5f / kFedNovaScale;
      const RoundInfo info{round, 2, 3};
      auto expected =
          by_copy->Apply(Make(layout, global), Make(by_copy->UpdateLayout(), mean_values), info);
      ASSERT_TRUE(expected.ok()) << expected.status();
      Model mean = Make(in_place->UpdateLayout(), mean_values);
      const float* buffer = mean.values.data();
      auto next = in_place->ApplyToMean(global.data(), std::move(mean), info);
      ASSERT_TRUE(next.ok()) << next.status();
      EXPECT_EQ(next->values.data(), buffer);
      EXPECT_TRUE(next->layout.CheckSameAs(layout).ok());
      ASSERT_TRUE(SameBits(next->values, expected->values)) << "round " << round;
      EXPECT_TRUE(SameBits(in_place->State().values, by_copy->State().values));
      EXPECT_FALSE(SameBits(next->values, global));
      global = std::move(next->values);
    }
  }
}

// A strategy written against Apply alone (as docs/extending.md shows) keeps its own step.
class HalvingStrategy : public Strategy {
 public:
  explicit HalvingStrategy(const ModelLayout& m) : Strategy(StrategyOptions(), m) {}
  StatusOr<Model> Apply(Model global, const Model& mean, const RoundInfo&) override {
    for (size_t i = 0; i < global.values.size(); ++i) global.values[i] = mean.values[i] / 2;
    return global;
  }
};

TEST(StrategyTest, ApplyToMeanCallsApplyWhenTheStepIsNotElementwise) {
  HalvingStrategy s(OneTensor(2));
  const std::vector<float> global{1, 2};
  auto next = s.ApplyToMean(global.data(), Make(OneTensor(2), {4, 6}), {});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_THAT(next->values, ElementsAre(2.0f, 3.0f));
  EXPECT_THAT(global, ElementsAre(1.0f, 2.0f));
}

TEST(StrategyTest, ApplyToMeanRefusesWhatApplyRefuses) {
  const std::vector<float> global{1, 2};
  auto median = New("median", OneTensor(2));
  auto robust = median->ApplyToMean(global.data(), Make(OneTensor(2), {0, 0}), {});
  EXPECT_EQ(robust.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(robust.status().message()), HasSubstr("needs the individual updates"));

  auto scaffold = New("scaffold", OneTensor(2));
  auto wrong = scaffold->ApplyToMean(global.data(), Make(OneTensor(2), {0, 0}), {});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong.status().message()), HasSubstr("scaffold aggregate"));

  auto fednova = New("fednova", OneTensor(2));
  auto no_steps = fednova->ApplyToMean(global.data(), Make(fednova->UpdateLayout(), {1, 1, 0}), {});
  EXPECT_EQ(no_steps.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_steps.status().message()), HasSubstr("tau_eff = 0"));

  const float huge = std::numeric_limits<float>::max();
  const std::vector<float> big{huge, huge};
  auto fedavg = New("fedavg", OneTensor(2));
  auto overflow = fedavg->ApplyToMean(big.data(), Make(OneTensor(2), {0, huge}), {});
  EXPECT_EQ(overflow.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(overflow.status().message()),
              HasSubstr("fedavg step made value 1 of the global model non-finite"));

  // SCAFFOLD's c moves only with a step that is published.
  auto refused =
      scaffold->ApplyToMean(big.data(), Make(scaffold->UpdateLayout(), {huge, 0, 1, 1}), {1, 1, 1});
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("value 0"));
  EXPECT_THAT(scaffold->ServerBroadcast()->values, ElementsAre(0.0f, 0.0f));
}

TEST(StrategyTest, RefusesBadSpecsAndMismatchedAggregates) {
  auto unknown = ParseStrategySpec("fedfoo");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("known: fedavg"));
  auto key = ParseStrategySpec("fedadam:lr=1");
  EXPECT_THAT(std::string(key.status().message()), HasSubstr("unknown parameter 'lr'"));
  StrategyOptions o;
  o.beta1 = 1.5;
  EXPECT_FALSE(Strategy::Create(o, OneTensor(1)).ok());
  auto s = New("scaffold", OneTensor(2));
  auto wrong = s->Apply(Make(OneTensor(2), {0, 0}), Make(OneTensor(2), {0, 0}), {});
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseStrategySpec("fedprox:mu=0.01")->Label(), "fedprox:mu=0.01");
}

}  // namespace
}  // namespace hansa

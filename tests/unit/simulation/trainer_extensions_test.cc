// The Trainer's strategy extensions (FedProx, SCAFFOLD, input noise) on real Fashion-MNIST.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "client/train/trainer.h"
#include "tests/support/vectors.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

class TrainerExtensionsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    StatusOr<Dataset> train = LoadMnistStyle(kFashionMnistDir, Split::kTrain);
    ASSERT_TRUE(train.ok()) << train.status();
    data_ = new Dataset(Head(*train, 256));
  }
  // Trains mlp from InitialModel(mlp, 0) and returns the weights.
  static std::vector<float> TrainWith(const TrainSettings& s, int64_t* steps = nullptr) {
    auto trainer = Trainer::Create(TrainerOptions{"mlp", "cpu", 1});
    EXPECT_TRUE(trainer.ok()) << trainer.status();
    auto result = (*trainer)->Train(*data_, s);
    EXPECT_TRUE(result.ok()) << result.status();
    if (steps && result.ok()) *steps = result->steps;
    return (*trainer)->GetWeights()->values;
  }
  static TrainSettings Plain() {
    TrainSettings s;
    s.epochs = 1;
    s.batch_size = 32;
    s.learning_rate = 0.1;
    s.momentum = 0;
    s.seed = 5;
    return s;
  }
  static Dataset* data_;
};

Dataset* TrainerExtensionsTest::data_ = nullptr;

TEST_F(TrainerExtensionsTest, ProximalTermKeepsWeightsNearTheStart) {
  const std::vector<float> start = InitialModel("mlp", 0)->values;
  TrainSettings prox = Plain();
  prox.proximal_mu = 5.0;
  const double free_move = test_support::L2Distance(TrainWith(Plain()), start);
  const double prox_move = test_support::L2Distance(TrainWith(prox), start);
  // Each step shrinks the offset by (1 - lr mu) = 0.5: the walk stays within about a third.
  EXPECT_LT(prox_move, 0.6 * free_move) << free_move << " vs " << prox_move;
  EXPECT_GT(prox_move, 0.0);
}

TEST_F(TrainerExtensionsTest, ScaffoldCorrectionShiftsEveryStepByLrTimesCorrection) {
  const int64_t n = InitialModel("mlp", 0)->values.size();
  TrainSettings corrected = Plain();
  corrected.learning_rate = 0.01;
  corrected.scaffold_correction = std::make_shared<std::vector<float>>(n, 0.5f);
  TrainSettings plain = Plain();
  plain.learning_rate = 0.01;
  int64_t steps = 0;
  std::vector<float> a = TrainWith(corrected, &steps), b = TrainWith(plain);
  ASSERT_EQ(steps, 8);  // 256 / 32
  double mean_shift = 0;
  for (int64_t i = 0; i < n; ++i) mean_shift += double{a[i]} - b[i];
  mean_shift /= static_cast<double>(n);
  EXPECT_NEAR(mean_shift, -0.01 * 0.5 * 8, 0.004);
}

TEST_F(TrainerExtensionsTest, InputNoiseIsSeededAndChangesTraining) {
  TrainSettings noisy = Plain();
  noisy.input_noise_std = 0.1;
  noisy.noise_seed = 3;
  std::vector<float> a = TrainWith(noisy), b = TrainWith(noisy), plain = TrainWith(Plain());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, plain);
  noisy.noise_seed = 4;
  EXPECT_NE(TrainWith(noisy), a);
}

TEST_F(TrainerExtensionsTest, RefusesBadExtensionSettings) {
  auto trainer = Trainer::Create(TrainerOptions{"mlp", "cpu", 1});
  ASSERT_TRUE(trainer.ok());
  TrainSettings s = Plain();
  s.proximal_mu = -1;
  auto r = (*trainer)->Train(*data_, s);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("proximal_mu = -1"));
  s = Plain();
  s.scaffold_correction = std::make_shared<std::vector<float>>(3, 0.f);
  r = (*trainer)->Train(*data_, s);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("scaffold_correction holds 3 values"));
}

}  // namespace
}  // namespace hansa

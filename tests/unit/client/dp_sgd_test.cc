// DP-SGD in the trainer (RecordDpSettings): the batched per-example gradients against the
// per-example loop and against ordinary SGD, the clipping bound, the noise's calibration and
// the Poisson sample sizes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "client/train/trainer.h"
#include "tests/support/fashion_mnist.h"
#include "tests/support/vectors.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

class DpSgdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    test_support::FashionMnistSample sample = test_support::LoadFashionMnistSample();
    train_ = new Dataset(std::move(sample.train));  // 2,000 examples
    small_ = new Dataset(Head(*train_, 200));
    test_ = new Dataset(std::move(sample.test));
  }

  // Trains `model` from InitialModel(model, 1) and returns the weights after.
  static std::vector<float> TrainFromStart(const std::string& model, const Dataset& data,
                                           const TrainSettings& settings,
                                           TrainResult* result = nullptr) {
    StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(TrainerOptions{model, "cpu", 1});
    EXPECT_TRUE(trainer.ok()) << trainer.status();
    if (!trainer.ok()) return {};
    EXPECT_TRUE((*trainer)->SetWeights(*InitialModel(model, 1)).ok());
    StatusOr<TrainResult> trained = (*trainer)->Train(data, settings);
    EXPECT_TRUE(trained.ok()) << trained.status();
    if (result != nullptr && trained.ok()) *result = *trained;
    return (*trainer)->GetWeights()->values;
  }

  static TrainSettings Plain() {
    TrainSettings s;
    s.learning_rate = 0.05;
    s.momentum = 0.9;
    s.weight_decay = 1e-4;
    return s;
  }

  static Dataset* train_;
  static Dataset* small_;
  static Dataset* test_;
};

Dataset* DpSgdTest::train_ = nullptr;
Dataset* DpSgdTest::small_ = nullptr;
Dataset* DpSgdTest::test_ = nullptr;

using test_support::L2Distance;
using test_support::MaxAbsDifference;

// With every example in every step (q = 1), a clip no gradient reaches and no noise, DP-SGD's
// step is the mean gradient: ordinary SGD on the full batch, momentum and weight decay included.
TEST_F(DpSgdTest, FullBatchWithoutClippingOrNoiseIsOrdinarySgd) {
  for (const std::string model : {"mlp", "simple_cnn", "cnn_fedavg"}) {
    TrainSettings plain = Plain();
    plain.epochs = 3;
    plain.batch_size = static_cast<int>(small_->size());
    TrainSettings dp = Plain();
    dp.dp = RecordDpSettings{1e9, 0, 1.0, 3};
    TrainResult result;
    const std::vector<float> expected = TrainFromStart(model, *small_, plain);
    const std::vector<float> got = TrainFromStart(model, *small_, dp, &result);
    EXPECT_LT(MaxAbsDifference(got, expected), 2e-5) << model;
    EXPECT_GT(L2Distance(got, InitialModel(model, 1)->values), 1e-3) << model;
    EXPECT_EQ(result.steps, 3);
    EXPECT_EQ(result.examples_seen, 3 * small_->size());
  }
}

// The batched per-example gradients (one backward pass) equal one backward pass per example,
// with clipping active and the same Poisson samples.
TEST_F(DpSgdTest, BatchedPerExampleGradientsEqualThePerExampleLoop) {
  for (const std::string model : {"mlp", "simple_cnn", "cnn_fedavg"}) {
    TrainSettings s = Plain();
    s.dp = RecordDpSettings{0.5, 0, 0.3, 2};
    s.dp.randomness = std::make_shared<SeededUniformSource>("dp-sgd sample");
    const std::vector<float> batched = TrainFromStart(model, *small_, s);
    s.dp.randomness = std::make_shared<SeededUniformSource>("dp-sgd sample");
    s.dp.per_example_loop = true;
    const std::vector<float> loop = TrainFromStart(model, *small_, s);
    const std::vector<float> start = InitialModel(model, 1)->values;
    EXPECT_GT(L2Distance(loop, start), 1e-3) << model;
    EXPECT_LT(MaxAbsDifference(batched, loop), 1e-6) << model;
  }
}

// One step with q = 1, learning rate 1 and no momentum moves the weights by the mean of
// clipped gradients: never further than the clip norm.
TEST_F(DpSgdTest, EachExampleGradientIsClippedToTheNorm) {
  for (const bool loop : {false, true}) {
    TrainSettings s;
    s.learning_rate = 1;
    s.momentum = 0;
    const std::vector<float> start = InitialModel("simple_cnn", 1)->values;
    s.dp = RecordDpSettings{1e9, 0, 1.0, 1};
    s.dp.per_example_loop = loop;
    const double unclipped = L2Distance(TrainFromStart("simple_cnn", *small_, s), start);
    s.dp.clip_norm = 0.01;
    const double clipped = L2Distance(TrainFromStart("simple_cnn", *small_, s), start);
    EXPECT_GT(unclipped, 0.1) << "the mean gradient at the start is not small";
    EXPECT_LE(clipped, 0.01 * (1 + 1e-4)) << "per-example loop: " << loop;
    EXPECT_GT(clipped, 0.01 * 0.01) << "clipping scales gradients down, it does not drop them";
  }
}

// A clip so small that the gradients vanish beside the noise: the update is the noise,
// N(0, (z C / (q n))^2) per coordinate times the learning rate, fresh on every call.
TEST_F(DpSgdTest, NoiseHasTheCalibratedStandardDeviation) {
  TrainSettings s;
  s.learning_rate = 1;
  s.momentum = 0;
  s.dp = RecordDpSettings{1e-3, 100, 1.0, 1};
  const std::vector<float> start = InitialModel("simple_cnn", 1)->values;
  const std::vector<float> a = TrainFromStart("simple_cnn", *small_, s);
  const std::vector<float> b = TrainFromStart("simple_cnn", *small_, s);
  const double expected = 100 * 1e-3 / static_cast<double>(small_->size());
  double sum = 0, sum2 = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - start[i];
    sum += d;
    sum2 += d * d;
  }
  const double count = static_cast<double>(a.size());
  const double mean = sum / count;
  const double stddev = std::sqrt(sum2 / count - mean * mean);
  // 44,426 draws: the sample stddev's relative standard error is 1/sqrt(2 * 44,426) = 0.34%.
  EXPECT_NEAR(stddev / expected, 1.0, 0.02);
  EXPECT_NEAR(mean / expected, 0.0, 5 / std::sqrt(count));
  EXPECT_GT(L2Distance(a, b), expected) << "two runs drew the same noise";
}

// Poisson sampling: every example joins each step with probability q, so the summed batch
// sizes of T steps are Binomial(T n, q).
TEST_F(DpSgdTest, PoissonSampleSizesFollowTheRate) {
  TrainSettings s = Plain();
  s.dp = RecordDpSettings{1.0, 1.0, 0.1, 20};
  TrainResult result;
  TrainFromStart("mlp", *train_, s, &result);
  const double n = static_cast<double>(train_->size());
  const double mean = 20 * n * 0.1;
  const double sd = std::sqrt(20 * n * 0.1 * 0.9);
  EXPECT_EQ(result.steps, 20);
  EXPECT_NEAR(static_cast<double>(result.examples_seen), mean, 5 * sd);
}

TEST_F(DpSgdTest, LearnsUnderNoise) {
  TrainSettings s = Plain();
  s.learning_rate = 0.1;
  s.dp = RecordDpSettings{1.0, 1.0, 0.05, 120};
  StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(TrainerOptions{"mlp", "cpu", 1});
  ASSERT_TRUE(trainer.ok());
  ASSERT_TRUE((*trainer)->Train(*train_, s).ok());
  StatusOr<EvalResult> eval = (*trainer)->Evaluate(*test_);
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_GT(eval->accuracy, 0.6);
}

TEST_F(DpSgdTest, RejectsBadSettings) {
  StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(TrainerOptions{"mlp", "cpu", 1});
  ASSERT_TRUE(trainer.ok());
  auto expect = [&](RecordDpSettings dp, const std::string& text) {
    TrainSettings s;
    s.dp = dp;
    Status st = (*trainer)->Train(*small_, s).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(std::string(st.message()), HasSubstr(text));
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  expect({-1, 1, 0.1, 1}, "clip norm = -1");
  expect({nan, 1, 0.1, 1}, "clip norm = nan");
  expect({1, -1, 0.1, 1}, "noise multiplier = -1");
  expect({1, 1, 0, 1}, "sampling rate = 0 must be in (0, 1]");
  expect({1, 1, 1.5, 1}, "sampling rate = 1.5");
  expect({1, 1, nan, 1}, "sampling rate = nan");
  expect({1, 1, 0.1, 0}, "steps = 0");
}

}  // namespace
}  // namespace hansa

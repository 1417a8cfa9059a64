#include "client/train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tests/support/fashion_mnist.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

// 2,000 training and 1,000 test examples of the real Fashion-MNIST, loaded once.
class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    test_support::FashionMnistSample sample = test_support::LoadFashionMnistSample();
    train_ = new Dataset(std::move(sample.train));
    test_ = new Dataset(std::move(sample.test));
  }

  static std::unique_ptr<Trainer> MakeTrainer(const std::string& model) {
    StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(TrainerOptions{model, "cpu", 1});
    EXPECT_TRUE(trainer.ok()) << trainer.status();
    return trainer.ok() ? std::move(*trainer) : nullptr;
  }

  static Dataset* train_;
  static Dataset* test_;
};

Dataset* TrainerTest::train_ = nullptr;
Dataset* TrainerTest::test_ = nullptr;

void ExpectError(const Status& status, absl::StatusCode code, const std::string& text) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(text));
}

TEST_F(TrainerTest, TorchModulesMatchTheirLayouts) {
  for (const std::string& name : BuiltinModels()) {
    std::unique_ptr<Trainer> trainer = MakeTrainer(name);
    ASSERT_NE(trainer, nullptr) << name;
    EXPECT_EQ(trainer->layout(), *BuiltinModelLayout(name));
    EXPECT_EQ(trainer->device(), "cpu");
    EXPECT_EQ(trainer->GetWeights()->values, InitialModel(name, 0)->values) << name;
  }
  EXPECT_EQ(MakeTrainer("cnn_fedavg")->layout().TotalElements(), 1663370);
  EXPECT_EQ(MakeTrainer("simple_cnn")->layout().TotalElements(), 44426);
  EXPECT_EQ(MakeTrainer("mlp")->layout().TotalElements(), 159010);
}

TEST_F(TrainerTest, CreateRejectsBadOptions) {
  ExpectError(Trainer::Create(TrainerOptions{"vgg", "auto"}).status(),
              absl::StatusCode::kInvalidArgument, "unknown model 'vgg'");
  ExpectError(Trainer::Create(TrainerOptions{"mlp", "tpu"}).status(),
              absl::StatusCode::kInvalidArgument, "device 'tpu' is not one of");
  ExpectError(Trainer::Create(TrainerOptions{"mlp", "cuda:x"}).status(),
              absl::StatusCode::kInvalidArgument, "device 'cuda:x'");
  ExpectError(Trainer::Create(TrainerOptions{"mlp", "auto", -1}).status(),
              absl::StatusCode::kInvalidArgument, "threads = -1");
  ExpectError(Trainer::Create(TrainerOptions{"mlp", "cuda:99"}).status(),
              absl::StatusCode::kFailedPrecondition, "cuda:99");
}

TEST_F(TrainerTest, SetWeightsThenGetWeightsRoundTrips) {
  std::unique_ptr<Trainer> trainer = MakeTrainer("simple_cnn");
  StatusOr<Model> initial = InitialModel("simple_cnn", 42);
  ASSERT_TRUE(initial.ok());
  ASSERT_TRUE(trainer->SetWeights(*initial).ok());
  StatusOr<Model> back = trainer->GetWeights();
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->layout, initial->layout);
  EXPECT_EQ(back->values, initial->values);
}

TEST_F(TrainerTest, WeightsMinusWritesTheUpdateOverTheBase) {
  std::unique_ptr<Trainer> trainer = MakeTrainer("simple_cnn");
  ASSERT_TRUE(trainer->SetWeights(*InitialModel("simple_cnn", 42)).ok());
  const std::vector<float> weights = trainer->GetWeights()->values;
  std::vector<float> base = InitialModel("simple_cnn", 7)->values;
  const std::vector<float> original = base;
  const float* where = base.data();
  ASSERT_TRUE(trainer->WeightsMinus(&base).ok());
  EXPECT_EQ(base.data(), where);  // in place: no second buffer
  ASSERT_EQ(base.size(), weights.size());
  for (size_t i = 0; i < base.size(); ++i) {
    ASSERT_EQ(base[i], weights[i] - original[i]) << i;
  }
  std::vector<float> short_base(10);
  ExpectError(trainer->WeightsMinus(&short_base), absl::StatusCode::kInvalidArgument,
              "values, not 10");
}

TEST_F(TrainerTest, SetWeightsRejectsAnotherLayoutNamingTheDifference) {
  std::unique_ptr<Trainer> trainer = MakeTrainer("simple_cnn");
  ExpectError(trainer->SetWeights(*InitialModel("mlp", 1)), absl::StatusCode::kInvalidArgument,
              "model has 4 tensors, expected 10");
  Model model = *InitialModel("simple_cnn", 1);
  std::vector<TensorSpec> tensors = model.layout.tensors();
  tensors[4].shape = {120, 400};
  model.layout = ModelLayout(tensors);
  ExpectError(trainer->SetWeights(model), absl::StatusCode::kInvalidArgument,
              "tensor 4 'fc1.weight': shape [120,400] expected [120,256]");
  tensors[4].shape = {120, 256};
  tensors[4].name = "linear1.weight";
  model.layout = ModelLayout(tensors);
  ExpectError(trainer->SetWeights(model), absl::StatusCode::kInvalidArgument,
              "name 'linear1.weight' expected 'fc1.weight'");
  model = *InitialModel("simple_cnn", 1);
  model.values.pop_back();
  ExpectError(trainer->SetWeights(model), absl::StatusCode::kInvalidArgument,
              "model holds 44425 values");
}

TEST_F(TrainerTest, SetWeightsRejectsNaNAndInfNamingTheTensor) {
  std::unique_ptr<Trainer> trainer = MakeTrainer("simple_cnn");
  Model model = *InitialModel("simple_cnn", 1);
  const std::vector<float> good = model.values;
  model.values[model.layout.Offset(5) + 3] = std::numeric_limits<float>::quiet_NaN();
  ExpectError(trainer->SetWeights(model), absl::StatusCode::kInvalidArgument,
              "tensor 'fc1.bias' element 3 is nan");
  model.values = good;
  model.values.back() = std::numeric_limits<float>::infinity();
  ExpectError(trainer->SetWeights(model), absl::StatusCode::kInvalidArgument,
              "tensor 'fc3.bias' element 9 is inf");
  // The rejected weights were not applied.
  ASSERT_TRUE(trainer->SetWeights(*InitialModel("simple_cnn", 2)).ok());
  ASSERT_FALSE(trainer->SetWeights(model).ok());
  EXPECT_EQ(trainer->GetWeights()->values, InitialModel("simple_cnn", 2)->values);
}

// Trains `model` from InitialModel(model, 1) and returns test accuracy before and after.
void ExpectLearns(Trainer& trainer, const std::string& model, const Dataset& train,
                  const Dataset& test, const TrainSettings& settings, double min_accuracy) {
  ASSERT_TRUE(trainer.SetWeights(*InitialModel(model, 1)).ok());
  StatusOr<EvalResult> before = trainer.Evaluate(test);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->num_examples, test.size());
  EXPECT_LT(before->accuracy, 0.25);
  EXPECT_NEAR(before->loss, std::log(10.0), 0.2);  // near-uniform logits at the start

  StatusOr<TrainResult> trained = trainer.Train(train, settings);
  ASSERT_TRUE(trained.ok()) << trained.status();
  EXPECT_EQ(trained->num_examples, train.size());
  const int64_t batches = (train.size() + settings.batch_size - 1) / settings.batch_size;
  EXPECT_EQ(trained->steps, settings.epochs * batches);
  EXPECT_GT(trained->seconds, 0);
  EXPECT_LT(trained->loss, 1.5);

  StatusOr<EvalResult> after = trainer.Evaluate(test);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_GT(after->accuracy, min_accuracy) << model;
  EXPECT_GT(after->accuracy, before->accuracy + 0.35) << model;
  EXPECT_LT(after->loss, before->loss - 0.8) << model;
  // The confusion matrix a site reports: one count per example, its diagonal the accuracy.
  ASSERT_EQ(after->classes, 10);
  ASSERT_EQ(after->confusion.size(), 100u);
  int64_t total = 0, diagonal = 0;
  for (int t = 0; t < 10; ++t) {
    for (int p = 0; p < 10; ++p) total += after->confusion[t * 10 + p];
    diagonal += after->confusion[t * 10 + t];
  }
  EXPECT_EQ(total, test.size());
  EXPECT_DOUBLE_EQ(static_cast<double>(diagonal) / static_cast<double>(total), after->accuracy);
}

// Measured on this data with these seeds: mlp 0.683 after one epoch; simple_cnn 0.709 after
// three at lr 0.02 (0.69-0.71 at lr 0.01-0.03 with batch 16 or 32 on an Intel Xeon). The CNN
// sits on the usual early plateau for its first ~100 steps, and where it leaves it depends on
// the CPU's kernels: two epochs at lr 0.05 gave 0.682 on an AMD EPYC and 0.592 on a Xeon.
TEST_F(TrainerTest, OneEpochOnTwoThousandExamplesLearns) {
  std::unique_ptr<Trainer> trainer = MakeTrainer("mlp");
  // epochs, batch, lr, momentum, weight decay, seed
  ExpectLearns(*trainer, "mlp", *train_, *test_, TrainSettings{1, 32, 0.05, 0.9, 1e-4, 5}, 0.6);
}

TEST_F(TrainerTest, SimpleCnnLearnsInThreeEpochs) {
  std::unique_ptr<Trainer> trainer = MakeTrainer("simple_cnn");
  ExpectLearns(*trainer, "simple_cnn", *train_, *test_, TrainSettings{3, 16, 0.02, 0.9, 1e-4, 5},
               0.6);
}

TEST_F(TrainerTest, TrainingIsReproducibleFromTheSeed) {
  TrainSettings settings{1,   50, 0.05,
                         0.5, 0,  9};  // epochs, batch, lr, momentum, weight decay, seed
  Dataset small = Head(*train_, 400);
  std::vector<std::vector<float>> results;
  for (uint64_t seed : {9, 9, 10}) {
    std::unique_ptr<Trainer> trainer = MakeTrainer("mlp");
    ASSERT_TRUE(trainer->SetWeights(*InitialModel("mlp", 1)).ok());
    settings.seed = seed;
    ASSERT_TRUE(trainer->Train(small, settings).ok());
    results.push_back(trainer->GetWeights()->values);
  }
  EXPECT_EQ(results[0], results[1]);
  EXPECT_NE(results[0], results[2]);  // another shuffling order
}

TEST_F(TrainerTest, TrainRejectsBadSettingsAndData) {
  std::unique_ptr<Trainer> trainer = MakeTrainer("mlp");
  Dataset small = Head(*train_, 10);
  TrainSettings good{1, 4, 0.1};  // epochs, batch, lr
  auto with = [&](auto change) {
    TrainSettings s = good;
    change(s);
    return trainer->Train(small, s).status();
  };
  ExpectError(with([](TrainSettings& s) { s.epochs = 0; }), absl::StatusCode::kInvalidArgument,
              "epochs = 0");
  ExpectError(with([](TrainSettings& s) { s.batch_size = 0; }), absl::StatusCode::kInvalidArgument,
              "batch_size = 0");
  ExpectError(with([](TrainSettings& s) { s.learning_rate = std::nan(""); }),
              absl::StatusCode::kInvalidArgument, "learning_rate");
  ExpectError(with([](TrainSettings& s) { s.momentum = 1; }), absl::StatusCode::kInvalidArgument,
              "momentum = 1");
  ExpectError(with([](TrainSettings& s) { s.weight_decay = -1; }),
              absl::StatusCode::kInvalidArgument, "weight_decay = -1");

  Dataset bad_label = small;
  bad_label.labels[3] = 10;
  ExpectError(trainer->Train(bad_label, good).status(), absl::StatusCode::kInvalidArgument,
              "example 3 has label 10");
  Dataset wrong_size = small;
  wrong_size.rows = 14;
  wrong_size.cols = 56;
  ExpectError(trainer->Evaluate(wrong_size).status(), absl::StatusCode::kInvalidArgument,
              "images are 14x56");
  ExpectError(trainer->Evaluate(Head(small, 0)).status(), absl::StatusCode::kInvalidArgument,
              "empty");
}

TEST_F(TrainerTest, DivergenceIsAnErrorNotNaNWeights) {
  std::unique_ptr<Trainer> trainer = MakeTrainer("mlp");
  TrainSettings settings{1, 10, 1e30};  // epochs, batch, lr
  ExpectError(trainer->Train(Head(*train_, 200), settings).status(), absl::StatusCode::kInternal,
              "training diverged");
}

}  // namespace
}  // namespace hansa

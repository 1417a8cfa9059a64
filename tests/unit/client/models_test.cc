#include "common/model/models.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ModelsTest, ListsBuiltinModels) {
  EXPECT_THAT(BuiltinModels(), ElementsAre("simple_cnn", "cnn_fedavg", "mlp"));
}

TEST(ModelsTest, ParameterCounts) {
  EXPECT_EQ(BuiltinModelLayout("simple_cnn")->TotalElements(), 44426);
  // McMahan et al. 2017 state 1,663,370 parameters for their MNIST CNN.
  EXPECT_EQ(BuiltinModelLayout("cnn_fedavg")->TotalElements(), 1663370);
  EXPECT_EQ(BuiltinModelLayout("mlp")->TotalElements(), 159010);
}

TEST(ModelsTest, LayoutUsesTorchNamesInParameterOrder) {
  StatusOr<ModelLayout> layout = BuiltinModelLayout("simple_cnn");
  ASSERT_TRUE(layout.ok());
  std::vector<std::string> names;
  for (const TensorSpec& t : layout->tensors()) names.push_back(t.name);
  EXPECT_THAT(names,
              ElementsAre("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight",
                          "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"));
  EXPECT_THAT(layout->tensors()[4].shape, ElementsAre(120, 256));
  EXPECT_EQ(layout->tensors()[0].dtype, DType::kF32);
}

TEST(ModelsTest, UnknownModelListsTheBuiltinOnes) {
  StatusOr<Model> got = InitialModel("resnet50", 1);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(got.status().message()),
      HasSubstr("unknown model 'resnet50'; built-in models are simple_cnn, cnn_fedavg, mlp"));
}

TEST(ModelsTest, InitialModelIsFixedBySeed) {
  StatusOr<Model> a = InitialModel("simple_cnn", 7);
  StatusOr<Model> b = InitialModel("simple_cnn", 7);
  StatusOr<Model> c = InitialModel("simple_cnn", 8);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(a->Validate().ok());
  EXPECT_EQ(a->values, b->values);
  EXPECT_NE(a->values, c->values);
  // Pinned so that a change of the stream is noticed (it changes every experiment's start).
  EXPECT_FLOAT_EQ(a->values[0], -0.044068124f);
  EXPECT_FLOAT_EQ(a->values[1], -0.193284705f);
}

// PyTorch's default: uniform in +-1/sqrt(fan_in) for weights and biases alike.
TEST(ModelsTest, InitialValuesFollowTorchDefaultBounds) {
  StatusOr<Model> model = InitialModel("simple_cnn", 3);
  ASSERT_TRUE(model.ok());
  const std::vector<double> fan_in = {25, 25, 150, 150, 256, 256, 120, 120, 84, 84};
  for (size_t t = 0; t < model->layout.size(); ++t) {
    const double bound = 1 / std::sqrt(fan_in[t]);
    const int64_t count = model->layout.tensors()[t].NumElements();
    double max_abs = 0, sum = 0;
    for (int64_t i = 0; i < count; ++i) {
      const double v = model->values[model->layout.Offset(t) + i];
      max_abs = std::max(max_abs, std::abs(v));
      sum += v;
    }
    EXPECT_LE(max_abs, bound) << model->layout.tensors()[t].name;
    if (count > 1000) {
      EXPECT_GT(max_abs, 0.99 * bound);
      EXPECT_NEAR(sum / count, 0, 0.05 * bound);  // uniform mean 0, sd bound/sqrt(3 count)
    }
  }
}

}  // namespace
}  // namespace hansa

// The model registry: every built-in architecture registers itself (and survives the static
// link), in a fixed order, and unknown names are refused with the list.
#include "common/model/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/model/models.h"

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ModelRegistryTest, ListsEveryBuiltinModelInOrder) {
  EXPECT_THAT(ModelNames(), ElementsAre("simple_cnn", "cnn_fedavg", "mlp"));
  EXPECT_EQ(BuiltinModels(), ModelNames());
}

TEST(ModelRegistryTest, EveryEntryGivesALayoutAndInitialWeights) {
  for (const std::string& name : ModelNames()) {
    const ModelEntry* entry = FindModel(name);
    ASSERT_NE(entry, nullptr) << name;
    EXPECT_EQ(entry->name, name);
    StatusOr<ModelLayout> layout = BuiltinModelLayout(name);
    ASSERT_TRUE(layout.ok()) << layout.status();
    EXPECT_EQ(layout->size(), 2 * entry->layers.size()) << name;  // a weight and a bias each
    EXPECT_EQ(layout->tensors()[0].name, entry->layers[0].name + ".weight");
    StatusOr<Model> initial = InitialModel(name, 1);
    ASSERT_TRUE(initial.ok()) << initial.status();
    EXPECT_TRUE(initial->Validate().ok()) << name;
  }
}

TEST(ModelRegistryTest, UnknownNameIsRefusedWithTheKnownOnes) {
  EXPECT_EQ(FindModel("resnet50"), nullptr);
  StatusOr<ModelLayout> layout = BuiltinModelLayout("resnet50");
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(layout.status().message()),
      HasSubstr("unknown model 'resnet50'; built-in models are simple_cnn, cnn_fedavg, mlp"));
}

}  // namespace
}  // namespace hansa

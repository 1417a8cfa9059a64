#include "common/model/models.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/seeded_random.h"

namespace hansa {
namespace {

// One layer with a weight and a bias; the bias has shape {weight_shape[0]}.
struct LayerSpec {
  const char* name;
  std::vector<int64_t> weight_shape;
};

struct ArchitectureSpec {
  const char* name;
  std::vector<LayerSpec> layers;
};

const std::vector<ArchitectureSpec>& Architectures() {
  static const auto* specs = new std::vector<ArchitectureSpec>{
      {"simple_cnn",
       {{"conv1", {6, 1, 5, 5}},
        {"conv2", {16, 6, 5, 5}},
        {"fc1", {120, 256}},
        {"fc2", {84, 120}},
        {"fc3", {10, 84}}}},
      {"cnn_fedavg",
       {{"conv1", {32, 1, 5, 5}},
        {"conv2", {64, 32, 5, 5}},
        {"fc1", {512, 3136}},
        {"fc2", {10, 512}}}},
      {"mlp", {{"fc1", {200, 784}}, {"fc2", {10, 200}}}},
  };
  return *specs;
}

StatusOr<const ArchitectureSpec*> FindArchitecture(const std::string& model) {
  for (const ArchitectureSpec& spec : Architectures()) {
    if (model == spec.name) return &spec;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown model '", model, "'; built-in models are ", absl::StrJoin(BuiltinModels(), ", ")));
}

int64_t FanIn(const std::vector<int64_t>& weight_shape) {
  int64_t fan_in = 1;
  for (size_t i = 1; i < weight_shape.size(); ++i) fan_in *= weight_shape[i];
  return fan_in;
}

}  // namespace

std::vector<std::string> BuiltinModels() {
  std::vector<std::string> names;
  for (const ArchitectureSpec& spec : Architectures()) names.push_back(spec.name);
  return names;
}

StatusOr<ModelLayout> BuiltinModelLayout(const std::string& model) {
  ASSIGN_OR_RETURN(const ArchitectureSpec* spec, FindArchitecture(model));
  std::vector<TensorSpec> tensors;
  for (const LayerSpec& layer : spec->layers) {
    tensors.push_back({absl::StrCat(layer.name, ".weight"), DType::kF32, layer.weight_shape});
    tensors.push_back({absl::StrCat(layer.name, ".bias"), DType::kF32, {layer.weight_shape[0]}});
  }
  return ModelLayout(std::move(tensors));
}

StatusOr<Model> InitialModel(const std::string& model, uint64_t seed) {
  ASSIGN_OR_RETURN(const ArchitectureSpec* spec, FindArchitecture(model));
  ASSIGN_OR_RETURN(ModelLayout layout, BuiltinModelLayout(model));
  Model out;
  out.values.reserve(layout.TotalElements());
  SeededRandom random(seed);
  for (const LayerSpec& layer : spec->layers) {
    const float bound =
        static_cast<float>(1.0 / std::sqrt(static_cast<double>(FanIn(layer.weight_shape))));
    int64_t count = 1;
    for (int64_t d : layer.weight_shape) count *= d;
    count += layer.weight_shape[0];  // the bias follows its weight in the layout
    for (int64_t i = 0; i < count; ++i) {
      out.values.push_back((2.0f * random.UnitFloat() - 1.0f) * bound);
    }
  }
  out.layout = std::move(layout);
  return out;
}

}  // namespace hansa

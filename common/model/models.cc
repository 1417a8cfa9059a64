#include "common/model/models.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/model/registry.h"
#include "common/random/seeded_random.h"

namespace hansa {
namespace {

StatusOr<const ModelEntry*> FindArchitecture(const std::string& model) {
  const ModelEntry* entry = FindModel(model);
  if (entry != nullptr) return entry;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown model '", model, "'; built-in models are ", absl::StrJoin(BuiltinModels(), ", ")));
}

int64_t FanIn(const std::vector<int64_t>& weight_shape) {
  int64_t fan_in = 1;
  for (size_t i = 1; i < weight_shape.size(); ++i) fan_in *= weight_shape[i];
  return fan_in;
}

}  // namespace

std::vector<std::string> BuiltinModels() { return ModelNames(); }

StatusOr<ModelLayout> BuiltinModelLayout(const std::string& model) {
  ASSIGN_OR_RETURN(const ModelEntry* spec, FindArchitecture(model));
  std::vector<TensorSpec> tensors;
  for (const ModelLayerSpec& layer : spec->layers) {
    tensors.push_back({absl::StrCat(layer.name, ".weight"), DType::kF32, layer.weight_shape});
    tensors.push_back({absl::StrCat(layer.name, ".bias"), DType::kF32, {layer.weight_shape[0]}});
  }
  return ModelLayout(std::move(tensors));
}

StatusOr<Model> InitialModel(const std::string& model, uint64_t seed) {
  ASSIGN_OR_RETURN(const ModelEntry* spec, FindArchitecture(model));
  ASSIGN_OR_RETURN(ModelLayout layout, BuiltinModelLayout(model));
  Model out;
  out.values.reserve(layout.TotalElements());
  SeededRandom random(seed);
  for (const ModelLayerSpec& layer : spec->layers) {
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

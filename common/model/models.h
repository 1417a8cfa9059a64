// The built-in model architectures, described without LibTorch: their tensor layouts and
// deterministic initial weights. The coordinator and tools can create and check a global
// model from these without linking LibTorch; the torch modules that train them live in
// client/train/models_torch.cc and are checked against these layouts when a Trainer is created.
// Pure functions of the registry; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status/status.h"
#include "common/tensor/tensor.h"

namespace hansa {

// The registered architectures (common/model/registry.h), in listing order: "simple_cnn",
// "cnn_fedavg", "mlp", each described in its own file here. All take 28x28x1 images with
// pixels scaled to [0, 1] and output 10 class logits.
std::vector<std::string> BuiltinModels();

// Parameter names (as torch names them, e.g. "conv1.weight"), F32 shapes, in the order of
// torch's named_parameters(). InvalidArgument for an unknown name, listing the known ones.
StatusOr<ModelLayout> BuiltinModelLayout(const std::string& model);

// Number of image rows/cols and classes the built-in models use.
inline constexpr int64_t kBuiltinImageSize = 28;
inline constexpr int64_t kBuiltinNumClasses = 10;

// Initial weights fixed by `seed`, identical on every platform and LibTorch version. The
// distribution is PyTorch's default for Conv2d and Linear: weights and biases uniform in
// [-1/sqrt(fan_in), 1/sqrt(fan_in)] (kaiming_uniform with a = sqrt(5)); the random stream is
// Hansa's own (SplitMix64), not torch's global generator, so it needs no global state.
StatusOr<Model> InitialModel(const std::string& model, uint64_t seed);

}  // namespace hansa

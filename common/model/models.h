// The built-in model architectures, described without LibTorch: their tensor layouts and
// deterministic initial weights. The coordinator and tools can create and check a global
// model from these without linking LibTorch; the torch modules that train them live in
// client/train/models_torch.cc and are checked against these layouts when a Trainer is created.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status/status.h"
#include "common/tensor/tensor.h"

namespace hansa {

// "simple_cnn", "cnn_fedavg", "mlp". All take 28x28x1 images with pixels scaled to [0, 1]
// and output 10 class logits.
//   simple_cnn  NIID-Bench CNN: conv 1->6 5x5, ReLU, maxpool 2, conv 6->16 5x5, ReLU,
//               maxpool 2, fc 256->120, ReLU, fc 120->84, ReLU, fc 84->10 (44,426 parameters)
//   cnn_fedavg  McMahan et al. 2017 CNN: conv 1->32 5x5 same, ReLU, maxpool 2, conv 32->64 5x5
//               same, ReLU, maxpool 2, fc 3136->512, ReLU, fc 512->10 (1,663,370 parameters)
//   mlp         784->200, ReLU, 200->10 (159,010 parameters)
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

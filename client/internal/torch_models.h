// LibTorch modules of the built-in models. Internal to client/: included only by the .cc
// files that are allowed to include torch (trainer.cc, models_torch.cc).
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <memory>
#include <string>

#include "common/status/status.h"

namespace hansa::internal {

// A classifier over N x 1 x 28 x 28 float images in [0, 1], returning N x 10 logits.
class TorchNet : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& images) = 0;
};

// A new module for a built-in model, with torch's default initialisation (the caller sets the
// weights it wants). InvalidArgument for an unknown name.
StatusOr<std::shared_ptr<TorchNet>> CreateTorchNet(const std::string& model);

}  // namespace hansa::internal

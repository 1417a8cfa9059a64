// LibTorch modules of the built-in models. Internal to client/train/: included only by the .cc
// files that are allowed to include torch (trainer.cc, dp_sgd.cc, models_torch.cc).
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status/status.h"

namespace hansa::internal {

// One parameterised layer as a forward pass met it, for per-example gradients (DP-SGD): from
// the layer's input and the gradient of the summed loss with respect to its output, each
// example's gradient of the layer's weight and bias follows exactly (dp_sgd.cc).
struct LayerTrace {
  enum class Kind { kLinear, kConv2d };
  Kind kind = Kind::kLinear;
  torch::Tensor input;   // B x in (linear) or B x Cin x H x W (conv), detached
  torch::Tensor output;  // B x out or B x Cout x H' x W', still in the autograd graph
  torch::Tensor weight;  // the module's parameters (bias undefined when it has none)
  torch::Tensor bias;
  int64_t kernel = 1, padding = 0, stride = 1;  // square convolutions, dilation 1
};

// A classifier over N x 1 x 28 x 28 float images in [0, 1], returning N x 10 logits.
class TorchNet : public torch::nn::Module {
 public:
  torch::Tensor forward(const torch::Tensor& images) { return Forward(images, nullptr); }
  // The same forward pass; when `trace` is not null, appends every linear and convolution
  // layer it runs. A model whose traces do not cover all its parameters (a layer kind not
  // traced here) is trained under DP-SGD by the slower per-example loop instead.
  virtual torch::Tensor Forward(const torch::Tensor& images, std::vector<LayerTrace>* trace) = 0;
};

// Registers the module that trains the architecture registered under `name` in
// common/model/ (its parameters must be named and ordered as that layout; Trainer::Create
// checks). Declare one per module at namespace scope in models_torch.cc, which the trainer
// always links. A second module under one name is a bug and aborts.
class TorchNetRegistrar {
 public:
  TorchNetRegistrar(const char* name, std::function<std::shared_ptr<TorchNet>()> create);
};

// A new module for a built-in model, with torch's default initialisation (the caller sets the
// weights it wants). InvalidArgument for an unknown name; Internal for an architecture that has
// a layout but no module.
StatusOr<std::shared_ptr<TorchNet>> CreateTorchNet(const std::string& model);

}  // namespace hansa::internal

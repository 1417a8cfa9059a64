// LibTorch modules of the built-in models. Internal to client/train/: included only by the .cc
// files that are allowed to include torch (trainer.cc, dp_sgd.cc, models_torch.cc).
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/model/task.h"
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

// A model LibTorch trains: a built-in classifier over N x 1 x 28 x 28 float images in [0, 1]
// returning N x 10 logits, or a study's TorchScript module (any input, any output its task's
// loss takes).
class TorchNet : public torch::nn::Module {
 public:
  using Named = std::vector<std::pair<std::string, torch::Tensor>>;

  torch::Tensor forward(const torch::Tensor& images) { return Forward(images, nullptr); }
  // The same forward pass; when `trace` is not null, appends every linear and convolution
  // layer it runs. A model whose traces do not cover all its parameters (a layer kind not
  // traced here) is trained under DP-SGD by the slower per-example loop instead.
  virtual torch::Tensor Forward(const torch::Tensor& images, std::vector<LayerTrace>* trace) = 0;
  // The trained parameters, named and ordered as the model's layout.
  virtual Named Weights() {
    Named out;
    for (const auto& item : named_parameters()) out.emplace_back(item.key(), item.value());
    return out;
  }
  // The floating-point buffers (BatchNorm's running statistics) that are averaged with the
  // weights and follow them in the layout; none for the built-in models.
  virtual Named AveragedBuffers() { return {}; }
};

// The task's loss of `output` against `target` (int64 class ids for cross-entropy, float
// otherwise), summed over the examples. A binary or regression model's output is N or N x 1.
torch::Tensor SummedLoss(Loss loss, const torch::Tensor& output, const torch::Tensor& target);

// A study's TorchScript model from the bytes of its file (already checked against its hash),
// on the CPU, with its own weights. `buffers` decides whether its floating-point buffers are
// averaged. InvalidArgument, naming `name`, when LibTorch cannot load it or it has no
// floating-point parameters.
StatusOr<std::shared_ptr<TorchNet>> LoadScriptNet(const std::string& bytes, const std::string& name,
                                                  Buffers buffers);

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

// The built-in models as LibTorch modules, each registered under its architecture's name
// (TorchNetRegistrar). Parameter names and order must equal the architecture's layout
// (common/model/<name>.cc); Trainer::Create checks that they do.
#include <torch/nn/functional.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/train/internal/torch_models.h"
#include "common/model/models.h"
#include "common/status/check.h"

namespace hansa::internal {
namespace {

namespace F = torch::nn::functional;

// Function-local, so it exists before the first registrar runs.
std::map<std::string, std::function<std::shared_ptr<TorchNet>()>>& Factories() {
  static auto* factories = new std::map<std::string, std::function<std::shared_ptr<TorchNet>()>>;
  return *factories;
}

template <typename Net>
std::function<std::shared_ptr<TorchNet>()> Make() {
  return [] { return std::shared_ptr<TorchNet>(std::make_shared<Net>()); };
}

torch::Tensor ReluPool(const torch::Tensor& x) {
  return F::max_pool2d(torch::relu(x), F::MaxPool2dFuncOptions(2));
}

// Appends one layer's pass to `trace`.
void Record(std::vector<LayerTrace>* trace, LayerTrace::Kind kind, const torch::Tensor& x,
            const torch::Tensor& y, const torch::Tensor& weight, const torch::Tensor& bias,
            int64_t kernel = 1, int64_t padding = 0, int64_t stride = 1) {
  trace->push_back({kind, x.detach(), y, weight, bias, kernel, padding, stride});
}

// Runs a layer, recording it into `trace` when asked.
torch::Tensor Apply(torch::nn::Linear& layer, const torch::Tensor& x,
                    std::vector<LayerTrace>* trace) {
  torch::Tensor y = layer->forward(x);
  if (trace != nullptr) {
    Record(trace, LayerTrace::Kind::kLinear, x, y, layer->weight, layer->bias);
  }
  return y;
}

torch::Tensor Apply(torch::nn::Conv2d& layer, const torch::Tensor& x,
                    std::vector<LayerTrace>* trace) {
  torch::Tensor y = layer->forward(x);
  const auto& o = layer->options;
  // Padding given as "same"/"valid" is not traced: such a model falls back to the loop.
  const auto* padding = c10::get_if<torch::ExpandingArray<2>>(&o.padding());
  if (trace != nullptr && padding != nullptr) {
    Record(trace, LayerTrace::Kind::kConv2d, x, y, layer->weight, layer->bias,
           (*o.kernel_size())[0], (**padding)[0], (*o.stride())[0]);
  }
  return y;
}

// NIID-Bench's SimpleCNN for 28x28x1 inputs.
class SimpleCnn final : public TorchNet {
 public:
  SimpleCnn()
      : conv1_(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 6, 5)))),
        conv2_(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(6, 16, 5)))),
        fc1_(register_module("fc1", torch::nn::Linear(256, 120))),
        fc2_(register_module("fc2", torch::nn::Linear(120, 84))),
        fc3_(register_module("fc3", torch::nn::Linear(84, 10))) {}

  torch::Tensor Forward(const torch::Tensor& images, std::vector<LayerTrace>* trace) override {
    torch::Tensor x = ReluPool(Apply(conv1_, images, trace));
    x = ReluPool(Apply(conv2_, x, trace));
    x = x.flatten(1);
    x = torch::relu(Apply(fc1_, x, trace));
    x = torch::relu(Apply(fc2_, x, trace));
    return Apply(fc3_, x, trace);
  }

 private:
  torch::nn::Conv2d conv1_, conv2_;
  torch::nn::Linear fc1_, fc2_, fc3_;
};

const TorchNetRegistrar kSimpleCnn("simple_cnn", Make<SimpleCnn>());

// The CNN of McMahan et al. 2017 ("Communication-efficient learning ..."), 1,663,370 parameters.
class CnnFedAvg final : public TorchNet {
 public:
  CnnFedAvg()
      : conv1_(register_module("conv1",
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 5).padding(2)))),
        conv2_(register_module("conv2",
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 5).padding(2)))),
        fc1_(register_module("fc1", torch::nn::Linear(3136, 512))),
        fc2_(register_module("fc2", torch::nn::Linear(512, 10))) {}

  torch::Tensor Forward(const torch::Tensor& images, std::vector<LayerTrace>* trace) override {
    torch::Tensor x = ReluPool(Apply(conv1_, images, trace));
    x = ReluPool(Apply(conv2_, x, trace));
    x = torch::relu(Apply(fc1_, x.flatten(1), trace));
    return Apply(fc2_, x, trace);
  }

 private:
  torch::nn::Conv2d conv1_, conv2_;
  torch::nn::Linear fc1_, fc2_;
};

const TorchNetRegistrar kCnnFedAvg("cnn_fedavg", Make<CnnFedAvg>());

class Mlp final : public TorchNet {
 public:
  Mlp()
      : fc1_(register_module("fc1", torch::nn::Linear(784, 200))),
        fc2_(register_module("fc2", torch::nn::Linear(200, 10))) {}

  torch::Tensor Forward(const torch::Tensor& images, std::vector<LayerTrace>* trace) override {
    return Apply(fc2_, torch::relu(Apply(fc1_, images.flatten(1), trace)), trace);
  }

 private:
  torch::nn::Linear fc1_, fc2_;
};

const TorchNetRegistrar kMlp("mlp", Make<Mlp>());

}  // namespace

TorchNetRegistrar::TorchNetRegistrar(const char* name,
                                     std::function<std::shared_ptr<TorchNet>()> create) {
  HANSA_CHECK(create != nullptr);
  HANSA_CHECK(Factories().emplace(name, std::move(create)).second);
}

StatusOr<std::shared_ptr<TorchNet>> CreateTorchNet(const std::string& model) {
  auto it = Factories().find(model);
  if (it != Factories().end()) return it->second();
  Status known = BuiltinModelLayout(model).status();
  if (!known.ok()) return known;  // unknown name: the message lists the built-in models
  return absl::InternalError(absl::StrCat("model '", model, "' has no LibTorch module"));
}

torch::Tensor SummedLoss(Loss loss, const torch::Tensor& output, const torch::Tensor& target) {
  switch (loss) {
    case Loss::kCrossEntropy:
      return F::cross_entropy(output, target, F::CrossEntropyFuncOptions().reduction(torch::kSum));
    case Loss::kBceWithLogits:
      return F::binary_cross_entropy_with_logits(
          output.reshape({target.size(0)}), target,
          F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum));
    case Loss::kMse:
      return F::mse_loss(output.reshape({target.size(0)}), target,
                         F::MSELossFuncOptions().reduction(torch::kSum));
  }
  return {};
}

}  // namespace hansa::internal

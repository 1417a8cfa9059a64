#include "client/train/torchscript.h"

#include "client/train/internal/torch_models.h"

#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"

namespace hansa {
namespace {

std::string DtypeName(c10::ScalarType t) {
  switch (t) {
    case c10::ScalarType::Float:
      return "float32";
    case c10::ScalarType::Double:
      return "float64";
    case c10::ScalarType::Half:
      return "float16";
    case c10::ScalarType::BFloat16:
      return "bfloat16";
    case c10::ScalarType::Long:
      return "int64";
    case c10::ScalarType::Int:
      return "int32";
    case c10::ScalarType::Bool:
      return "bool";
    default:
      return c10::toString(t);
  }
}

TorchScriptTensor Describe(const std::string& name, const at::Tensor& t, bool parameter) {
  TorchScriptTensor d;
  d.name = name;
  d.shape = t.sizes().vec();
  d.dtype = DtypeName(t.scalar_type());
  d.parameter = parameter;
  return d;
}

// The module in `bytes` on the CPU; InvalidArgument naming `name` when LibTorch cannot load it.
StatusOr<torch::jit::Module> LoadModule(const std::string& bytes, const std::string& name) {
  try {
    std::istringstream in(bytes);
    return torch::jit::load(in, torch::kCPU);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " is not a TorchScript model LibTorch can load: ", e.what_without_backtrace()));
  }
}

// A TorchScript module as the trainer drives it. Its parameters and buffers are the module's
// own tensors (moved in place by to()), so the optimizer steps the module.
class ScriptNet final : public internal::TorchNet {
 public:
  ScriptNet(torch::jit::Module module, Buffers buffers)
      : module_(std::move(module)), buffers_(buffers) {}

  torch::Tensor Forward(const torch::Tensor& x, std::vector<internal::LayerTrace>*) override {
    return module_.forward({x}).toTensor();
  }
  Named Weights() override {
    Named out;
    for (const auto& p : module_.named_parameters(/*recurse=*/true)) {
      if (p.value.is_floating_point()) out.emplace_back(p.name, p.value);
    }
    return out;
  }
  Named AveragedBuffers() override {
    Named out;
    if (buffers_ == Buffers::kLocal) return out;
    for (const auto& b : module_.named_buffers(/*recurse=*/true)) {
      // float32 buffers only: the others (num_batches_tracked) stay the site's own.
      if (b.value.scalar_type() == torch::kFloat32) out.emplace_back(b.name, b.value);
    }
    return out;
  }
  using internal::TorchNet::to;
  void train(bool on) override {
    module_.train(on);
    internal::TorchNet::train(on);
  }
  void to(torch::Device device, bool non_blocking) override {
    module_.to(device, non_blocking);
    // On the CPU the optimizing executor's autodiff subgraphs cost about a tenth of the
    // training speed of the same layers run by plain autograd (bench/trainer_bench's
    // BM_TrainMlpPair); on a GPU its fusion may pay. The setting is the process's: a site
    // process trains on one device.
    torch::jit::setGraphExecutorOptimize(device.is_cuda());
  }

 private:
  torch::jit::Module module_;
  Buffers buffers_;
};

}  // namespace

namespace internal {

StatusOr<std::shared_ptr<TorchNet>> LoadScriptNet(const std::string& bytes, const std::string& name,
                                                  Buffers buffers) {
  ASSIGN_OR_RETURN(torch::jit::Module module, LoadModule(bytes, name));
  int64_t trained = 0;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    if (!p.value.is_floating_point()) continue;
    // float32 throughout: updates, masking and the safetensors models are float32.
    if (p.value.scalar_type() != torch::kFloat32) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": parameter '", p.name, "' is ",
                                                     DtypeName(p.value.scalar_type()),
                                                     "; Hansa trains float32 models"));
    }
    p.value.requires_grad_(true);
    ++trained;
  }
  if (trained == 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, " has no parameters to train"));
  }
  return std::shared_ptr<TorchNet>(std::make_shared<ScriptNet>(std::move(module), buffers));
}

}  // namespace internal

StatusOr<TorchScriptInfo> InspectTorchScriptBytes(const std::string& bytes,
                                                  const std::string& name) {
  TorchScriptInfo info;
  info.sha256 = ToHex(Sha256(bytes));
  info.file_bytes = bytes.size();
  ASSIGN_OR_RETURN(torch::jit::Module module, LoadModule(bytes, name));
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    info.tensors.push_back(Describe(p.name, p.value, true));
    info.parameter_count += p.value.numel();
  }
  for (const auto& b : module.named_buffers(/*recurse=*/true)) {
    info.tensors.push_back(Describe(b.name, b.value, false));
  }
  info.update_bytes = info.parameter_count * static_cast<int64_t>(sizeof(float));
  return info;
}

StatusOr<TorchScriptInfo> InspectTorchScript(const std::string& path, uint64_t max_bytes) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path, max_bytes));
  return InspectTorchScriptBytes(bytes, path);
}

Status SaveTorchScriptMlp(const std::string& path, int64_t inputs, int64_t hidden, int64_t outputs,
                          uint64_t seed, bool batch_norm) {
  try {
    torch::manual_seed(seed);
    // Modules built here lack the `training` flag that scripted ones have (train() sets it).
    auto module = [](const std::string& name) {
      torch::jit::Module m(name);
      m.register_attribute("training", c10::BoolType::get(), true);
      return m;
    };
    auto layer = [&](int64_t in, int64_t out, const std::string& name) {
      torch::jit::Module m = module(name);
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));
      m.register_parameter("weight", torch::empty({out, in}).uniform_(-bound, bound), false);
      m.register_parameter("bias", torch::empty({out}).uniform_(-bound, bound), false);
      m.define(R"(
def forward(self, x):
    return torch.addmm(self.bias, x, self.weight.t())
)");
      return m;
    };
    torch::jit::Module mlp = module("TabularMlp");
    mlp.register_module("fc1", layer(inputs, hidden, "Linear1"));
    if (batch_norm) {
      torch::jit::Module bn = module("BatchNorm");
      bn.register_parameter("weight", torch::ones({hidden}), false);
      bn.register_parameter("bias", torch::zeros({hidden}), false);
      bn.register_buffer("running_mean", torch::zeros({hidden}));
      bn.register_buffer("running_var", torch::ones({hidden}));
      bn.define(R"(
def forward(self, x):
    return torch.batch_norm(x, self.weight, self.bias, self.running_mean, self.running_var,
                            self.training, 0.1, 1e-5, False)
)");
      mlp.register_module("bn", bn);
    }
    mlp.register_module("fc2", layer(hidden, outputs, "Linear2"));
    mlp.define(batch_norm ? R"(
def forward(self, x):
    return self.fc2.forward(torch.relu(self.bn.forward(self.fc1.forward(x.flatten(1)))))
)"
                          : R"(
def forward(self, x):
    return self.fc2.forward(torch.relu(self.fc1.forward(x.flatten(1))))
)");
    mlp.save(path);
  } catch (const std::exception& e) {  // c10::Error, or the TorchScript compiler's report
    return absl::InternalError(absl::StrCat("building a TorchScript MLP: ", e.what()));
  }
  if (!std::filesystem::exists(path)) {
    return absl::InternalError(absl::StrCat("TorchScript MLP not written to ", path));
  }
  return absl::OkStatus();
}

}  // namespace hansa

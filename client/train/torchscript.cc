#include "client/train/torchscript.h"

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

}  // namespace

StatusOr<TorchScriptInfo> InspectTorchScript(const std::string& path, uint64_t max_bytes) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path, max_bytes));
  TorchScriptInfo info;
  info.sha256 = ToHex(Sha256(bytes));
  info.file_bytes = bytes.size();
  torch::jit::Module module;
  try {
    std::istringstream in(bytes);
    module = torch::jit::load(in);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is not a TorchScript model LibTorch can load: ", e.what_without_backtrace()));
  }
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

Status SaveTorchScriptMlp(const std::string& path, int64_t inputs, int64_t hidden, int64_t outputs,
                          uint64_t seed) {
  try {
    torch::manual_seed(seed);
    auto layer = [](int64_t in, int64_t out, const std::string& name) {
      torch::jit::Module m(name);
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));
      m.register_parameter("weight", torch::empty({out, in}).uniform_(-bound, bound), false);
      m.register_parameter("bias", torch::empty({out}).uniform_(-bound, bound), false);
      m.define(R"(
def forward(self, x):
    return torch.addmm(self.bias, x, self.weight.t())
)");
      return m;
    };
    torch::jit::Module mlp("TabularMlp");
    mlp.register_module("fc1", layer(inputs, hidden, "Linear1"));
    mlp.register_module("fc2", layer(hidden, outputs, "Linear2"));
    mlp.define(R"(
def forward(self, x):
    return self.fc2.forward(torch.relu(self.fc1.forward(x)))
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

// A study's own model as TorchScript (issue 15): a file saved by `torch.jit.script(model).save`
// or built in C++, pinned by the SHA-256 of its bytes. This part reads one and says what it
// holds, as `hansa model inspect` prints it for a data-protection officer to approve by hash.
// Loading TorchScript runs code from the file inside the process: only a file whose hash the
// site allows may be loaded for training (docs/operations.md).
//
// Torch-free header. Thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status/status.h"

namespace hansa {

struct TorchScriptTensor {
  std::string name;  // as named_parameters() / named_buffers() name it, e.g. "fc1.weight"
  std::vector<int64_t> shape;
  std::string dtype;      // "float32", "int64", ...
  bool parameter = true;  // false: a buffer (BatchNorm's running statistics, ...)
};

struct TorchScriptInfo {
  // Of the file's bytes: the model's identity in plans and policies. The bytes include names
  // TorchScript derives from the file name and the process's earlier modules, so the same
  // weights saved twice may differ: the hash pins the file the study ships.
  std::string sha256;
  uint64_t file_bytes = 0;
  std::vector<TorchScriptTensor> tensors;  // parameters, then buffers
  int64_t parameter_count = 0;             // values in the parameters
  int64_t update_bytes = 0;                // one float32 update of every parameter
};

// Reads a TorchScript file (at most `max_bytes`). NotFound when it is absent; InvalidArgument,
// with LibTorch's reason, when it is no TorchScript archive.
StatusOr<TorchScriptInfo> InspectTorchScript(const std::string& path,
                                             uint64_t max_bytes = uint64_t{1} << 32);
// The same for a file's bytes already read (and hashed by the caller); `name` starts errors.
StatusOr<TorchScriptInfo> InspectTorchScriptBytes(const std::string& bytes,
                                                  const std::string& name);

// Writes a small TorchScript MLP (inputs -> hidden -> outputs, ReLU; each example flattened
// first, so that 1 x 28 x 28 images fit 784 inputs; parameters fc1.weight,
// fc1.bias, fc2.weight, fc2.bias, initialised from `seed`) built in C++ with torch::jit, as a
// study could write in Python: for tests and the examples. With `batch_norm`, a batch norm
// follows fc1 (parameters bn.weight and bn.bias after fc1's, float32 buffers bn.running_mean
// and bn.running_var).
Status SaveTorchScriptMlp(const std::string& path, int64_t inputs, int64_t hidden, int64_t outputs,
                          uint64_t seed, bool batch_norm = false);

}  // namespace hansa

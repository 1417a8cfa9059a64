// The built-in model architectures known by name, torch-free: each architecture's file in
// common/model/ registers its layers with a ModelRegistrar at static initialisation, and
// BuiltinModels(), BuiltinModelLayout() and InitialModel() (models.h) read the registry. The
// LibTorch module that trains an architecture registers itself under the same name in
// client/train/models_torch.cc. docs/extending.md walks through adding one.
//
// Threads: registration happens during static initialisation (one thread); afterwards the
// registry is only read, from any thread. hansa_model is linked whole (WHOLE_ARCHIVE), so no
// registering object file is dropped by the linker.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hansa {

// One layer with a weight and a bias; the bias has shape {weight_shape[0]}, and the weight's
// fan-in is the product of weight_shape[1..] (as torch's Linear and Conv2d count it).
struct ModelLayerSpec {
  std::string name;  // the torch module's name: its tensors are "<name>.weight", "<name>.bias"
  std::vector<int64_t> weight_shape;
};

struct ModelEntry {
  std::string name;  // as in a config's model.name
  // Where the name is listed in BuiltinModels() and error messages (ascending; ties by name).
  int order = 0;
  // In the order of torch's named_parameters() for the module.
  std::vector<ModelLayerSpec> layers;
};

// Registers `entry` while it is constructed: declare one per architecture, at namespace scope
// in its file. A second entry with the same name, or one without name or layers, is a bug and
// aborts.
class ModelRegistrar {
 public:
  explicit ModelRegistrar(ModelEntry entry);
};

// The entry registered under `name`, or null.
const ModelEntry* FindModel(const std::string& name);

// Every registered name, in listing order.
std::vector<std::string> ModelNames();

}  // namespace hansa

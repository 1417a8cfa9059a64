// mlp: 784->200, ReLU, 200->10 (159,010 parameters).
#include "common/model/registry.h"

namespace hansa {
namespace {

ModelEntry Entry() {
  ModelEntry e;
  e.name = "mlp";
  e.order = 30;
  e.layers = {{"fc1", {200, 784}}, {"fc2", {10, 200}}};
  return e;
}

const ModelRegistrar kRegistrar(Entry());

}  // namespace
}  // namespace hansa

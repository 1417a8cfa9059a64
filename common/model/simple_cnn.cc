// simple_cnn, the CNN of NIID-Bench (Li et al. 2022): conv 1->6 5x5, ReLU, maxpool 2, conv 6->16
// 5x5, ReLU, maxpool 2, fc 256->120, ReLU, fc 120->84, ReLU, fc 84->10 (44,426 parameters).
#include "common/model/registry.h"

namespace hansa {
namespace {

ModelEntry Entry() {
  ModelEntry e;
  e.name = "simple_cnn";
  e.order = 10;
  e.layers = {{"conv1", {6, 1, 5, 5}},
              {"conv2", {16, 6, 5, 5}},
              {"fc1", {120, 256}},
              {"fc2", {84, 120}},
              {"fc3", {10, 84}}};
  return e;
}

const ModelRegistrar kRegistrar(Entry());

}  // namespace
}  // namespace hansa

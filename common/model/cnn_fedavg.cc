// cnn_fedavg, the CNN of McMahan et al. 2017: conv 1->32 5x5 same, ReLU, maxpool 2, conv
// 32->64 5x5 same, ReLU, maxpool 2, fc 3136->512, ReLU, fc 512->10 (1,663,370 parameters).
#include "common/model/registry.h"

namespace hansa {
namespace {

ModelEntry Entry() {
  ModelEntry e;
  e.name = "cnn_fedavg";
  e.order = 20;
  e.layers = {{"conv1", {32, 1, 5, 5}},
              {"conv2", {64, 32, 5, 5}},
              {"fc1", {512, 3136}},
              {"fc2", {10, 512}}};
  return e;
}

const ModelRegistrar kRegistrar(Entry());

}  // namespace
}  // namespace hansa

// FedAvgM (Hsu et al. 2019): server momentum, v = beta v + mean delta; x = x + eta v. The
// velocity v is the strategy's state across rounds ("momentum.<tensor>").
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/strategies/internal.h"
#include "coordinator/strategies/registry.h"

namespace hansa {
namespace {

using strategy_internal::PackState;
using strategy_internal::UnpackState;

class FedAvgM : public Strategy {
 public:
  FedAvgM(const StrategyOptions& o, const ModelLayout& m) : Strategy(o, m) {
    velocity_.assign(model_.TotalElements(), 0.0f);
  }
  Model State() const override { return PackState(model_, {"momentum."}, {&velocity_}); }
  Status RestoreState(const Model& s) override {
    return UnpackState(s, model_, {"momentum."}, {&velocity_}, options_.name);
  }

 protected:
  bool steps_elementwise() const override { return true; }
  Status StepElements(const float* global, const float* mean, float* out,
                      const RoundInfo&) override {
    const float beta = static_cast<float>(options_.server_momentum);
    const float lr = static_cast<float>(options_.server_lr);
    for (size_t i = 0; i < velocity_.size(); ++i) {
      velocity_[i] = beta * velocity_[i] + mean[i];
      out[i] = global[i] + lr * velocity_[i];
    }
    return absl::OkStatus();
  }

 private:
  std::vector<float> velocity_;
};

StrategyEntry Entry() {
  StrategyEntry e;
  e.name = "fedavgm";
  e.order = 20;
  e.deployable = true;
  e.create = [](const StrategyOptions& o, const ModelLayout& m) {
    return std::make_unique<FedAvgM>(o, m);
  };
  e.label = [](const StrategyOptions& o, std::vector<std::string>* params) {
    if (o.server_momentum != StrategyOptions().server_momentum) {
      params->push_back(absl::StrCat("momentum=", strategy_internal::Short(o.server_momentum)));
    }
  };
  return e;
}

const StrategyRegistrar kRegistrar(Entry());

}  // namespace
}  // namespace hansa

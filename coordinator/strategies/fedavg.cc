// FedAvg (McMahan et al. 2017) and FedProx (Li et al. 2020): x + eta * mean delta. They differ
// only at the sites, where FedProx adds mu/2 * ||w - w_global||^2 to the local loss.
#include <memory>

#include "absl/strings/str_cat.h"
#include "coordinator/strategies/internal.h"
#include "coordinator/strategies/registry.h"

namespace hansa {
namespace {

class FedAvg : public Strategy {
 public:
  FedAvg(const StrategyOptions& o, const ModelLayout& m, bool proximal)
      : Strategy(o, m), proximal_(proximal) {}
  ClientRecipe recipe() const override {
    ClientRecipe r;
    if (proximal_) r.proximal_mu = options_.mu;
    return r;
  }

 protected:
  bool steps_elementwise() const override { return true; }

 private:
  const bool proximal_;
};

StrategyEntry FedAvgEntry() {
  StrategyEntry e;
  e.name = "fedavg";
  e.order = 10;
  e.deployable = true;
  e.create = [](const StrategyOptions& o, const ModelLayout& m) {
    return std::make_unique<FedAvg>(o, m, /*proximal=*/false);
  };
  return e;
}

StrategyEntry FedProxEntry() {
  StrategyEntry e;
  e.name = "fedprox";
  e.order = 60;
  e.create = [](const StrategyOptions& o, const ModelLayout& m) {
    return std::make_unique<FedAvg>(o, m, /*proximal=*/true);
  };
  e.label = [](const StrategyOptions& o, std::vector<std::string>* params) {
    params->push_back(absl::StrCat("mu=", strategy_internal::Short(o.mu)));
  };
  return e;
}

const StrategyRegistrar kFedAvg(FedAvgEntry());
const StrategyRegistrar kFedProx(FedProxEntry());

}  // namespace
}  // namespace hansa

// FedNova (Wang et al. 2020): the sites upload delta_i / a_i and a_i (FedNovaCoefficient, sent
// as "fednova.a" = a_i / kFedNovaScale after the model); the weighted mean of a_i is tau_eff,
// and x = x + eta tau_eff mean(delta_i / a_i).
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/strategies/registry.h"

namespace hansa {
namespace {

class FedNova : public Strategy {
 public:
  FedNova(const StrategyOptions& o, const ModelLayout& m) : Strategy(o, m) {}
  ClientRecipe recipe() const override {
    ClientRecipe r;
    r.fednova = true;
    return r;
  }
  ModelLayout UpdateLayout() const override {
    std::vector<TensorSpec> specs = model_.tensors();
    specs.push_back({"fednova.a", DType::kF32, {1}});
    return ModelLayout(std::move(specs));
  }
  StatusOr<Model> Apply(Model global, const Model& mean, const RoundInfo&) override {
    RETURN_IF_ERROR(CheckUpdate(mean));
    const double tau_eff = static_cast<double>(mean.values.back()) * kFedNovaScale;
    if (!(tau_eff > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("FedNova aggregate has tau_eff = ", tau_eff, "; sites must upload a_i > 0"));
    }
    std::vector<float> step(model_.TotalElements());
    for (size_t i = 0; i < step.size(); ++i) step[i] = static_cast<float>(tau_eff * mean.values[i]);
    return Step(std::move(global), step.data());
  }
};

StrategyEntry Entry() {
  StrategyEntry e;
  e.name = "fednova";
  e.order = 80;
  e.create = [](const StrategyOptions& o, const ModelLayout& m) {
    return std::make_unique<FedNova>(o, m);
  };
  return e;
}

const StrategyRegistrar kRegistrar(Entry());

}  // namespace

double FedNovaCoefficient(int64_t steps, double rho) {
  const double tau = static_cast<double>(steps);
  if (rho == 0) return tau;
  return (tau - rho * (1 - std::pow(rho, tau)) / (1 - rho)) / (1 - rho);
}

}  // namespace hansa

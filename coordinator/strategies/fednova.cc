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

 protected:
  bool steps_elementwise() const override { return true; }
  Status StepElements(const float* global, const float* mean, float* out,
                      const RoundInfo&) override {
    const size_t n = static_cast<size_t>(model_.TotalElements());
    const double tau_eff = static_cast<double>(mean[n]) * kFedNovaScale;  // fednova.a
    if (!(tau_eff > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("FedNova aggregate has tau_eff = ", tau_eff, "; sites must upload a_i > 0"));
    }
    const float lr = static_cast<float>(options_.server_lr);
    for (size_t i = 0; i < n; ++i) {
      const float step = static_cast<float>(tau_eff * mean[i]);
      out[i] = global[i] + lr * step;
    }
    return absl::OkStatus();
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

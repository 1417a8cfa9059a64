// FedAdagrad, FedYogi, FedAdam (Reddi et al. 2021, Algorithm 2; no bias correction):
// m = b1 m + (1 - b1) d; v by the variant; x = x + eta m / (sqrt(v) + tau). The moments m and
// v are the strategy's state across rounds ("m.<tensor>", "v.<tensor>").
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/strategies/internal.h"
#include "coordinator/strategies/registry.h"

namespace hansa {
namespace {

using strategy_internal::PackState;
using strategy_internal::Short;
using strategy_internal::UnpackState;

enum class Variant { kAdam, kYogi, kAdagrad };

class FedAdaptive : public Strategy {
 public:
  FedAdaptive(const StrategyOptions& o, const ModelLayout& m, Variant variant)
      : Strategy(o, m), variant_(variant) {
    m_.assign(model_.TotalElements(), 0.0f);
    v_.assign(model_.TotalElements(), static_cast<float>(options_.tau * options_.tau));
  }
  Model State() const override { return PackState(model_, {"m.", "v."}, {&m_, &v_}); }
  Status RestoreState(const Model& s) override {
    return UnpackState(s, model_, {"m.", "v."}, {&m_, &v_}, options_.name);
  }

 protected:
  bool steps_elementwise() const override { return true; }
  Status StepElements(const float* global, const float* mean, float* out,
                      const RoundInfo&) override {
    const double b1 = options_.beta1, b2 = options_.beta2, tau = options_.tau;
    const float lr = static_cast<float>(options_.server_lr);
    for (size_t i = 0; i < m_.size(); ++i) {
      const double d = mean[i];
      const double m = b1 * m_[i] + (1 - b1) * d;
      double v = v_[i];
      const double d2 = d * d;
      if (variant_ == Variant::kAdagrad) {
        v = v + d2;
      } else if (variant_ == Variant::kYogi) {
        v = v - (1 - b2) * d2 * ((v - d2) > 0 ? 1.0 : (v - d2) < 0 ? -1.0 : 0.0);
      } else {
        v = b2 * v + (1 - b2) * d2;
      }
      m_[i] = static_cast<float>(m);
      v_[i] = static_cast<float>(v);
      const float step = static_cast<float>(m / (std::sqrt(v) + tau));
      out[i] = global[i] + lr * step;
    }
    return absl::OkStatus();
  }

 private:
  const Variant variant_;
  std::vector<float> m_, v_;
};

// The moments' parameters when they differ from the defaults.
void Label(const StrategyOptions& o, std::vector<std::string>* params) {
  const StrategyOptions d;
  if (o.beta1 != d.beta1) params->push_back(absl::StrCat("beta1=", Short(o.beta1)));
  if (o.beta2 != d.beta2) params->push_back(absl::StrCat("beta2=", Short(o.beta2)));
  if (o.tau != d.tau) params->push_back(absl::StrCat("tau=", Short(o.tau)));
}

StrategyEntry Entry(const char* name, int order, Variant variant) {
  StrategyEntry e;
  e.name = name;
  e.order = order;
  e.deployable = true;
  e.create = [variant](const StrategyOptions& o, const ModelLayout& m) {
    return std::make_unique<FedAdaptive>(o, m, variant);
  };
  e.label = Label;
  return e;
}

const StrategyRegistrar kFedAdam(Entry("fedadam", 30, Variant::kAdam));
const StrategyRegistrar kFedYogi(Entry("fedyogi", 40, Variant::kYogi));
const StrategyRegistrar kFedAdagrad(Entry("fedadagrad", 50, Variant::kAdagrad));

}  // namespace
}  // namespace hansa

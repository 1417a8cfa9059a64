// SCAFFOLD (Karimireddy et al. 2020). Server: x = x + eta mean delta_y;
// c = c + (|S| / N) mean delta_c, where each site's update carries its delta_c after the model
// ("scaffold.<tensor>") and the sites download c as a second model (ServerBroadcast). Sites:
// every local step is corrected by c - c_i, and delta_c follows option II
// (ScaffoldControlDelta).
#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "coordinator/strategies/internal.h"
#include "coordinator/strategies/registry.h"

namespace hansa {
namespace {

using strategy_internal::PackState;
using strategy_internal::Prefixed;
using strategy_internal::UnpackState;

class Scaffold : public Strategy {
 public:
  Scaffold(const StrategyOptions& o, const ModelLayout& m) : Strategy(o, m) {
    c_.assign(model_.TotalElements(), 0.0f);
  }
  ClientRecipe recipe() const override {
    ClientRecipe r;
    r.scaffold = true;
    return r;
  }
  ModelLayout UpdateLayout() const override {
    std::vector<TensorSpec> specs = model_.tensors();
    std::vector<TensorSpec> extra = Prefixed(model_, "scaffold.");
    specs.insert(specs.end(), extra.begin(), extra.end());
    return ModelLayout(std::move(specs));
  }
  std::optional<Model> ServerBroadcast() const override {
    return PackState(model_, {"scaffold."}, {&c_});
  }
  Model State() const override { return PackState(model_, {"scaffold."}, {&c_}); }
  Status RestoreState(const Model& s) override {
    return UnpackState(s, model_, {"scaffold."}, {&c_}, options_.name);
  }

 protected:
  bool steps_elementwise() const override { return true; }
  // The model's step first, and c's only when that step is finite, so a refused round leaves
  // c as it was.
  Status StepElements(const float* global, const float* mean, float* out,
                      const RoundInfo& info) override {
    RETURN_IF_ERROR(Strategy::StepElements(global, mean, out, info));
    RETURN_IF_ERROR(CheckStepFinite(out, c_.size()));
    const float share =
        static_cast<float>(info.sites) / static_cast<float>(std::max(1, info.total_sites));
    const float* delta_c = mean + c_.size();
    for (size_t i = 0; i < c_.size(); ++i) c_[i] += share * delta_c[i];
    return absl::OkStatus();
  }

 private:
  std::vector<float> c_;
};

StrategyEntry Entry() {
  StrategyEntry e;
  e.name = "scaffold";
  e.order = 70;
  e.create = [](const StrategyOptions& o, const ModelLayout& m) {
    return std::make_unique<Scaffold>(o, m);
  };
  return e;
}

const StrategyRegistrar kRegistrar(Entry());

}  // namespace

std::vector<float> ScaffoldControlDelta(const std::vector<float>& server_c,
                                        const std::vector<float>& global,
                                        const std::vector<float>& local, int64_t steps, double lr) {
  std::vector<float> out(global.size());
  const double scale = 1.0 / (static_cast<double>(std::max<int64_t>(1, steps)) * lr);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<float>(-static_cast<double>(server_c[i]) +
                                (static_cast<double>(global[i]) - local[i]) * scale);
  }
  return out;
}

}  // namespace hansa

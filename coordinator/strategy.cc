#include "coordinator/strategy.h"

#include <cmath>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/tensor/huge_pages.h"
#include "common/tensor/safetensors.h"
#include "coordinator/strategies/internal.h"
#include "coordinator/strategies/registry.h"

namespace hansa {
namespace {

Model Zeros(ModelLayout layout) {
  Model m;
  m.values.assign(layout.TotalElements(), 0.0f);
  m.layout = std::move(layout);
  return m;
}

Status Positive(const char* name, double v) {
  if (std::isfinite(v) && v > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("strategy parameter ", name, " = ", v, " must be > 0"));
}

Status UnitInterval(const char* name, double v) {
  if (std::isfinite(v) && v >= 0 && v < 1) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("strategy parameter ", name, " = ", v, " must be in [0, 1)"));
}

}  // namespace

std::string StrategyOptions::Label() const {
  const StrategyOptions d;
  std::vector<std::string> params;
  if (server_lr != d.server_lr) {
    params.push_back(absl::StrCat("server_lr=", strategy_internal::Short(server_lr)));
  }
  const StrategyEntry* entry = FindStrategy(name);
  if (entry != nullptr && entry->label != nullptr) entry->label(*this, &params);
  return params.empty() ? name : absl::StrCat(name, ":", absl::StrJoin(params, ","));
}

StatusOr<StrategyOptions> ParseStrategySpec(const std::string& text) {
  StrategyOptions o;
  std::vector<std::string> parts = absl::StrSplit(text, absl::MaxSplits(':', 1));
  o.name = parts[0];
  if (FindStrategy(o.name) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown strategy '", o.name, "'; known: ", absl::StrJoin(StrategyNames(), ", ")));
  }
  if (parts.size() == 2) {
    for (absl::string_view kv : absl::StrSplit(parts[1], ',', absl::SkipEmpty())) {
      std::vector<std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
      double v = 0;
      if (p.size() != 2 || !absl::SimpleAtod(p[1], &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("strategy '", text, "': '", std::string(kv), "' is not key=number"));
      }
      const std::string& k = p[0];
      if (k == "server_lr")
        o.server_lr = v;
      else if (k == "momentum")
        o.server_momentum = v;
      else if (k == "beta1")
        o.beta1 = v;
      else if (k == "beta2")
        o.beta2 = v;
      else if (k == "tau")
        o.tau = v;
      else if (k == "mu")
        o.mu = v;
      else if (k == "beta")
        o.trim_beta = v;
      else if (k == "f")
        o.krum_f = static_cast<int>(v);
      else if (k == "m")
        o.multikrum_m = static_cast<int>(v);
      else {
        return absl::InvalidArgumentError(
            absl::StrCat("strategy '", text, "': unknown parameter '", k,
                         "'; known: server_lr, momentum, beta1, beta2, tau, mu, beta, f, m"));
      }
    }
  }
  return o;
}

Strategy::~Strategy() = default;

StatusOr<std::unique_ptr<Strategy>> Strategy::Create(const StrategyOptions& o,
                                                     const ModelLayout& model) {
  RETURN_IF_ERROR(ParseStrategySpec(o.name).status());
  RETURN_IF_ERROR(Positive("server_lr", o.server_lr));
  RETURN_IF_ERROR(UnitInterval("momentum", o.server_momentum));
  RETURN_IF_ERROR(UnitInterval("beta1", o.beta1));
  RETURN_IF_ERROR(UnitInterval("beta2", o.beta2));
  RETURN_IF_ERROR(Positive("tau", o.tau));
  if (!(o.mu >= 0)) return absl::InvalidArgumentError("strategy parameter mu must be >= 0");
  if (!(o.trim_beta >= 0 && o.trim_beta < 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("trimmed_mean beta = ", o.trim_beta, " must be in [0, 0.5)"));
  }
  if (o.krum_f < 0 || o.multikrum_m < 0) {
    return absl::InvalidArgumentError("Krum f and m must be >= 0");
  }
  return FindStrategy(o.name)->create(o, model);
}

Status Strategy::CheckUpdate(const Model& update) const {
  RETURN_IF_ERROR(Annotate(update.layout.CheckSameAs(UpdateLayout()),
                           absl::StrCat(options_.name, " aggregate")));
  if (static_cast<int64_t>(update.values.size()) != update.layout.TotalElements()) {
    return absl::InvalidArgumentError(absl::StrCat(options_.name, " aggregate holds ",
                                                   update.values.size(), " values, its layout ",
                                                   update.layout.TotalElements()));
  }
  return absl::OkStatus();
}

Status Strategy::StepElements(const float* global, const float* mean, float* out,
                              const RoundInfo&) {
  const float lr = static_cast<float>(options_.server_lr);
  const size_t n = static_cast<size_t>(model_.TotalElements());
  for (size_t i = 0; i < n; ++i) out[i] = global[i] + lr * mean[i];
  return absl::OkStatus();
}

Status Strategy::CheckStepFinite(const float* values, size_t n) const {
  const int64_t bad = FindNonFinite(values, n);
  if (bad >= 0) {
    return absl::InvalidArgumentError(absl::StrCat(options_.name, " step made value ", bad,
                                                   " of the global model non-finite; refusing it"));
  }
  return absl::OkStatus();
}

StatusOr<Model> Strategy::Step(Model global, const float* step) const {
  RETURN_IF_ERROR(Annotate(global.layout.CheckSameAs(model_), "global model"));
  const float lr = static_cast<float>(options_.server_lr);
  for (size_t i = 0; i < global.values.size(); ++i) global.values[i] += lr * step[i];
  RETURN_IF_ERROR(CheckStepFinite(global.values.data(), global.values.size()));
  return global;
}

StatusOr<Model> Strategy::Apply(Model global, const Model& mean, const RoundInfo& info) {
  if (needs_individual_updates()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "strategy '", options_.name, "' needs the individual updates, not their mean"));
  }
  RETURN_IF_ERROR(CheckUpdate(mean));
  RETURN_IF_ERROR(Annotate(global.layout.CheckSameAs(model_), "global model"));
  RETURN_IF_ERROR(
      StepElements(global.values.data(), mean.values.data(), global.values.data(), info));
  RETURN_IF_ERROR(CheckStepFinite(global.values.data(), global.values.size()));
  return global;
}

StatusOr<Model> Strategy::ApplyToMean(const float* global, Model mean, const RoundInfo& info) {
  if (!steps_elementwise() || needs_individual_updates()) {
    Model copy;
    copy.layout = model_;
    if (!needs_individual_updates()) {
      copy.values.assign(global, global + model_.TotalElements());
    }
    return Apply(std::move(copy), mean, info);
  }
  RETURN_IF_ERROR(CheckUpdate(mean));
  RETURN_IF_ERROR(StepElements(global, mean.values.data(), mean.values.data(), info));
  // The strategy's extra tensors (SCAFFOLD's delta_c) after the model are read by now: their
  // pages go back, and the vector keeps its buffer rather than being copied to a smaller one.
  const size_t n = static_cast<size_t>(model_.TotalElements());
  // From the tail's own first whole page: the page it shares with the model's values stays.
  ReleaseConsumedPages(mean.values.data() + n, 0, (mean.values.size() - n) * sizeof(float));
  mean.values.resize(n);
  mean.layout = model_;
  RETURN_IF_ERROR(CheckStepFinite(mean.values.data(), n));
  return mean;
}

StatusOr<Model> Strategy::ApplyIndividual(const Model& global,
                                          const std::vector<WeightedUpdate>& updates,
                                          const RoundInfo& info) {
  // A mean-based strategy given individual updates: form their weighted mean.
  ModelLayout layout = UpdateLayout();
  Model mean = Zeros(layout);
  std::vector<double> sum(mean.values.size(), 0.0);
  double total = 0;
  for (const WeightedUpdate& u : updates) {
    if (u.values == nullptr || u.values->size() != sum.size() || !(u.weight > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(options_.name, ": an update does not match ",
                                                     sum.size(), " values or has no weight"));
    }
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += u.weight * (*u.values)[i];
    total += u.weight;
  }
  if (total <= 0) return absl::InvalidArgumentError("no updates to aggregate");
  for (size_t i = 0; i < sum.size(); ++i) mean.values[i] = static_cast<float>(sum[i] / total);
  return Apply(global, mean, info);
}

Status Strategy::RestoreState(const Model& state) {
  if (state.layout.size() == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("strategy '", options_.name,
                                                 "' keeps no state but the state file holds ",
                                                 state.layout.size(), " tensors"));
}

Status Strategy::SaveState(const std::string& path) const {
  return WriteSafetensorsFile(path, State(), {{"strategy", options_.name}});
}

Status Strategy::LoadState(const std::string& path) {
  TensorMetadata meta;
  ASSIGN_OR_RETURN(Model state, ReadSafetensorsFile(path, &meta));
  auto it = meta.find("strategy");
  if (it == meta.end() || it->second != options_.name) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " holds the state of strategy '", it == meta.end() ? "?" : it->second,
                     "', not '", options_.name, "'; remove it to start the strategy afresh"));
  }
  return RestoreState(state);
}

Status CheckStrategyCompatible(const StrategyOptions& options, bool secure_aggregation) {
  RETURN_IF_ERROR(ParseStrategySpec(options.name).status());
  if (secure_aggregation && FindStrategy(options.name)->individual_updates) {
    std::vector<std::string> from_mean;
    for (const std::string& name : StrategyNames()) {
      if (!FindStrategy(name)->individual_updates) from_mean.push_back(name);
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy '", options.name,
        "' needs every site's individual update, but secure "
        "aggregation lets the coordinator see only their sum; use it in plaintext mode "
        "(aggregation mode = \"plaintext\") or choose one of ",
        absl::StrJoin(from_mean, ", ")));
  }
  return absl::OkStatus();
}

}  // namespace hansa

#include "coordinator/strategy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/tensor/safetensors.h"

namespace hansa {
namespace {

const std::vector<std::string>& KnownStrategies() {
  static const auto* names = new std::vector<std::string>{
      "fedavg",   "fedavgm", "fedadam", "fedyogi",      "fedadagrad", "fedprox",
      "scaffold", "fednova", "median",  "trimmed_mean", "krum",       "multikrum"};
  return *names;
}

bool IsRobust(const std::string& name) {
  return name == "median" || name == "trimmed_mean" || name == "krum" || name == "multikrum";
}

std::string Short(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

// The model's tensors, each renamed with `prefix`.
std::vector<TensorSpec> Prefixed(const ModelLayout& model, const std::string& prefix) {
  std::vector<TensorSpec> out = model.tensors();
  for (TensorSpec& t : out) t.name = prefix + t.name;
  return out;
}

Model Zeros(ModelLayout layout) {
  Model m;
  m.values.assign(layout.TotalElements(), 0.0f);
  m.layout = std::move(layout);
  return m;
}

// State tensors: groups of model-shaped vectors, each under its own prefix.
Model PackState(const ModelLayout& model, const std::vector<std::string>& prefixes,
                const std::vector<const std::vector<float>*>& parts) {
  std::vector<TensorSpec> specs;
  Model out;
  for (size_t i = 0; i < prefixes.size(); ++i) {
    std::vector<TensorSpec> p = Prefixed(model, prefixes[i]);
    specs.insert(specs.end(), p.begin(), p.end());
    out.values.insert(out.values.end(), parts[i]->begin(), parts[i]->end());
  }
  out.layout = ModelLayout(std::move(specs));
  return out;
}

Status UnpackState(const Model& state, const ModelLayout& model,
                   const std::vector<std::string>& prefixes, std::vector<std::vector<float>*> parts,
                   const std::string& strategy) {
  Model expected = PackState(model, prefixes,
                             std::vector<const std::vector<float>*>(parts.begin(), parts.end()));
  RETURN_IF_ERROR(Annotate(state.layout.CheckSameAs(expected.layout),
                           absl::StrCat("restoring ", strategy, " state")));
  const size_t n = static_cast<size_t>(model.TotalElements());
  for (size_t i = 0; i < parts.size(); ++i) {
    parts[i]->assign(state.values.begin() + i * n, state.values.begin() + (i + 1) * n);
  }
  return absl::OkStatus();
}

// FedAvg and FedProx (whose difference is at the sites): x + eta * mean delta.
class FedAvg : public Strategy {
 public:
  using Strategy::Strategy;
  ClientRecipe recipe() const override {
    ClientRecipe r;
    if (options_.name == "fedprox") r.proximal_mu = options_.mu;
    return r;
  }
};

// FedAvgM (Hsu et al. 2019): v = beta v + mean delta; x = x + eta v.
class FedAvgM : public Strategy {
 public:
  FedAvgM(StrategyOptions o, ModelLayout m) : Strategy(std::move(o), std::move(m)) {
    velocity_.assign(model_.TotalElements(), 0.0f);
  }
  StatusOr<Model> Apply(const Model& global, const Model& mean, const RoundInfo&) override {
    RETURN_IF_ERROR(CheckUpdate(mean));
    const float beta = static_cast<float>(options_.server_momentum);
    for (size_t i = 0; i < velocity_.size(); ++i)
      velocity_[i] = beta * velocity_[i] + mean.values[i];
    return Step(global, velocity_.data());
  }
  Model State() const override { return PackState(model_, {"momentum."}, {&velocity_}); }
  Status RestoreState(const Model& s) override {
    return UnpackState(s, model_, {"momentum."}, {&velocity_}, options_.name);
  }

 private:
  std::vector<float> velocity_;
};

// FedAdagrad, FedYogi, FedAdam (Reddi et al. 2021, Algorithm 2; no bias correction):
// m = b1 m + (1 - b1) d; v by the variant; x = x + eta m / (sqrt(v) + tau).
class FedAdaptive : public Strategy {
 public:
  FedAdaptive(StrategyOptions o, ModelLayout m) : Strategy(std::move(o), std::move(m)) {
    m_.assign(model_.TotalElements(), 0.0f);
    v_.assign(model_.TotalElements(), static_cast<float>(options_.tau * options_.tau));
  }
  StatusOr<Model> Apply(const Model& global, const Model& mean, const RoundInfo&) override {
    RETURN_IF_ERROR(CheckUpdate(mean));
    const double b1 = options_.beta1, b2 = options_.beta2, tau = options_.tau;
    std::vector<float> step(m_.size());
    for (size_t i = 0; i < m_.size(); ++i) {
      const double d = mean.values[i];
      const double m = b1 * m_[i] + (1 - b1) * d;
      double v = v_[i];
      const double d2 = d * d;
      if (options_.name == "fedadagrad") {
        v = v + d2;
      } else if (options_.name == "fedyogi") {
        v = v - (1 - b2) * d2 * ((v - d2) > 0 ? 1.0 : (v - d2) < 0 ? -1.0 : 0.0);
      } else {
        v = b2 * v + (1 - b2) * d2;
      }
      m_[i] = static_cast<float>(m);
      v_[i] = static_cast<float>(v);
      step[i] = static_cast<float>(m / (std::sqrt(v) + tau));
    }
    return Step(global, step.data());
  }
  Model State() const override { return PackState(model_, {"m.", "v."}, {&m_, &v_}); }
  Status RestoreState(const Model& s) override {
    return UnpackState(s, model_, {"m.", "v."}, {&m_, &v_}, options_.name);
  }

 private:
  std::vector<float> m_, v_;
};

// SCAFFOLD (Karimireddy et al. 2020), server side: x = x + eta mean delta_y;
// c = c + (|S| / N) mean delta_c.
class Scaffold : public Strategy {
 public:
  Scaffold(StrategyOptions o, ModelLayout m) : Strategy(std::move(o), std::move(m)) {
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
  StatusOr<Model> Apply(const Model& global, const Model& mean, const RoundInfo& info) override {
    RETURN_IF_ERROR(CheckUpdate(mean));
    ASSIGN_OR_RETURN(Model next, Step(global, mean.values.data()));
    const float share =
        static_cast<float>(info.sites) / static_cast<float>(std::max(1, info.total_sites));
    const float* delta_c = mean.values.data() + c_.size();
    for (size_t i = 0; i < c_.size(); ++i) c_[i] += share * delta_c[i];
    return next;
  }
  Model State() const override { return PackState(model_, {"scaffold."}, {&c_}); }
  Status RestoreState(const Model& s) override {
    return UnpackState(s, model_, {"scaffold."}, {&c_}, options_.name);
  }

 private:
  std::vector<float> c_;
};

// FedNova (Wang et al. 2020): the sites upload delta_i / a_i and a_i; the weighted mean of
// a_i is tau_eff, and x = x + eta tau_eff mean(delta_i / a_i).
class FedNova : public Strategy {
 public:
  using Strategy::Strategy;
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
  StatusOr<Model> Apply(const Model& global, const Model& mean, const RoundInfo&) override {
    RETURN_IF_ERROR(CheckUpdate(mean));
    const double tau_eff = static_cast<double>(mean.values.back()) * kFedNovaScale;
    if (!(tau_eff > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("FedNova aggregate has tau_eff = ", tau_eff, "; sites must upload a_i > 0"));
    }
    std::vector<float> step(model_.TotalElements());
    for (size_t i = 0; i < step.size(); ++i) step[i] = static_cast<float>(tau_eff * mean.values[i]);
    return Step(global, step.data());
  }
};

// Robust aggregators over individual updates: x + eta robust(delta_1..n).
class Robust : public Strategy {
 public:
  using Strategy::Strategy;
  bool needs_individual_updates() const override { return true; }
  StatusOr<Model> ApplyIndividual(const Model& global, const std::vector<WeightedUpdate>& updates,
                                  const RoundInfo&) override {
    std::vector<const std::vector<float>*> u;
    for (const WeightedUpdate& w : updates) {
      if (w.values == nullptr || static_cast<int64_t>(w.values->size()) != model_.TotalElements()) {
        return absl::InvalidArgumentError(absl::StrCat(options_.name,
                                                       ": an update does not have the model's ",
                                                       model_.TotalElements(), " values"));
      }
      u.push_back(w.values);
    }
    StatusOr<std::vector<float>> agg;
    if (options_.name == "median") {
      agg = CoordinateMedian(u);
    } else if (options_.name == "trimmed_mean") {
      agg = TrimmedMean(u, options_.trim_beta);
    } else {
      const int m = options_.name == "krum"
                        ? 1
                        : (options_.multikrum_m > 0 ? options_.multikrum_m
                                                    : static_cast<int>(u.size()) - options_.krum_f);
      agg = MultiKrum(u, options_.krum_f, m);
    }
    RETURN_IF_ERROR(agg.status());
    return Step(global, agg->data());
  }
};

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

Status CheckSameSize(const std::vector<const std::vector<float>*>& u) {
  if (u.empty()) return absl::InvalidArgumentError("no updates to aggregate");
  for (const auto* v : u) {
    if (v->size() != u[0]->size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("updates of different sizes (", v->size(), " and ", u[0]->size(), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string StrategyOptions::Label() const {
  const StrategyOptions d;
  std::vector<std::string> params;
  if (server_lr != d.server_lr) params.push_back(absl::StrCat("server_lr=", Short(server_lr)));
  if (name == "fedprox") params.push_back(absl::StrCat("mu=", Short(mu)));
  if (name == "fedavgm" && server_momentum != d.server_momentum) {
    params.push_back(absl::StrCat("momentum=", Short(server_momentum)));
  }
  if (name == "fedadam" || name == "fedyogi" || name == "fedadagrad") {
    if (beta1 != d.beta1) params.push_back(absl::StrCat("beta1=", Short(beta1)));
    if (beta2 != d.beta2) params.push_back(absl::StrCat("beta2=", Short(beta2)));
    if (tau != d.tau) params.push_back(absl::StrCat("tau=", Short(tau)));
  }
  if (name == "trimmed_mean") params.push_back(absl::StrCat("beta=", Short(trim_beta)));
  if (name == "krum" || name == "multikrum") params.push_back(absl::StrCat("f=", krum_f));
  if (name == "multikrum" && multikrum_m > 0) params.push_back(absl::StrCat("m=", multikrum_m));
  return params.empty() ? name : absl::StrCat(name, ":", absl::StrJoin(params, ","));
}

StatusOr<StrategyOptions> ParseStrategySpec(const std::string& text) {
  StrategyOptions o;
  std::vector<std::string> parts = absl::StrSplit(text, absl::MaxSplits(':', 1));
  o.name = parts[0];
  const auto& known = KnownStrategies();
  if (std::find(known.begin(), known.end(), o.name) == known.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown strategy '", o.name, "'; known: ", absl::StrJoin(known, ", ")));
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

double FedNovaCoefficient(int64_t steps, double rho) {
  const double tau = static_cast<double>(steps);
  if (rho == 0) return tau;
  return (tau - rho * (1 - std::pow(rho, tau)) / (1 - rho)) / (1 - rho);
}

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
  const std::string& n = o.name;
  std::unique_ptr<Strategy> s;
  if (n == "fedavg" || n == "fedprox")
    s.reset(new FedAvg(o, model));
  else if (n == "fedavgm")
    s.reset(new FedAvgM(o, model));
  else if (n == "fedadam" || n == "fedyogi" || n == "fedadagrad")
    s.reset(new FedAdaptive(o, model));
  else if (n == "scaffold")
    s.reset(new Scaffold(o, model));
  else if (n == "fednova")
    s.reset(new FedNova(o, model));
  else
    s.reset(new Robust(o, model));
  return s;
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

StatusOr<Model> Strategy::Step(const Model& global, const float* step) const {
  RETURN_IF_ERROR(Annotate(global.layout.CheckSameAs(model_), "global model"));
  Model next = global;
  const float lr = static_cast<float>(options_.server_lr);
  for (size_t i = 0; i < next.values.size(); ++i) next.values[i] += lr * step[i];
  const int64_t bad = FindNonFinite(next.values.data(), next.values.size());
  if (bad >= 0) {
    return absl::InvalidArgumentError(absl::StrCat(options_.name, " step made value ", bad,
                                                   " of the global model non-finite; refusing it"));
  }
  return next;
}

StatusOr<Model> Strategy::Apply(const Model& global, const Model& mean, const RoundInfo&) {
  if (needs_individual_updates()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "strategy '", options_.name, "' needs the individual updates, not their mean"));
  }
  RETURN_IF_ERROR(CheckUpdate(mean));
  return Step(global, mean.values.data());
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
  if (secure_aggregation && IsRobust(options.name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy '", options.name,
        "' needs every site's individual update, but secure "
        "aggregation lets the coordinator see only their sum; use it in plaintext mode "
        "(aggregation mode = \"plaintext\") or choose one of fedavg, fedavgm, fedadam, "
        "fedyogi, fedadagrad, fedprox, scaffold, fednova"));
  }
  return absl::OkStatus();
}

StatusOr<std::vector<float>> CoordinateMedian(const std::vector<const std::vector<float>*>& u) {
  RETURN_IF_ERROR(CheckSameSize(u));
  const size_t n = u.size();
  std::vector<float> out(u[0]->size()), column(n);
  for (size_t i = 0; i < out.size(); ++i) {
    for (size_t k = 0; k < n; ++k) column[k] = (*u[k])[i];
    std::sort(column.begin(), column.end());
    out[i] = n % 2
                 ? column[n / 2]
                 : static_cast<float>((static_cast<double>(column[n / 2 - 1]) + column[n / 2]) / 2);
  }
  return out;
}

StatusOr<std::vector<float>> TrimmedMean(const std::vector<const std::vector<float>*>& u,
                                         double beta) {
  RETURN_IF_ERROR(CheckSameSize(u));
  const size_t n = u.size();
  const size_t cut = static_cast<size_t>(std::floor(beta * static_cast<double>(n)));
  if (!(beta >= 0) || 2 * cut >= n) {
    return absl::InvalidArgumentError(absl::StrCat("trimmed mean with beta = ", beta, " cuts ",
                                                   2 * cut, " of ", n,
                                                   " updates; nothing is left"));
  }
  std::vector<float> out(u[0]->size()), column(n);
  for (size_t i = 0; i < out.size(); ++i) {
    for (size_t k = 0; k < n; ++k) column[k] = (*u[k])[i];
    std::sort(column.begin(), column.end());
    double sum = 0;
    for (size_t k = cut; k < n - cut; ++k) sum += column[k];
    out[i] = static_cast<float>(sum / static_cast<double>(n - 2 * cut));
  }
  return out;
}

StatusOr<std::vector<float>> MultiKrum(const std::vector<const std::vector<float>*>& u, int f,
                                       int m, std::vector<int>* selected) {
  RETURN_IF_ERROR(CheckSameSize(u));
  const int n = static_cast<int>(u.size());
  if (f < 0 || n <= 2 * f + 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("Krum with f = ", f, " needs more than ", 2 * f + 2, " updates; got ", n));
  }
  if (m < 1 || m > n) {
    return absl::InvalidArgumentError(absl::StrCat("Multi-Krum m = ", m, " must be in 1..", n));
  }
  std::vector<std::vector<double>> dist(n, std::vector<double>(n, 0.0));
  for (int a = 0; a < n; ++a) {
    for (int b = a + 1; b < n; ++b) {
      double d = 0;
      for (size_t i = 0; i < u[a]->size(); ++i) {
        const double x = static_cast<double>((*u[a])[i]) - (*u[b])[i];
        d += x * x;
      }
      dist[a][b] = dist[b][a] = d;
    }
  }
  const int neighbours = n - f - 2;
  std::vector<double> score(n);
  for (int a = 0; a < n; ++a) {
    std::vector<double> others;
    for (int b = 0; b < n; ++b) {
      if (b != a) others.push_back(dist[a][b]);
    }
    std::sort(others.begin(), others.end());
    score[a] = std::accumulate(others.begin(), others.begin() + neighbours, 0.0);
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] < score[b]; });
  order.resize(m);
  std::vector<double> sum(u[0]->size(), 0.0);
  for (int k : order) {
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += (*u[k])[i];
  }
  std::vector<float> out(sum.size());
  for (size_t i = 0; i < sum.size(); ++i) out[i] = static_cast<float>(sum[i] / m);
  if (selected) *selected = order;
  return out;
}

}  // namespace hansa

// Robust aggregators over the sites' individual updates (plaintext mode only): x + eta
// robust(delta_1..n), with the coordinate-wise median, the trimmed mean (Yin et al. 2018), Krum
// or Multi-Krum (Blanchard et al. 2017). Unweighted, as in the papers.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/strategies/internal.h"
#include "coordinator/strategies/registry.h"

namespace hansa {
namespace {

enum class Rule { kMedian, kTrimmedMean, kKrum, kMultiKrum };

class Robust : public Strategy {
 public:
  Robust(const StrategyOptions& o, const ModelLayout& m, Rule rule) : Strategy(o, m), rule_(rule) {}
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
    if (rule_ == Rule::kMedian) {
      agg = CoordinateMedian(u);
    } else if (rule_ == Rule::kTrimmedMean) {
      agg = TrimmedMean(u, options_.trim_beta);
    } else {
      const int m = rule_ == Rule::kKrum
                        ? 1
                        : (options_.multikrum_m > 0 ? options_.multikrum_m
                                                    : static_cast<int>(u.size()) - options_.krum_f);
      agg = MultiKrum(u, options_.krum_f, m);
    }
    RETURN_IF_ERROR(agg.status());
    return Step(global, agg->data());
  }

 private:
  const Rule rule_;
};

void TrimmedMeanLabel(const StrategyOptions& o, std::vector<std::string>* params) {
  params->push_back(absl::StrCat("beta=", strategy_internal::Short(o.trim_beta)));
}

void KrumLabel(const StrategyOptions& o, std::vector<std::string>* params) {
  params->push_back(absl::StrCat("f=", o.krum_f));
}

void MultiKrumLabel(const StrategyOptions& o, std::vector<std::string>* params) {
  KrumLabel(o, params);
  if (o.multikrum_m > 0) params->push_back(absl::StrCat("m=", o.multikrum_m));
}

StrategyEntry Entry(const char* name, int order, Rule rule,
                    void (*label)(const StrategyOptions&, std::vector<std::string>*)) {
  StrategyEntry e;
  e.name = name;
  e.order = order;
  e.individual_updates = true;
  e.create = [rule](const StrategyOptions& o, const ModelLayout& m) {
    return std::make_unique<Robust>(o, m, rule);
  };
  if (label != nullptr) e.label = label;
  return e;
}

const StrategyRegistrar kMedian(Entry("median", 90, Rule::kMedian, nullptr));
const StrategyRegistrar kTrimmedMean(Entry("trimmed_mean", 100, Rule::kTrimmedMean,
                                           TrimmedMeanLabel));
const StrategyRegistrar kKrum(Entry("krum", 110, Rule::kKrum, KrumLabel));
const StrategyRegistrar kMultiKrum(Entry("multikrum", 120, Rule::kMultiKrum, MultiKrumLabel));

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

// Server-side federated optimisation strategies: what the coordinator does with a round's
// aggregate to produce the next global model, and what each strategy asks of the sites.
//
// The round engine aggregates the sites' updates into one example-weighted mean (in plaintext
// or under secure aggregation) and hands it to Strategy::ApplyToMean together with the current
// global model (the simulator calls Apply). An update is the site's change to the global model
// (local - global) followed by the strategy's extra tensors, named with the strategy's prefix:
//   scaffold.<tensor>  SCAFFOLD: the site's control-variate change delta_c (same shapes)
//   fednova.a          FedNova: [1] the site's normalising coefficient a_i / kFedNovaScale;
//                      the model part is then delta_i / a_i
// SCAFFOLD also sends the sites its server control variate c (ServerBroadcast(), tensors
// named scaffold.<tensor>) as a second download. Robust aggregators (median, trimmed mean,
// Krum, Multi-Krum) need every site's individual update: they implement ApplyIndividual and
// are refused with secure aggregation (CheckStrategyCompatible).
//
// Each strategy is one file in coordinator/strategies/ that registers itself by name
// (coordinator/strategies/registry.h); docs/extending.md shows how to add one.
//
// State kept across rounds (server momentum, Adam moments, SCAFFOLD's c) is a Model of named
// tensors, saved as a safetensors file in the state dir so a restarted coordinator resumes it.
// A Strategy is owned by the engine's driver thread; not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status/status.h"
#include "common/tensor/tensor.h"

namespace hansa {

struct StrategyOptions {
  // A registered strategy (StrategyNames()); built in: fedavg, fedavgm, fedadam, fedyogi,
  // fedadagrad, fedprox, scaffold, fednova, median, trimmed_mean, krum, multikrum.
  std::string name = "fedavg";
  double server_lr = 1.0;        // eta: every strategy scales its step by it
  double server_momentum = 0.9;  // FedAvgM beta
  double beta1 = 0.9;            // FedAdam/FedYogi/FedAdagrad first moment
  double beta2 = 0.99;           // FedAdam/FedYogi second moment
  double tau = 1e-3;             // adaptivity; v starts at tau^2 (Reddi et al. 2021, Alg. 2)
  double mu = 0.01;              // FedProx proximal weight (used by the sites)
  double trim_beta = 0.1;        // trimmed mean: fraction cut at each end per coordinate
  int krum_f = 0;                // Krum: number of Byzantine sites tolerated
  int multikrum_m = 0;           // Multi-Krum: updates averaged; 0 = n - f

  // "fedprox:mu=0.01" style label with the non-default parameters, for tables.
  std::string Label() const;
};

// Parses "NAME" or "NAME:key=value,key=value" with keys server_lr, momentum, beta1, beta2,
// tau, mu, beta (trimmed mean), f, m. InvalidArgument naming the strategies or keys known.
StatusOr<StrategyOptions> ParseStrategySpec(const std::string& text);

// What a site does beyond plain local SGD for this strategy.
struct ClientRecipe {
  double proximal_mu = 0;  // FedProx: adds mu/2 * ||w - w_global||^2 to the local loss
  bool scaffold = false;   // SCAFFOLD: corrects every step by c - c_i, uploads delta_c
  bool fednova = false;    // FedNova: uploads delta / a_i and a_i
};

// A site's individual update, for aggregators that need them.
struct WeightedUpdate {
  const std::vector<float>* values = nullptr;  // UpdateLayout() order
  double weight = 1;                           // examples
};

struct RoundInfo {
  int64_t round = 0;
  int sites = 1;        // sites whose updates are in the aggregate
  int total_sites = 1;  // sites in the federation (SCAFFOLD scales c's step by sites/total)
};

// FedNova's a_i for `steps` local SGD steps with momentum rho (Wang et al. 2020, as in
// NIID-Bench): (tau - rho (1 - rho^tau) / (1 - rho)) / (1 - rho); tau when rho = 0.
double FedNovaCoefficient(int64_t steps, double momentum);
inline constexpr double kFedNovaScale = 1e5;  // fednova.a carries a_i / kFedNovaScale

// SCAFFOLD option II at a site: delta_c = c_i+ - c_i = -c + (global - local) / (steps * lr).
// `server_c`, `global`, `local` have the model's size.
std::vector<float> ScaffoldControlDelta(const std::vector<float>& server_c,
                                        const std::vector<float>& global,
                                        const std::vector<float>& local, int64_t steps, double lr);

class Strategy {
 public:
  // InvalidArgument for an unknown name or a parameter out of range.
  static StatusOr<std::unique_ptr<Strategy>> Create(const StrategyOptions& options,
                                                    const ModelLayout& model);
  virtual ~Strategy();

  const StrategyOptions& options() const { return options_; }
  const ModelLayout& model_layout() const { return model_; }
  virtual ClientRecipe recipe() const { return {}; }
  // True for the robust aggregators: Apply is unavailable, ApplyIndividual must be used.
  virtual bool needs_individual_updates() const { return false; }
  // The model's tensors followed by the strategy's extra tensors.
  virtual ModelLayout UpdateLayout() const { return model_; }
  // What the sites download besides the model (SCAFFOLD's c), or nullopt.
  virtual std::optional<Model> ServerBroadcast() const { return std::nullopt; }

  // The next global model from the current one and the example-weighted mean of the round's
  // updates (UpdateLayout()). InvalidArgument when the layouts disagree; the result is
  // checked finite. `global` is stepped in place and returned: pass it with std::move when the
  // caller no longer needs it, so a large model is not copied.
  virtual StatusOr<Model> Apply(Model global, const Model& mean_update, const RoundInfo& info);
  // As Apply, bit for bit, without a copy of the model: reads the current values from `global`
  // (model_layout().TotalElements() floats, such as the published payload's view; only read)
  // and writes the next model into `mean_update`'s own buffer, which it returns with the
  // model's layout. Strategies whose step is element-wise (steps_elementwise(): every built-in
  // one that steps from the mean) do so; otherwise `global` is copied and Apply called.
  virtual StatusOr<Model> ApplyToMean(const float* global, Model mean_update,
                                      const RoundInfo& info);
  // For robust aggregators: the next global model from the individual updates.
  virtual StatusOr<Model> ApplyIndividual(const Model& global,
                                          const std::vector<WeightedUpdate>& updates,
                                          const RoundInfo& info);

  // State across rounds as named tensors (empty layout when stateless).
  virtual Model State() const { return Model{}; }
  virtual Status RestoreState(const Model& state);
  // Saves State() to `path` atomically (tagged with the strategy name); LoadState checks the
  // tag and restores. NotFound from LoadState when there is no file (a fresh start).
  Status SaveState(const std::string& path) const;
  Status LoadState(const std::string& path);

 protected:
  Strategy(StrategyOptions options, ModelLayout model)
      : options_(std::move(options)), model_(std::move(model)) {}
  // The model part of an update checked against the layout, or InvalidArgument.
  Status CheckUpdate(const Model& update) const;
  // global + server_lr * step, checked finite, written into `global`'s own values.
  StatusOr<Model> Step(Model global, const float* step) const;
  // True when the step is StepElements (so Apply and ApplyToMean need no override).
  virtual bool steps_elementwise() const { return false; }
  // The server step, element by element, for the base Apply and ApplyToMean: for each of the
  // model's values, out[i] = global[i] + server_lr * s_i, where s_i comes from the mean's
  // values (`mean`, UpdateLayout() order) and the strategy's state, which it updates. `out` is
  // `global` or `mean`: each element is read before it is written. Called after CheckUpdate;
  // the caller checks the result finite. The base is FedAvg's: s_i = mean[i].
  virtual Status StepElements(const float* global, const float* mean, float* out,
                              const RoundInfo& info);
  // InvalidArgument, naming the first, when values[0, n) holds a non-finite value.
  Status CheckStepFinite(const float* values, size_t n) const;

  const StrategyOptions options_;
  const ModelLayout model_;
};

// OK when `options` can run with (or without) secure aggregation. InvalidArgument for a robust
// aggregator under secure aggregation: the coordinator only ever sees the sum.
Status CheckStrategyCompatible(const StrategyOptions& options, bool secure_aggregation);

// Robust aggregates of equally sized vectors (unweighted, as in the papers). InvalidArgument
// for no updates, different sizes, or parameters the number of updates cannot satisfy.
StatusOr<std::vector<float>> CoordinateMedian(const std::vector<const std::vector<float>*>& u);
// Per coordinate: drops the floor(beta * n) smallest and largest values, averages the rest.
StatusOr<std::vector<float>> TrimmedMean(const std::vector<const std::vector<float>*>& u,
                                         double beta);
// Multi-Krum (Blanchard et al. 2017): scores each update by the summed squared distances to its
// n - f - 2 nearest others and averages the m best; m = 1 is Krum. Needs n > 2f + 2.
// `selected`, when given, receives the indices chosen (best first).
StatusOr<std::vector<float>> MultiKrum(const std::vector<const std::vector<float>*>& u, int f,
                                       int m, std::vector<int>* selected = nullptr);

}  // namespace hansa

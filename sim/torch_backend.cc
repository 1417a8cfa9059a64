// The simulator's LibTorch backend: `pool` Trainers (client/train/trainer.h) over the run's data.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/cores/usable_cores.h"
#include "sim/simulation.h"

namespace hansa {
namespace {

class TorchBackend : public SimulationBackend {
 public:
  TorchBackend(const Dataset* train, const Dataset* test, std::string model)
      : raw_train_(train), raw_test_(test), train_(train), test_(test), model_(std::move(model)) {}
  std::vector<std::unique_ptr<Trainer>> trainers;
  Model file_weights;  // a TorchScript model's own, as its file holds them

  StatusOr<Model> Train(int slot, const Model& start, const std::vector<int64_t>& indices,
                        const TrainSettings& settings, TrainResult* result) override {
    Trainer* t = trainers.at(slot).get();
    ASSIGN_OR_RETURN(Dataset data, Subset(*train_, indices));
    RETURN_IF_ERROR(t->SetWeights(start));
    ASSIGN_OR_RETURN(*result, t->Train(data, settings));
    return t->GetWeights();
  }
  StatusOr<EvalResult> Evaluate(int slot, const Model& model) override {
    Trainer* t = trainers.at(slot).get();
    RETURN_IF_ERROR(t->SetWeights(model));
    return t->Evaluate(*test_);
  }
  StatusOr<Model> StartingModel(const SimulationConfig& config) override {
    if (config.model != model_) {
      return absl::InvalidArgumentError(
          absl::StrCat("the run's model '", config.model, "' is not the backend's '", model_, "'"));
    }
    if (!IsScriptModelName(model_)) return SimulationBackend::StartingModel(config);
    return file_weights;
  }
  Status Standardize(const std::vector<std::vector<int64_t>>& sites, int64_t features,
                     FeatureMoments* pooled) override;

 private:
  const Dataset* const raw_train_;
  const Dataset* const raw_test_;
  const Dataset* train_;  // raw_train_ or standardized_train_
  const Dataset* test_;
  std::string model_;
  Dataset standardized_train_, standardized_test_;
};

Status TorchBackend::Standardize(const std::vector<std::vector<int64_t>>& sites, int64_t features,
                                 FeatureMoments* pooled) {
  train_ = raw_train_;
  test_ = raw_test_;
  if (features == 0) return absl::OkStatus();
  if (!raw_train_->tabular || raw_train_->cols != features || raw_test_->cols != features) {
    return absl::FailedPreconditionError(absl::StrCat(
        "standardization.features = ", features, " but the data ",
        raw_train_->tabular ? absl::StrCat("has ", raw_train_->cols, " features per row")
                            : std::string("is images, not rows of features")));
  }
  // Each site's moments, added up as the secure sum of a deployment's statistics step adds them.
  *pooled = FeatureMoments::OfRows({}, features);
  std::vector<float> rows;
  for (const std::vector<int64_t>& site : sites) {
    rows.clear();
    rows.reserve(site.size() * static_cast<size_t>(features));
    for (int64_t i : site) {
      const auto at = raw_train_->features.begin() + i * features;
      rows.insert(rows.end(), at, at + features);
    }
    RETURN_IF_ERROR(pooled->Add(FeatureMoments::OfRows(rows, features)));
  }
  std::vector<double> mean, std;
  RETURN_IF_ERROR(pooled->MeanAndStd(&mean, &std));
  standardized_train_ = *raw_train_;
  standardized_test_ = *raw_test_;
  RETURN_IF_ERROR(hansa::Standardize(mean, std, &standardized_train_));
  RETURN_IF_ERROR(hansa::Standardize(mean, std, &standardized_test_));
  train_ = &standardized_train_;
  test_ = &standardized_test_;
  return absl::OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<SimulationBackend>> CreateTorchBackend(const Dataset* train,
                                                                const Dataset* test,
                                                                TrainerOptions options, int pool) {
  auto backend = std::make_unique<TorchBackend>(train, test, options.model);
  const int cores = UsableCores();
  if (options.threads == 0 && pool > 1) options.threads = std::max(1, cores / pool);
  for (int i = 0; i < std::max(1, pool); ++i) {
    ASSIGN_OR_RETURN(auto trainer, Trainer::Create(options));
    backend->trainers.push_back(std::move(trainer));
  }
  if (IsScriptModelName(options.model)) {
    // The initial global model is the file's own weights, as `hansa model inspect
    // --write-init` writes them for a coordinator.
    ASSIGN_OR_RETURN(backend->file_weights, backend->trainers.front()->GetWeights());
  }
  return std::unique_ptr<SimulationBackend>(std::move(backend));
}

StatusOr<std::unique_ptr<SimulationBackend>> CreateTorchBackend(const Dataset* train,
                                                                const Dataset* test,
                                                                const std::string& model,
                                                                const std::string& device,
                                                                int threads, int pool) {
  TrainerOptions options;
  options.model = model;
  options.device = device;
  options.threads = threads;
  return CreateTorchBackend(train, test, std::move(options), pool);
}

}  // namespace hansa

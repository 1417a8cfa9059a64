#include "client/torch_site_trainer.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "client/tabular.h"
#include "common/plan/standardization.h"

#include "common/logging/logging.h"
#include "spdlog/spdlog.h"

namespace hansa {

Status TorchSiteTrainer::EnsureTrainer(const v1::RoundPlan& plan) {
  const std::string& model = plan.model_name();
  ASSIGN_OR_RETURN(Task task, PlanTask(plan));
  if (trainer_ && trainer_model_ == model && trainer_task_ == task) return absl::OkStatus();
  TrainerOptions options = options_;
  options.model = model;
  options.task = task;
  if (auto script = scripts_.find(model); script != scripts_.end()) {
    options.script_file = script->second.file;
  }
  trainer_.reset();
  ASSIGN_OR_RETURN(trainer_, Trainer::Create(options));
  trainer_model_ = model;
  trainer_task_ = task;
  spdlog::info("training '{}' ({}, {}) on {}", model, TaskKindName(task.kind), LossName(task.loss),
               trainer_->device());
  return absl::OkStatus();
}

StatusOr<TrainResult> TorchSiteTrainer::Moments(const v1::RoundPlan& plan) {
  const int64_t features = plan.statistics().features();
  if (!train_.tabular || train_.cols != features) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the coordinator asks for the moments of ", features, " features; this site's data ",
        train_.tabular ? absl::StrCat("has ", train_.cols, " features per row")
                       : std::string("is images, not rows of features")));
  }
  if (train_.size() == 0) return absl::FailedPreconditionError("this site has no training rows");
  // The rows as the plan leaves them: raw, or standardised by an earlier pass.
  ASSIGN_OR_RETURN(const Dataset* rows, Data(plan, /*train=*/true));
  const FeatureMoments sums = FeatureMoments::Of(*rows);
  // Secure aggregation would clip a larger value, and every site would get a wrong deviation.
  for (int64_t j = 0; j < features; ++j) {
    const double largest = std::max(std::abs(sums.sum[j]), sums.sum_squares[j]);
    if (largest > plan.secagg().clip()) {
      return absl::FailedPreconditionError(
          absl::StrCat("feature ", j, "'s sum of squares over this site's rows, ", largest,
                       ", exceeds the plan's clip ", plan.secagg().clip(),
                       "; the coordinator's standardization.clip must be larger"));
    }
  }
  ASSIGN_OR_RETURN(std::vector<float> update,
                   EncodeMoments(sums.sum, sums.sum_squares, sums.count));
  moments_ = std::move(update);
  TrainResult result;
  result.num_examples = sums.count;
  return result;
}

StatusOr<const Dataset*> TorchSiteTrainer::Data(const v1::RoundPlan& plan, bool train) {
  if (!plan.has_standardization()) return train ? &train_ : &test_;
  const std::string key = plan.standardization().SerializeAsString();
  if (key != standardized_by_) {
    const auto& s = plan.standardization();
    RETURN_IF_ERROR(CheckStandardization(s, train_.tabular ? train_.cols : -1));
    const std::vector<double> mean(s.mean().begin(), s.mean().end());
    const std::vector<double> std(s.std().begin(), s.std().end());
    train_standardized_ = train_;
    test_standardized_ = test_;
    RETURN_IF_ERROR(Standardize(mean, std, &train_standardized_));
    RETURN_IF_ERROR(Standardize(mean, std, &test_standardized_));
    standardized_by_ = key;
    spdlog::info("features standardised by the federation's pooled mean and std ({} rows)",
                 s.examples());
  }
  return train ? &train_standardized_ : &test_standardized_;
}

StatusOr<TrainResult> TorchSiteTrainer::Train(const v1::RoundPlan& plan, const Model& global) {
  moments_.reset();
  if (plan.has_statistics()) return Moments(plan);
  ASSIGN_OR_RETURN(const Dataset* data, Data(plan, /*train=*/true));
  RETURN_IF_ERROR(EnsureTrainer(plan));
  RETURN_IF_ERROR(trainer_->SetWeights(global));
  // The site's own randomness (CSPRNG) samples and noises; only the parameters are the plan's.
  return trainer_->Train(*data, SettingsOfPlan(plan));
}

StatusOr<std::vector<float>> TorchSiteTrainer::HostUpdate(Model global) {
  if (moments_) return *moments_;
  // The update is the change to the global model; that is what strategies and clipping use.
  // It is written over the global model's values, tensor by tensor.
  RETURN_IF_ERROR(trainer_->WeightsMinus(&global.values));
  return std::move(global.values);
}

StatusOr<DeviceVector> TorchSiteTrainer::UpdateOnDevice() {
  if (moments_) return absl::UnavailableError("the feature moments are on the host");
  return trainer_->UpdateOnDevice();
}

StatusOr<EvalResult> TorchSiteTrainer::Evaluate(const v1::RoundPlan& plan, const Model& global) {
  ASSIGN_OR_RETURN(const Dataset* data, Data(plan, /*train=*/false));
  RETURN_IF_ERROR(EnsureTrainer(plan));
  RETURN_IF_ERROR(trainer_->SetWeights(global));
  return trainer_->Evaluate(*data);
}

}  // namespace hansa

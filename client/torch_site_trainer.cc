#include "client/torch_site_trainer.h"

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

StatusOr<TrainResult> TorchSiteTrainer::Train(const v1::RoundPlan& plan, const Model& global) {
  RETURN_IF_ERROR(EnsureTrainer(plan));
  RETURN_IF_ERROR(trainer_->SetWeights(global));
  // The site's own randomness (CSPRNG) samples and noises; only the parameters are the plan's.
  return trainer_->Train(train_, SettingsOfPlan(plan));
}

StatusOr<std::vector<float>> TorchSiteTrainer::HostUpdate(const Model& global) {
  ASSIGN_OR_RETURN(Model local, trainer_->GetWeights());
  // The update is the change to the global model; that is what strategies and clipping use.
  std::vector<float> delta = std::move(local.values);
  for (size_t i = 0; i < delta.size(); ++i) delta[i] -= global.values[i];
  return delta;
}

StatusOr<DeviceVector> TorchSiteTrainer::UpdateOnDevice() { return trainer_->UpdateOnDevice(); }

StatusOr<EvalResult> TorchSiteTrainer::Evaluate(const v1::RoundPlan& plan, const Model& global) {
  RETURN_IF_ERROR(EnsureTrainer(plan));
  RETURN_IF_ERROR(trainer_->SetWeights(global));
  return trainer_->Evaluate(test_);
}

}  // namespace hansa

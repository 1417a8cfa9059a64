// Local training of a deployed site: LibTorch (client/train/trainer.h) on the site's own
// training and test data, the model the plan names (a trainer is made per model and kept).
// Torch-free header.
//
// Threading: one SiteSession's thread.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "client/data.h"
#include "client/local_trainer.h"
#include "client/policy.h"

namespace hansa {

class TorchSiteTrainer final : public LocalTrainer {
 public:
  // `options.model`, `script_file` and `task` are set per plan; a plan naming a TorchScript
  // model trains the site's copy in `scripts` (SitePolicy::script_models).
  TorchSiteTrainer(TrainerOptions options, std::map<std::string, ScriptModel> scripts,
                   Dataset train, Dataset test)
      : options_(std::move(options)),
        scripts_(std::move(scripts)),
        train_(std::move(train)),
        test_(std::move(test)) {}

  StatusOr<TrainResult> Train(const v1::RoundPlan& plan, const Model& global) override;
  StatusOr<std::vector<float>> HostUpdate(Model global) override;
  StatusOr<DeviceVector> UpdateOnDevice() override;
  StatusOr<EvalResult> Evaluate(const v1::RoundPlan& plan, const Model& global) override;

 private:
  // A trainer for the plan's model and task; kept while they stay the same, so that a model's
  // local buffers (FedBN) carry over from round to round.
  Status EnsureTrainer(const v1::RoundPlan& plan);
  // The statistics step (plan.statistics()): this site's feature moments as the update.
  StatusOr<TrainResult> Moments(const v1::RoundPlan& plan);
  // The data sets the plan trains and evaluates on: the site's own, or standardised by the
  // plan's pooled mean and std (computed once per standardisation).
  StatusOr<const Dataset*> Data(const v1::RoundPlan& plan, bool train);

  TrainerOptions options_;
  std::map<std::string, ScriptModel> scripts_;
  Dataset train_;
  Dataset test_;
  std::unique_ptr<Trainer> trainer_;
  std::string trainer_model_;
  Task trainer_task_;
  std::optional<std::vector<float>> moments_;  // the statistics step's update, once computed
  std::string standardized_by_;                // the serialised standardisation applied below
  Dataset train_standardized_, test_standardized_;
};

}  // namespace hansa

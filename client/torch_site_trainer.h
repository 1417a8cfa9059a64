// Local training of a deployed site: LibTorch (client/train/trainer.h) on the site's own
// training and test data, the model the plan names (a trainer is made per model and kept).
// Torch-free header.
//
// Threading: one SiteSession's thread.
#pragma once

#include <memory>
#include <string>

#include "client/data.h"
#include "client/local_trainer.h"

namespace hansa {

class TorchSiteTrainer final : public LocalTrainer {
 public:
  // `options.model` is set per plan.
  TorchSiteTrainer(TrainerOptions options, Dataset train, Dataset test)
      : options_(std::move(options)), train_(std::move(train)), test_(std::move(test)) {}

  StatusOr<TrainResult> Train(const v1::RoundPlan& plan, const Model& global) override;
  StatusOr<std::vector<float>> HostUpdate(const Model& global) override;
  StatusOr<DeviceVector> UpdateOnDevice() override;
  StatusOr<EvalResult> Evaluate(const v1::RoundPlan& plan, const Model& global) override;

 private:
  Status EnsureTrainer(const std::string& model);

  TrainerOptions options_;
  Dataset train_;
  Dataset test_;
  std::unique_ptr<Trainer> trainer_;
  std::string trainer_model_;
};

}  // namespace hansa

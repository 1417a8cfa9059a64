// What a site's conversation (site_session.h) asks of local training, and nothing more: train
// from the global model as a plan says, hand over the update, evaluate a model. Deployed sites
// use TorchSiteTrainer (LibTorch on the site's own data); the simulator gives each virtual site
// one over a shared pool of trainers; benchmarks and tests use FixedUpdateTrainer.
// Torch-free header.
//
// Threading: called by one SiteSession's thread.
#pragma once

#include <vector>

#include "client/train/trainer.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

class LocalTrainer {
 public:
  virtual ~LocalTrainer() = default;
  // Trains from `global` (the plan's model, as downloaded and checked) as `plan` says.
  // result.num_examples is the site's weight in the mean.
  virtual StatusOr<TrainResult> Train(const v1::RoundPlan& plan, const Model& global) = 0;
  // The last Train's update: the trained weights minus `global`, in global's layout, on the
  // host. `global` is consumed: the update may be written over its values, so that a site
  // holds its trained weights and one more model's worth, not two. REQUIRES: Train succeeded
  // with a model of these values.
  virtual StatusOr<std::vector<float>> HostUpdate(Model global) = 0;
  // The same update where training left it on a CUDA device (secure aggregation masks it
  // there); Unavailable when it is not on one.
  virtual StatusOr<DeviceVector> UpdateOnDevice() {
    return absl::UnavailableError("the update is on the host");
  }
  // `global`'s loss and accuracy on the site's test data.
  virtual StatusOr<EvalResult> Evaluate(const v1::RoundPlan& plan, const Model& global) = 0;
  // The host update as it leaves the site (clipped as the plan asks), in plaintext rounds: the
  // simulator keeps it for aggregators that look at every site's update.
  virtual void Leaving(const std::vector<float>& update) {}
};

// The settings `plan` trains with: its epochs, batch size, optimiser and shuffling seed, and,
// under record-level privacy, its DP-SGD parameters (the site draws the sampling and noise
// from its own CSPRNG unless the caller sets dp.randomness).
TrainSettings SettingsOfPlan(const v1::RoundPlan& plan);

// A trainer that "trains" by returning a fixed update, without data: for benchmarks, scale
// tests and protocol tests, where the conversation is what is measured.
class FixedUpdateTrainer final : public LocalTrainer {
 public:
  // `update` must have the global model's number of values; `examples` is the site's weight.
  FixedUpdateTrainer(std::vector<float> update, int64_t examples)
      : update_(std::move(update)), examples_(examples) {}
  StatusOr<TrainResult> Train(const v1::RoundPlan& plan, const Model& global) override;
  StatusOr<std::vector<float>> HostUpdate(Model global) override;
  StatusOr<EvalResult> Evaluate(const v1::RoundPlan& plan, const Model& global) override;
  int trained() const { return trained_; }

 private:
  std::vector<float> update_;
  int64_t examples_;
  int trained_ = 0;
};

}  // namespace hansa

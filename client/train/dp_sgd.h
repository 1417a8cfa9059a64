// DP-SGD for the Trainer (RecordDpSettings in trainer.h): every step takes a Poisson sample of
// the examples from a secret source, clips each example's gradient, adds Gaussian noise once
// (on rank 0 of a data-parallel group) and hands the noisy mean gradient to the optimizer.
//
// Internal to client/train/: it includes LibTorch, and only the trainer's sources include it.
// Not thread-safe: one DpSgd serves one Train() call on the trainer's thread. LibTorch errors
// are thrown as LibTorch throws them; the trainer's CatchTorch turns them into a Status.
#pragma once

#include <torch/types.h>

#include <vector>

#include "absl/functional/function_ref.h"
#include "client/train/internal/torch_group.h"
#include "client/train/internal/torch_models.h"
#include "client/train/trainer.h"
#include "common/privacy/uniform_source.h"
#include "common/status/status.h"

namespace hansa::internal {

// InvalidArgument naming the first DP-SGD setting out of range; OK when DP-SGD is off
// (clip_norm 0: the others are then not looked at).
Status CheckRecordDpSettings(const RecordDpSettings& dp);

class DpSgd {
 public:
  // `params` are `net`'s parameters in layout order; `group` is null when training alone.
  // All must outlive this object.
  DpSgd(TorchNet& net, std::vector<torch::Tensor>& params, Loss loss, torch::Device device,
        TorchGroup* group);

  // REQUIRES: CheckRecordDpSettings(dp) is OK and dp.enabled().
  // dp.steps steps on Poisson samples of (images, labels), both on the device; `step` applies
  // the optimizer once the noisy gradient is in every parameter's grad. Adds the steps and the
  // examples seen to `result` and sets its loss (the mean per example seen, over all ranks).
  // Internal when that loss is not finite.
  Status Train(const torch::Tensor& images, const torch::Tensor& labels, const RecordDpSettings& dp,
               absl::FunctionRef<void()> step, TrainResult* result);

 private:
  // N(0, stddev^2) in every coordinate, drawn on the CPU from `random`, on the device.
  torch::Tensor GaussianNoise(c10::IntArrayRef sizes, double stddev, UniformSource& random);

  // Which parameter `tensor` is, or -1.
  int ParameterIndex(const torch::Tensor& tensor) const;

  // True when one traced forward pass meets every parameter exactly once, in a layer whose
  // per-example gradients AddClippedGradientsBatched knows.
  bool TracesCoverParameters(const torch::Tensor& images);

  // Add each example's gradient, clipped to L2 norm `clip`, into `sums` (one per parameter),
  // and return the summed loss: from one traced backward pass for the batch (the built-in
  // layers), or with one backward pass per example (any model).
  double AddClippedGradientsBatched(const torch::Tensor& x, const torch::Tensor& y, double clip,
                                    std::vector<torch::Tensor>& sums);
  double AddClippedGradientsLoop(const torch::Tensor& x, const torch::Tensor& y, double clip,
                                 std::vector<torch::Tensor>& sums);

  TorchNet& net_;
  std::vector<torch::Tensor>& params_;
  const Loss loss_;
  const torch::Device device_;
  TorchGroup* const group_;
};

}  // namespace hansa::internal

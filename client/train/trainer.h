// Local training and evaluation of a built-in model at a site.
//
// This header is free of LibTorch so the gRPC session and tools can include it cheaply; the
// implementation (trainer.cc, models_torch.cc) is the only code that includes torch. Every
// LibTorch exception is caught inside and returned as a Status.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "client/data.h"
#include "client/train/parallel_group.h"
#include "common/metrics/metrics.h"
#include "common/model/models.h"
#include "common/model/task.h"
#include "common/privacy/uniform_source.h"
#include "common/status/status.h"
#include "common/tensor/tensor.h"

namespace hansa {

// Record-level differential privacy at a site: DP-SGD (Abadi et al., CCS 2016) with Poisson
// sampling, the mechanism the sampled-Gaussian accountant (common/privacy/rdp.h) bounds with
// q = sampling_rate, z = noise_multiplier and `steps` compositions per round. Each step takes
// every example independently with probability q, clips each example's gradient to L2 norm C,
// adds N(0, (z C)^2) to every coordinate of their sum and divides by the expected batch size
// q * n; momentum, weight decay and the strategies' terms act on that noisy gradient only.
struct RecordDpSettings {
  double clip_norm = 0;         // C; > 0 turns DP-SGD on (epochs and batch_size are then unused)
  double noise_multiplier = 0;  // z >= 0 (0 only for tests: no privacy)
  double sampling_rate = 0;     // q in (0, 1]
  int64_t steps = 0;            // optimizer steps this round, >= 1
  // Sampling and noise. Null: the operating system's CSPRNG (CryptoUniformSource), which the
  // guarantee needs: whoever knows the noise or the sample can remove them. Tests inject a
  // seeded source.
  std::shared_ptr<UniformSource> randomness = nullptr;
  // The built-in models' linear and convolution layers get every example's gradient from one
  // batched backward pass (exact, from each layer's input and output gradient). True forces the
  // fallback that any model gets: one backward pass per example (slower, the same result).
  bool per_example_loop = false;

  bool enabled() const { return clip_norm > 0; }
};

// One round's local training, from the round plan.
struct TrainSettings {
  int epochs = 1;
  int batch_size = 32;
  double learning_rate = 0.01;
  double momentum = 0.9;
  double weight_decay = 0.0;
  uint64_t seed = 0;  // fixes the shuffling order of every epoch

  // Strategy extensions; the defaults give plain SGD.
  // FedProx: adds mu/2 * ||w - w_start||^2 to the loss, where w_start are the weights Train()
  // starts from (the global model the site was given).
  double proximal_mu = 0;
  // SCAFFOLD: after every optimizer step the weights move by -learning_rate * correction, where
  // correction = c - c_i in layout() order (NIID-Bench's placement, outside momentum). Null or
  // empty: none.
  std::shared_ptr<const std::vector<float>> scaffold_correction = nullptr;
  // Noise-based feature skew: Gaussian noise of this std is added to the pixels (scaled to
  // [0, 1]) once when the data set is put on the device, drawn from noise_seed on a portable
  // generator, so a site sees the same noisy copy every round.
  double input_noise_std = 0;
  uint64_t noise_seed = 0;

  RecordDpSettings dp = {};
};

struct TrainResult {
  int64_t num_examples = 0;   // examples in the data set (the FedAvg weight)
  int64_t steps = 0;          // optimizer steps taken
  int64_t examples_seen = 0;  // summed batch sizes of those steps (Poisson-sampled under DP-SGD)
  // Mean cross-entropy per example over the last epoch's batches (DP-SGD: over every step).
  double loss = 0;
  double seconds = 0;
};

struct EvalResult {
  int64_t num_examples = 0;
  double loss = 0;      // mean cross-entropy per example
  double accuracy = 0;  // fraction of examples whose arg-max logit is the label
  double seconds = 0;
  // counts[truth * classes + predicted] (arg-max logit; binary: score >= 0.5); empty where
  // not computed (regression).
  int classes = 0;
  std::vector<int64_t> confusion;
  // Binary tasks: the positive-class scores binned per true class (metrics.h), else empty.
  std::vector<int64_t> positive_scores, negative_scores;
  // Regression tasks: the error and target sums (count 0 otherwise). `accuracy` is then 0.
  RegressionSums regression;
};

struct TrainerOptions {
  // One of BuiltinModels(), or a study's TorchScript model "sha256:<hex>" (task.h) read from
  // `script_file`, whose bytes must have that hash (the site's policy allowed it).
  std::string model;
  std::string device = "auto";  // "auto" (CUDA when present), "cpu", "cuda" or "cuda:N"
  int threads = 0;              // CPU threads for torch; 0 = hardware concurrency
  // Data-parallel training with the other ranks of the site (parallel_group.h); null: alone.
  // On rank 0, Train() first hands the ranks the round's model, settings and weights. Under a
  // group, DP-SGD samples each example at the rank that holds it (i mod world_size) and rank 0
  // adds the noise once; SCAFFOLD's correction and an injected DP source are refused
  // (FailedPrecondition).
  std::shared_ptr<DataParallelGroup> group = nullptr;
  std::string script_file{};
  // What the model predicts and its loss; buffers: a TorchScript model's float32 buffers are
  // part of layout() when averaged, and stay in the module when local.
  Task task = {};
};

// A vector of floats in the trainer's CUDA device memory, owned by the trainer.
struct DeviceVector {
  const float* data = nullptr;
  size_t size = 0;
  int device = 0;  // CUDA device ordinal
};

// Holds one model's weights on one device and trains/evaluates it. Owned by one site session
// and called from one thread at a time; not thread-safe.
//
// Threads: on CPU, Create() sets torch's intra-op thread count, which is process-wide. Several
// Trainers in one process (simulation) therefore share the last setting.
// The CUDA devices LibTorch sees (0 without CUDA).
int CudaDeviceCount();

class Trainer {
 public:
  // A trainer holding InitialModel(options.model, 0). InvalidArgument for an unknown model or
  // a bad device string; FailedPrecondition when device asks for CUDA and LibTorch has none.
  static StatusOr<std::unique_ptr<Trainer>> Create(const TrainerOptions& options);
  virtual ~Trainer();

  // The layout of the model's weights (see BuiltinModelLayout).
  virtual const ModelLayout& layout() const = 0;

  // Replaces the weights. InvalidArgument naming the first difference when the layout
  // (names, shapes, dtypes) differs from layout(), or naming the tensor holding a NaN/Inf.
  virtual Status SetWeights(const Model& global) = 0;
  virtual StatusOr<Model> GetWeights() = 0;
  // Replaces `base` (a model's values in layout order) by the weights minus it, tensor by
  // tensor: the update from `base` with no whole copy of the weights beside it. InvalidArgument
  // when `base` does not have the layout's number of values.
  virtual Status WeightsMinus(std::vector<float>* base) = 0;

  // SGD with momentum and weight decay on cross-entropy; `data` reshuffled every epoch from
  // settings.seed, or DP-SGD when settings.dp is enabled. Momentum starts from zero on every
  // call. InvalidArgument for bad settings
  // or data that does not fit the model (image size, label range); Internal when the loss
  // becomes NaN/Inf (the weights are then unusable: set new ones).
  virtual StatusOr<TrainResult> Train(const Dataset& data, const TrainSettings& settings) = 0;

  virtual StatusOr<EvalResult> Evaluate(const Dataset& data) = 0;

  // The weights minus those of the last SetWeights, flattened in layout order, left in device
  // memory, so that a site on a GPU masks its update there (cuda/masked_upload.h). The device's
  // work is complete when it returns; the vector stays valid until the next call on this
  // trainer. Unavailable on "cpu"; FailedPrecondition before any SetWeights.
  virtual StatusOr<DeviceVector> UpdateOnDevice() = 0;

  // "cpu" or "cuda:N".
  virtual std::string device() const = 0;
};

}  // namespace hansa

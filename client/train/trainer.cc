// Trainer on LibTorch. Data sets are converted to tensors once per call (one copy, on the
// training device); batches are gathered with index_select, never per example.
#include "client/train/trainer.h"

#include <torch/autograd.h>
#include <torch/cuda.h>
#include <torch/nn/functional.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/train/internal/torch_group.h"
#include "client/train/internal/torch_models.h"
#include "client/seeded_random.h"
#include "common/privacy/central_gaussian.h"
#include "nlohmann/json.hpp"

namespace hansa {
namespace {

namespace F = torch::nn::functional;

constexpr int64_t kEvalBatch = 1000;
constexpr int kMaxEpochs = 1000;
constexpr int kMaxBatchSize = 1 << 16;
constexpr int64_t kMaxDpSteps = 1 << 24;
// DP-SGD computes per-example gradients this many examples at a time, bounding its memory
// (a convolution's unfolded input is examples x Cin k^2 x H' W' values).
constexpr int64_t kDpMicroBatch = 128;
// Added to a gradient's norm before dividing by it: a zero gradient is then left as it is.
constexpr double kNormEpsilon = 1e-6;

// Runs `body` and turns any exception into a Status naming `what`; LibTorch reports its errors
// (shape mismatches, CUDA failures, out of memory) only as exceptions.
template <typename Body>
auto CatchTorch(const char* what, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat(what, ": LibTorch error: ", e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": out of memory; use a smaller batch size or fewer examples"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

StatusOr<torch::Device> ChooseDevice(const std::string& option) {
  if (option == "cpu") return torch::Device(torch::kCPU);
  if (option == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                       : torch::Device(torch::kCPU);
  }
  int index = 0;
  if (option != "cuda") {
    const std::string prefix = "cuda:";
    if (option.compare(0, prefix.size(), prefix) != 0 ||
        !absl::SimpleAtoi(option.substr(prefix.size()), &index) || index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("device '", option, "' is not one of auto, cpu, cuda, cuda:N"));
    }
  }
  if (!torch::cuda::is_available()) {
    return absl::FailedPreconditionError(
        absl::StrCat("device '", option,
                     "' asks for CUDA but LibTorch finds no CUDA device (or was built "
                     "without CUDA); use device = \"auto\" or \"cpu\""));
  }
  const int count = static_cast<int>(torch::cuda::device_count());
  if (index >= count) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device '", option, "' does not exist: LibTorch sees ", count, " CUDA devices"));
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

Status CheckSettings(const TrainSettings& s) {
  if (s.epochs < 1 || s.epochs > kMaxEpochs) {
    return absl::InvalidArgumentError(
        absl::StrCat("epochs = ", s.epochs, " is outside 1..", kMaxEpochs));
  }
  if (s.batch_size < 1 || s.batch_size > kMaxBatchSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size = ", s.batch_size, " is outside 1..", kMaxBatchSize));
  }
  if (!std::isfinite(s.learning_rate) || s.learning_rate <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("learning_rate = ", s.learning_rate, " must be a positive number"));
  }
  if (!std::isfinite(s.momentum) || s.momentum < 0 || s.momentum >= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("momentum = ", s.momentum, " must be in [0, 1)"));
  }
  if (!std::isfinite(s.weight_decay) || s.weight_decay < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight_decay = ", s.weight_decay, " must be >= 0"));
  }
  if (!std::isfinite(s.proximal_mu) || s.proximal_mu < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("proximal_mu = ", s.proximal_mu, " must be >= 0"));
  }
  if (!std::isfinite(s.input_noise_std) || s.input_noise_std < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("input_noise_std = ", s.input_noise_std, " must be >= 0"));
  }
  const RecordDpSettings& dp = s.dp;
  if (!std::isfinite(dp.clip_norm) || dp.clip_norm < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("DP-SGD clip norm = ", dp.clip_norm, " must be >= 0 (0 = no DP-SGD)"));
  }
  if (!dp.enabled()) return absl::OkStatus();
  if (!std::isfinite(dp.noise_multiplier) || dp.noise_multiplier < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("DP-SGD noise multiplier = ", dp.noise_multiplier, " must be >= 0"));
  }
  if (!(dp.sampling_rate > 0 && dp.sampling_rate <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("DP-SGD sampling rate = ", dp.sampling_rate, " must be in (0, 1]"));
  }
  if (dp.steps < 1 || dp.steps > kMaxDpSteps) {
    return absl::InvalidArgumentError(
        absl::StrCat("DP-SGD steps = ", dp.steps, " is outside 1..", kMaxDpSteps));
  }
  return absl::OkStatus();
}

// Checks that `data` fits the built-in models' input and output.
Status CheckData(const Dataset& data) {
  RETURN_IF_ERROR(data.Validate());
  if (data.size() == 0) return absl::InvalidArgumentError("the data set is empty");
  if (data.rows != kBuiltinImageSize || data.cols != kBuiltinImageSize) {
    return absl::InvalidArgumentError(absl::StrCat("images are ", data.rows, "x", data.cols,
                                                   "; the built-in models take ", kBuiltinImageSize,
                                                   "x", kBuiltinImageSize));
  }
  for (int64_t i = 0; i < data.size(); ++i) {
    if (data.labels[i] >= kBuiltinNumClasses) {
      return absl::InvalidArgumentError(absl::StrCat("example ", i, " has label ",
                                                     int{data.labels[i]},
                                                     "; the built-in models "
                                                     "have ",
                                                     kBuiltinNumClasses, " classes"));
    }
  }
  return absl::OkStatus();
}

struct DataTensors {
  torch::Tensor images;  // N x 1 x rows x cols, float in [0, 1], on the device
  torch::Tensor labels;  // N, int64, on the device
};

// One copy of the pixels to the device as bytes, then one conversion there.
DataTensors ToTensors(const Dataset& data, const torch::Device& device) {
  auto* pixels = const_cast<uint8_t*>(data.images.data());  // from_blob is only read from
  auto* labels = const_cast<uint8_t*>(data.labels.data());
  torch::Tensor images =
      torch::from_blob(pixels, {data.size(), 1, data.rows, data.cols}, torch::kUInt8);
  torch::Tensor targets = torch::from_blob(labels, {data.size()}, torch::kUInt8);
  DataTensors out;
  out.images = images.to(device).to(torch::kFloat32).div_(255.0);
  out.labels = targets.to(device).to(torch::kInt64);
  return out;
}

// `count` draws of N(0, std^2) from `seed` (Marsaglia's polar method on SplitMix64), the same
// on every platform: torch's generators differ between CPU and CUDA and across versions.
std::vector<float> PortableGaussian(int64_t count, double std, uint64_t seed) {
  std::vector<float> out(count);
  SeededRandom random(seed);
  auto uniform = [&] { return static_cast<double>(random.Next() >> 11) * 0x1.0p-53; };
  for (int64_t i = 0; i < count; i += 2) {
    double u, v, s;
    do {
      u = 2.0 * uniform() - 1.0;
      v = 2.0 * uniform() - 1.0;
      s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double f = std::sqrt(-2.0 * std::log(s) / s) * std;
    out[i] = static_cast<float>(u * f);
    if (i + 1 < count) out[i + 1] = static_cast<float>(v * f);
  }
  return out;
}

uint64_t EpochSeed(uint64_t seed, int epoch) {
  return seed ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(epoch + 1));
}

class TorchTrainer final : public Trainer {
 public:
  TorchTrainer(torch::Device device, std::shared_ptr<internal::TorchNet> net, ModelLayout layout,
               std::string model, std::shared_ptr<DataParallelGroup> group)
      : device_(device),
        net_(std::move(net)),
        layout_(std::move(layout)),
        model_(std::move(model)),
        group_owner_(std::move(group)),
        group_(dynamic_cast<internal::TorchGroup*>(group_owner_.get())) {
    for (const auto& item : net_->named_parameters()) params_.push_back(item.value());
  }

  const ModelLayout& layout() const override { return layout_; }
  std::string device() const override { return device_.str(); }

  Status SetWeights(const Model& global) override {
    RETURN_IF_ERROR(Annotate(global.layout.CheckSameAs(layout_), "setting model weights"));
    if (static_cast<int64_t>(global.values.size()) != layout_.TotalElements()) {
      return absl::InvalidArgumentError(absl::StrCat("setting model weights: model holds ",
                                                     global.values.size(), " values, its layout ",
                                                     layout_.TotalElements()));
    }
    RETURN_IF_ERROR(CheckFinite(global));
    return CatchTorch("setting model weights", [&]() -> Status {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < params_.size(); ++i) {
        auto* src = const_cast<float*>(global.values.data() + layout_.Offset(i));
        params_[i].copy_(torch::from_blob(src, params_[i].sizes(), torch::kFloat32));
      }
      // On a GPU the global model stays there too, for UpdateOnDevice.
      if (device_.is_cuda()) global_on_device_ = Flatten(params_).clone();
      return absl::OkStatus();
    });
  }

  StatusOr<Model> GetWeights() override {
    return CatchTorch("reading model weights", [&]() -> StatusOr<Model> {
      Model out;
      out.layout = layout_;
      out.values.resize(layout_.TotalElements());
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < params_.size(); ++i) {
        torch::Tensor cpu = params_[i].detach().to(torch::kCPU).contiguous();
        std::memcpy(out.values.data() + layout_.Offset(i), cpu.data_ptr<float>(),
                    sizeof(float) * cpu.numel());
      }
      return out;
    });
  }

  StatusOr<TrainResult> Train(const Dataset& data, const TrainSettings& settings) override {
    RETURN_IF_ERROR(Annotate(CheckSettings(settings), "training settings"));
    RETURN_IF_ERROR(Annotate(CheckData(data), "training data"));
    if (group_ != nullptr) RETURN_IF_ERROR(StartDataParallel(settings));
    return CatchTorch("training", [&]() { return TrainChecked(data, settings); });
  }

  StatusOr<EvalResult> Evaluate(const Dataset& data) override {
    RETURN_IF_ERROR(Annotate(CheckData(data), "evaluation data"));
    return CatchTorch("evaluating", [&]() { return EvaluateChecked(data); });
  }

  StatusOr<DeviceVector> UpdateOnDevice() override {
    if (!device_.is_cuda()) {
      return absl::UnavailableError(
          absl::StrCat("the trainer runs on ", device_.str(), "; its update is in host memory"));
    }
    if (!global_on_device_.defined()) {
      return absl::FailedPreconditionError("no global model was set on the device");
    }
    return CatchTorch("computing the update on the device", [&]() -> StatusOr<DeviceVector> {
      torch::NoGradGuard no_grad;
      update_on_device_ = (Flatten(params_) - global_on_device_).contiguous();
      // Other CUDA streams (the masking kernels') may read it once this returns.
      torch::cuda::synchronize(device_.index());
      return DeviceVector{update_on_device_.data_ptr<float>(),
                          static_cast<size_t>(update_on_device_.numel()), device_.index()};
    });
  }

 private:
  // Data-parallel: rank 0 hands the other ranks this round's command; then every rank takes
  // rank 0's weights, so that all start from the same model.
  Status StartDataParallel(const TrainSettings& s) {
    if (s.scaffold_correction != nullptr && !s.scaffold_correction->empty()) {
      return absl::FailedPreconditionError(
          "SCAFFOLD is not available on a data-parallel site (world_size > 1) yet");
    }
    if (s.dp.enabled() && s.dp.randomness != nullptr) {
      return absl::FailedPreconditionError(
          "DP-SGD on a data-parallel site draws from each rank's CSPRNG; a given source cannot "
          "be shared with the other ranks");
    }
    if (group_->rank() == 0) {
      const nlohmann::json command = {{"op", "train"},
                                      {"model", model_},
                                      {"epochs", s.epochs},
                                      {"batch_size", s.batch_size},
                                      {"learning_rate", s.learning_rate},
                                      {"momentum", s.momentum},
                                      {"weight_decay", s.weight_decay},
                                      {"seed", s.seed},
                                      {"proximal_mu", s.proximal_mu},
                                      {"input_noise_std", s.input_noise_std},
                                      {"noise_seed", s.noise_seed},
                                      {"dp_clip_norm", s.dp.clip_norm},
                                      {"dp_noise_multiplier", s.dp.noise_multiplier},
                                      {"dp_sampling_rate", s.dp.sampling_rate},
                                      {"dp_steps", s.dp.steps},
                                      {"dp_per_example_loop", s.dp.per_example_loop}};
      RETURN_IF_ERROR(group_->SendCommand(command.dump()));
    }
    return CatchTorch("data-parallel weights", [&]() -> Status {
      torch::NoGradGuard no_grad;
      torch::Tensor flat = Flatten(params_);
      group_->Broadcast(flat);
      Unflatten(flat, params_);
      return absl::OkStatus();
    });
  }

  static torch::Tensor Flatten(const std::vector<torch::Tensor>& tensors) {
    std::vector<torch::Tensor> flat;
    for (const auto& t : tensors) flat.push_back(t.detach().reshape({-1}));
    return torch::cat(flat);
  }

  static void Unflatten(const torch::Tensor& flat, std::vector<torch::Tensor>& tensors) {
    int64_t offset = 0;
    for (auto& t : tensors) {
      const int64_t n = t.numel();
      t.detach().copy_(flat.slice(0, offset, offset + n).view(t.sizes()));
      offset += n;
    }
  }

  // This rank's part of the examples [begin, end): all of them without a group.
  std::pair<int64_t, int64_t> RankSlice(int64_t begin, int64_t end) const {
    if (group_ == nullptr) return {begin, end};
    const int64_t n = end - begin, r = group_->rank(), w = group_->world_size();
    return {begin + n * r / w, begin + n * (r + 1) / w};
  }

  // The gradients summed over the ranks, in place; a rank with no examples this step adds
  // zeros.
  void AllReduceGradients() {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> grads;
    for (auto& p : params_) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      grads.push_back(p.grad());
    }
    torch::Tensor flat = Flatten(grads);
    group_->AllReduceSum(flat);
    Unflatten(flat, grads);
  }

  Status CheckFinite(const Model& model) const {
    const int64_t bad = FindNonFinite(model.values.data(), model.values.size());
    if (bad < 0) return absl::OkStatus();
    size_t t = 0;
    while (t + 1 < layout_.size() && layout_.Offset(t + 1) <= bad) ++t;
    return absl::InvalidArgumentError(absl::StrCat(
        "setting model weights: tensor '", layout_.tensors()[t].name, "' element ",
        bad - layout_.Offset(t), " is ", model.values[bad], "; weights must be finite"));
  }

  StatusOr<TrainResult> TrainChecked(const Dataset& data, const TrainSettings& s) {
    const auto start = std::chrono::steady_clock::now();
    DataTensors tensors = ToTensors(data, device_);
    if (s.input_noise_std > 0) {
      std::vector<float> noise =
          PortableGaussian(tensors.images.numel(), s.input_noise_std, s.noise_seed);
      tensors.images.add_(
          torch::from_blob(noise.data(), tensors.images.sizes(), torch::kFloat32).to(device_));
    }
    const int64_t n = data.size();
    // FedProx's centre and SCAFFOLD's correction, one tensor per parameter on the device.
    std::vector<torch::Tensor> centre, correction;
    if (s.proximal_mu > 0) {
      for (const auto& p : params_) centre.push_back(p.detach().clone());
    }
    if (s.scaffold_correction && !s.scaffold_correction->empty()) {
      if (static_cast<int64_t>(s.scaffold_correction->size()) != layout_.TotalElements()) {
        return absl::InvalidArgumentError(
            absl::StrCat("scaffold_correction holds ", s.scaffold_correction->size(),
                         " values; the model has ", layout_.TotalElements()));
      }
      for (size_t i = 0; i < params_.size(); ++i) {
        auto* src = const_cast<float*>(s.scaffold_correction->data() + layout_.Offset(i));
        correction.push_back(
            torch::from_blob(src, params_[i].sizes(), torch::kFloat32).to(device_).clone());
      }
    }
    torch::optim::SGD optimizer(net_->parameters(), torch::optim::SGDOptions(s.learning_rate)
                                                        .momentum(s.momentum)
                                                        .weight_decay(s.weight_decay));
    // After the gradient is in place: FedProx's term, the step, SCAFFOLD's correction.
    auto step = [&] {
      if (!centre.empty()) {
        torch::NoGradGuard no_grad;
        for (size_t i = 0; i < params_.size(); ++i) {
          params_[i].mutable_grad().add_(params_[i].detach() - centre[i], s.proximal_mu);
        }
      }
      optimizer.step();
      if (!correction.empty()) {
        torch::NoGradGuard no_grad;
        for (size_t i = 0; i < params_.size(); ++i) {
          params_[i].sub_(correction[i], s.learning_rate);
        }
      }
    };
    net_->train();
    TrainResult result;
    result.num_examples = n;
    if (s.dp.enabled()) {
      RETURN_IF_ERROR(TrainPrivately(tensors, s.dp, step, &result));
      result.seconds = SecondsSince(start);
      return result;
    }
    for (int epoch = 0; epoch < s.epochs; ++epoch) {
      std::vector<int64_t> order = SeededPermutation(n, EpochSeed(s.seed, epoch));
      torch::Tensor perm = torch::from_blob(order.data(), {n}, torch::kInt64).to(device_);
      torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().device(device_));
      for (int64_t begin = 0; begin < n; begin += s.batch_size) {
        const int64_t end = std::min(n, begin + s.batch_size);
        // Data-parallel: this rank's part of the batch; its loss is the part's share of the
        // batch mean, so that the gradients summed over the ranks are the batch's.
        const auto [from, to] = RankSlice(begin, end);
        optimizer.zero_grad();
        if (to > from) {
          torch::Tensor index = perm.slice(0, from, to);
          torch::Tensor x = tensors.images.index_select(0, index);
          torch::Tensor y = tensors.labels.index_select(0, index);
          torch::Tensor loss = F::cross_entropy(
              net_->forward(x), y, F::CrossEntropyFuncOptions().reduction(torch::kSum));
          loss.div(static_cast<double>(end - begin)).backward();
          loss_sum += loss.detach();
        }
        if (group_ != nullptr) AllReduceGradients();
        step();
        ++result.steps;
        result.examples_seen += end - begin;
      }
      if (group_ != nullptr) group_->AllReduceSum(loss_sum);
      result.loss = loss_sum.item<double>() / static_cast<double>(n);
      if (!std::isfinite(result.loss)) {
        return absl::InternalError(absl::StrCat("training diverged: mean loss of epoch ", epoch + 1,
                                                " is ", result.loss, "; lower the learning rate (",
                                                s.learning_rate, ")"));
      }
    }
    result.seconds = SecondsSince(start);
    return result;
  }

  // DP-SGD (RecordDpSettings): dp.steps steps on Poisson samples of `data`; `step` applies the
  // optimizer once the noisy gradient is in every parameter's grad.
  template <typename Step>
  Status TrainPrivately(const DataTensors& data, const RecordDpSettings& dp, Step& step,
                        TrainResult* result) {
    CryptoUniformSource crypto;
    UniformSource& random = dp.randomness ? *dp.randomness : crypto;
    const int64_t n = data.labels.size(0);
    const bool batched = !dp.per_example_loop && TracesCoverParameters(data.images);
    const double expected_batch = dp.sampling_rate * static_cast<double>(n);
    const double stddev = dp.noise_multiplier * dp.clip_norm;
    const int64_t rank = group_ ? group_->rank() : 0, world = group_ ? group_->world_size() : 1;
    double loss_sum = 0;
    std::vector<torch::Tensor> sums;
    for (int64_t t = 0; t < dp.steps; ++t) {
      // Every example joins with probability q, from the secret source. Data-parallel: each
      // rank draws for its own examples (i mod world_size), so each example still joins
      // independently, once.
      std::vector<int64_t> chosen;
      for (int64_t i = rank; i < n; i += world) {
        if (static_cast<double>(random.NextUint64() >> 11) * 0x1.0p-53 < dp.sampling_rate) {
          chosen.push_back(i);
        }
      }
      sums.clear();
      for (const auto& p : params_) sums.push_back(torch::zeros_like(p));
      const auto count = static_cast<int64_t>(chosen.size());
      torch::Tensor all = torch::from_blob(chosen.data(), {count}, torch::kInt64).to(device_);
      for (int64_t begin = 0; begin < count; begin += kDpMicroBatch) {
        torch::Tensor index = all.slice(0, begin, std::min(count, begin + kDpMicroBatch));
        torch::Tensor x = data.images.index_select(0, index);
        torch::Tensor y = data.labels.index_select(0, index);
        loss_sum += batched ? AddClippedGradientsBatched(x, y, dp.clip_norm, sums)
                            : AddClippedGradientsLoop(x, y, dp.clip_norm, sums);
      }
      torch::NoGradGuard no_grad;
      // The noise is added once: alone, or by rank 0 before the ranks' sums are summed.
      if (stddev > 0 && rank == 0) {
        for (size_t i = 0; i < params_.size(); ++i) {
          sums[i].add_(GaussianNoise(params_[i].sizes(), stddev, random));
        }
      }
      if (group_ != nullptr) {
        torch::Tensor flat = Flatten(sums);
        group_->AllReduceSum(flat);
        Unflatten(flat, sums);
      }
      for (size_t i = 0; i < params_.size(); ++i) {
        params_[i].mutable_grad() = sums[i].div_(expected_batch);
      }
      step();
      ++result->steps;
      result->examples_seen += count;
    }
    if (group_ != nullptr) {
      torch::Tensor totals = torch::tensor({loss_sum, static_cast<double>(result->examples_seen)},
                                           torch::TensorOptions().dtype(torch::kFloat64))
                                 .to(device_);
      group_->AllReduceSum(totals);
      totals = totals.to(torch::kCPU);
      loss_sum = totals[0].item<double>();
      result->examples_seen = static_cast<int64_t>(totals[1].item<double>());
    }
    result->loss = loss_sum / static_cast<double>(std::max<int64_t>(1, result->examples_seen));
    if (!std::isfinite(result->loss)) {
      return absl::InternalError(absl::StrCat("DP-SGD diverged: mean loss is ", result->loss,
                                              "; lower the learning rate"));
    }
    return absl::OkStatus();
  }

  // N(0, stddev^2) in every coordinate, drawn on the CPU from `random`, on the device.
  torch::Tensor GaussianNoise(c10::IntArrayRef sizes, double stddev, UniformSource& random) {
    torch::Tensor noise = torch::empty(sizes, torch::kFloat32);
    float* out = noise.data_ptr<float>();
    const int64_t count = noise.numel();
    for (int64_t i = 0; i < count; i += 2) {
      const auto [a, b] = StandardGaussianPair(random);
      out[i] = static_cast<float>(a * stddev);
      if (i + 1 < count) out[i + 1] = static_cast<float>(b * stddev);
    }
    return noise.to(device_);
  }

  // Which parameter `tensor` is, or -1.
  int ParameterIndex(const torch::Tensor& tensor) const {
    if (!tensor.defined()) return -1;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (params_[i].unsafeGetTensorImpl() == tensor.unsafeGetTensorImpl()) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }

  // True when one traced forward pass meets every parameter exactly once, in a layer whose
  // per-example gradients AddClippedGradientsBatched knows.
  bool TracesCoverParameters(const torch::Tensor& images) {
    std::vector<internal::LayerTrace> trace;
    net_->Forward(images.slice(0, 0, 1), &trace);
    std::vector<int> seen(params_.size(), 0);
    for (const auto& layer : trace) {
      for (const torch::Tensor* p : {&layer.weight, &layer.bias}) {
        const int i = ParameterIndex(*p);
        if (i >= 0) ++seen[i];
        if (p->defined() && i < 0) return false;
      }
      if (layer.kind == internal::LayerTrace::Kind::kLinear && layer.input.dim() != 2) return false;
    }
    return std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; });
  }

  // Adds each example's gradient, clipped to L2 norm `clip`, into `sums` (one per parameter);
  // returns the summed loss. One backward pass for the batch: a linear layer's per-example
  // weight gradient is g_i a_i^T (its norm |g_i| |a_i| needs no outer product), a
  // convolution's is g_i unfold(a_i)^T, where a is the layer's input and g the loss's gradient
  // with respect to its output.
  double AddClippedGradientsBatched(const torch::Tensor& x, const torch::Tensor& y, double clip,
                                    std::vector<torch::Tensor>& sums) {
    using Kind = internal::LayerTrace::Kind;
    std::vector<internal::LayerTrace> trace;
    torch::Tensor loss = F::cross_entropy(net_->Forward(x, &trace), y,
                                          F::CrossEntropyFuncOptions().reduction(torch::kSum));
    std::vector<torch::Tensor> outputs;
    for (const auto& layer : trace) outputs.push_back(layer.output);
    std::vector<torch::Tensor> grads = torch::autograd::grad({loss}, outputs);
    torch::NoGradGuard no_grad;
    const int64_t batch = x.size(0);
    torch::Tensor norm2 = torch::zeros({batch}, x.options());
    // Per layer: the output gradient as batch x out (x positions), and for convolutions the
    // per-example weight gradients, batch x Cout x Cin k^2.
    std::vector<torch::Tensor> g(trace.size()), per_example(trace.size());
    for (size_t l = 0; l < trace.size(); ++l) {
      const auto& layer = trace[l];
      if (layer.kind == Kind::kLinear) {
        g[l] = grads[l];
        const torch::Tensor g2 = g[l].pow(2).sum(1);
        norm2 += g2 * layer.input.pow(2).sum(1);
        if (layer.bias.defined()) norm2 += g2;
      } else {
        g[l] = grads[l].flatten(2);  // batch x Cout x L
        torch::Tensor unfolded =
            F::unfold(layer.input, F::UnfoldFuncOptions({layer.kernel, layer.kernel})
                                       .padding(layer.padding)
                                       .stride(layer.stride));  // batch x Cin k^2 x L
        per_example[l] = torch::bmm(g[l], unfolded.transpose(1, 2));
        norm2 += per_example[l].pow(2).sum({1, 2});
        if (layer.bias.defined()) norm2 += g[l].sum(2).pow(2).sum(1);
      }
    }
    const torch::Tensor factor = (clip / (norm2.sqrt() + kNormEpsilon)).clamp_max(1.0);
    for (size_t l = 0; l < trace.size(); ++l) {
      const auto& layer = trace[l];
      torch::Tensor& weight_sum = sums[ParameterIndex(layer.weight)];
      if (layer.kind == Kind::kLinear) {
        const torch::Tensor scaled = g[l] * factor.unsqueeze(1);
        weight_sum += scaled.t().mm(layer.input);
        if (layer.bias.defined()) sums[ParameterIndex(layer.bias)] += scaled.sum(0);
      } else {
        weight_sum +=
            (per_example[l] * factor.view({batch, 1, 1})).sum(0).view(layer.weight.sizes());
        if (layer.bias.defined()) {
          sums[ParameterIndex(layer.bias)] += (g[l].sum(2) * factor.unsqueeze(1)).sum(0);
        }
      }
    }
    return loss.item<double>();
  }

  // The same for any model: one backward pass per example.
  double AddClippedGradientsLoop(const torch::Tensor& x, const torch::Tensor& y, double clip,
                                 std::vector<torch::Tensor>& sums) {
    double loss_sum = 0;
    for (int64_t i = 0; i < x.size(0); ++i) {
      torch::Tensor loss =
          F::cross_entropy(net_->forward(x.slice(0, i, i + 1)), y.slice(0, i, i + 1),
                           F::CrossEntropyFuncOptions().reduction(torch::kSum));
      std::vector<torch::Tensor> grads = torch::autograd::grad({loss}, params_);
      torch::NoGradGuard no_grad;
      torch::Tensor norm2 = torch::zeros({}, x.options());
      for (const auto& g : grads) norm2 += g.pow(2).sum();
      const torch::Tensor factor = (clip / (norm2.sqrt() + kNormEpsilon)).clamp_max(1.0);
      for (size_t p = 0; p < grads.size(); ++p) sums[p] += grads[p] * factor;
      loss_sum += loss.item<double>();
    }
    return loss_sum;
  }

  StatusOr<EvalResult> EvaluateChecked(const Dataset& data) {
    const auto start = std::chrono::steady_clock::now();
    torch::NoGradGuard no_grad;
    net_->eval();
    const DataTensors tensors = ToTensors(data, device_);
    const int64_t n = data.size();
    torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().device(device_));
    torch::Tensor correct =
        torch::zeros({}, torch::TensorOptions().device(device_).dtype(torch::kInt64));
    for (int64_t begin = 0; begin < n; begin += kEvalBatch) {
      const int64_t end = std::min(n, begin + kEvalBatch);
      torch::Tensor logits = net_->forward(tensors.images.slice(0, begin, end));
      torch::Tensor y = tensors.labels.slice(0, begin, end);
      loss_sum += F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().reduction(torch::kSum));
      correct += logits.argmax(1).eq(y).sum();
    }
    EvalResult result;
    result.num_examples = n;
    result.loss = loss_sum.item<double>() / static_cast<double>(n);
    result.accuracy = static_cast<double>(correct.item<int64_t>()) / static_cast<double>(n);
    result.seconds = SecondsSince(start);
    return result;
  }

  torch::Device device_;
  std::shared_ptr<internal::TorchNet> net_;
  ModelLayout layout_;
  std::string model_;
  std::shared_ptr<DataParallelGroup> group_owner_;
  internal::TorchGroup* group_;        // group_owner_ as the torch side sees it; null: alone
  std::vector<torch::Tensor> params_;  // in layout_ order
  torch::Tensor global_on_device_;     // CUDA only: the weights of the last SetWeights, flat
  torch::Tensor update_on_device_;     // CUDA only: what UpdateOnDevice returned last
};

// The module's own parameter list, to check it against the torch-free description.
ModelLayout LayoutOf(internal::TorchNet& net) {
  std::vector<TensorSpec> tensors;
  for (const auto& item : net.named_parameters()) {
    const torch::Tensor& t = item.value();
    tensors.push_back(
        {item.key(), DType::kF32, std::vector<int64_t>(t.sizes().begin(), t.sizes().end())});
  }
  return ModelLayout(std::move(tensors));
}

StatusOr<std::unique_ptr<Trainer>> CreateChecked(const TrainerOptions& options) {
  ASSIGN_OR_RETURN(ModelLayout layout, BuiltinModelLayout(options.model));
  ASSIGN_OR_RETURN(torch::Device device, ChooseDevice(options.device));
  ASSIGN_OR_RETURN(std::shared_ptr<internal::TorchNet> net,
                   internal::CreateTorchNet(options.model));
  Status same = LayoutOf(*net).CheckSameAs(layout);
  if (!same.ok()) {
    return absl::InternalError(absl::StrCat("LibTorch module of '", options.model,
                                            "' disagrees with its layout: ", same.message()));
  }
  if (device.is_cpu()) {
    const unsigned hardware = std::thread::hardware_concurrency();
    torch::set_num_threads(options.threads > 0 ? options.threads
                                               : static_cast<int>(hardware > 0 ? hardware : 1));
  }
  net->to(device);
  if (options.group != nullptr &&
      dynamic_cast<internal::TorchGroup*>(options.group.get()) == nullptr) {
    return absl::InvalidArgumentError(
        "the data-parallel group was not made by JoinDataParallelGroup");
  }
  auto trainer = std::make_unique<TorchTrainer>(device, std::move(net), std::move(layout),
                                                options.model, options.group);
  // Start from defined weights rather than whatever torch's global generator produced.
  ASSIGN_OR_RETURN(Model initial, InitialModel(options.model, 0));
  RETURN_IF_ERROR(trainer->SetWeights(initial));
  return std::unique_ptr<Trainer>(std::move(trainer));
}

}  // namespace

Trainer::~Trainer() = default;

StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainerOptions& options) {
  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads = ", options.threads, " must be >= 0 (0 = one per CPU core)"));
  }
  return CatchTorch("creating trainer", [&]() { return CreateChecked(options); });
}

}  // namespace hansa

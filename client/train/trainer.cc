// Trainer on LibTorch. Data sets are converted to tensors once per call (one copy, on the
// training device); batches are gathered with index_select, never per example.
#include "client/train/trainer.h"

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
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/train/dp_sgd.h"
#include "client/train/internal/torch_group.h"
#include "client/train/internal/torch_models.h"
#include "common/cores/usable_cores.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/random/seeded_random.h"
#include "nlohmann/json.hpp"

namespace hansa {
namespace {

namespace F = torch::nn::functional;

constexpr int64_t kEvalBatch = 1000;
constexpr int64_t kScoreBins = 1000;  // binary scores' histogram (metrics.h's ScoreHistogram)
constexpr int kMaxEpochs = 1000;
constexpr uint64_t kMaxScriptBytes = uint64_t{4} << 30;
constexpr int kMaxBatchSize = 1 << 16;

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
  return internal::CheckRecordDpSettings(s.dp);
}

// Checks that `data` fits a model: the built-in models' 28 x 28 images and 10 classes, or, for
// a study's own model, whatever LibTorch finds when it runs (shapes), with class ids where the
// loss needs them.
Status CheckData(const Dataset& data, bool builtin, const Task& task) {
  RETURN_IF_ERROR(data.Validate());
  if (data.size() == 0) return absl::InvalidArgumentError("the data set is empty");
  if (builtin) {
    if (data.tabular || data.rows != kBuiltinImageSize || data.cols != kBuiltinImageSize) {
      return absl::InvalidArgumentError(absl::StrCat(
          data.tabular ? "rows of features" : "images are ", data.rows, "x", data.cols,
          "; the built-in models take ", kBuiltinImageSize, "x", kBuiltinImageSize, " images"));
    }
    for (int64_t i = 0; i < data.size(); ++i) {
      if (data.labels[i] >= kBuiltinNumClasses) {
        return absl::InvalidArgumentError(
            absl::StrCat("example ", i, " has label ", int{data.labels[i]},
                         "; the built-in models have ", kBuiltinNumClasses, " classes"));
      }
    }
    return absl::OkStatus();
  }
  const bool classes = task.kind != TaskKind::kRegression;
  if (classes && data.tabular && data.labels.size() != data.targets.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", std::string(TaskKindName(task.kind)),
                     " task needs class ids as labels; the data holds regression targets"));
  }
  if (task.kind == TaskKind::kBinary) {
    for (int64_t i = 0; i < data.size(); ++i) {
      if (data.labels[i] > 1) {
        return absl::InvalidArgumentError(absl::StrCat("example ", i, " has label ",
                                                       int{data.labels[i]},
                                                       "; a binary task has labels 0 and 1"));
      }
    }
  }
  return absl::OkStatus();
}

struct DataTensors {
  // Images: N x 1 x rows x cols, float in [0, 1]; tabular: N x cols features. On the device.
  torch::Tensor images;
  // N on the device: int64 class ids for cross-entropy, float32 otherwise.
  torch::Tensor labels;
};

// One copy of the examples to the device (pixels as bytes, converted there).
DataTensors ToTensors(const Dataset& data, const torch::Device& device, Loss loss) {
  DataTensors out;
  torch::Tensor targets;
  if (data.tabular) {
    auto* features = const_cast<float*>(data.features.data());  // from_blob is only read from
    out.images = torch::from_blob(features, {data.size(), data.cols}, torch::kFloat32).to(device);
    targets =
        torch::from_blob(const_cast<float*>(data.targets.data()), {data.size()}, torch::kFloat32);
  } else {
    auto* pixels = const_cast<uint8_t*>(data.images.data());
    torch::Tensor images =
        torch::from_blob(pixels, {data.size(), 1, data.rows, data.cols}, torch::kUInt8);
    out.images = images.to(device).to(torch::kFloat32).div_(255.0);
    targets =
        torch::from_blob(const_cast<uint8_t*>(data.labels.data()), {data.size()}, torch::kUInt8);
  }
  out.labels = targets.to(device).to(loss == Loss::kCrossEntropy ? torch::kInt64 : torch::kFloat32);
  // from_blob tensors alias `data`: copy when the device is the CPU and no conversion copied.
  if (out.images.data_ptr() == static_cast<const void*>(data.features.data())) {
    out.images = out.images.clone();
  }
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
               const TrainerOptions& options, bool builtin)
      : device_(device),
        net_(std::move(net)),
        layout_(std::move(layout)),
        model_(options.model),
        script_file_(options.script_file),
        task_(options.task),
        builtin_(builtin),
        group_owner_(options.group),
        group_(dynamic_cast<internal::TorchGroup*>(group_owner_.get())) {
    for (auto& [name, tensor] : net_->Weights()) params_.push_back(tensor);
    state_ = params_;
    for (auto& [name, tensor] : net_->AveragedBuffers()) state_.push_back(tensor);
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
      for (size_t i = 0; i < state_.size(); ++i) {
        auto* src = const_cast<float*>(global.values.data() + layout_.Offset(i));
        state_[i].copy_(torch::from_blob(src, state_[i].sizes(), torch::kFloat32));
      }
      // On a GPU the global model stays there too, for UpdateOnDevice.
      if (device_.is_cuda()) global_on_device_ = internal::Flatten(state_).clone();
      return absl::OkStatus();
    });
  }

  StatusOr<Model> GetWeights() override {
    return CatchTorch("reading model weights", [&]() -> StatusOr<Model> {
      Model out;
      out.layout = layout_;
      out.values.resize(layout_.TotalElements());
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < state_.size(); ++i) {
        torch::Tensor cpu = state_[i].detach().to(torch::kCPU).contiguous();
        std::memcpy(out.values.data() + layout_.Offset(i), cpu.data_ptr<float>(),
                    sizeof(float) * cpu.numel());
      }
      return out;
    });
  }

  Status WeightsMinus(std::vector<float>* base) override {
    if (base->size() != static_cast<size_t>(layout_.TotalElements())) {
      return absl::InvalidArgumentError(
          absl::StrCat("the model has ", layout_.TotalElements(), " values, not ", base->size()));
    }
    return CatchTorch("reading model weights", [&]() -> Status {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < state_.size(); ++i) {
        const torch::Tensor cpu = state_[i].detach().to(torch::kCPU).contiguous();
        const float* w = cpu.data_ptr<float>();
        float* b = base->data() + layout_.Offset(i);
        for (int64_t j = 0; j < cpu.numel(); ++j) b[j] = w[j] - b[j];
      }
      return absl::OkStatus();
    });
  }

  StatusOr<TrainResult> Train(const Dataset& data, const TrainSettings& settings) override {
    RETURN_IF_ERROR(Annotate(CheckSettings(settings), "training settings"));
    RETURN_IF_ERROR(Annotate(CheckData(data, builtin_, task_), "training data"));
    if (group_ != nullptr) RETURN_IF_ERROR(StartDataParallel(settings));
    return CatchTorch("training", [&]() { return TrainChecked(data, settings); });
  }

  StatusOr<EvalResult> Evaluate(const Dataset& data) override {
    RETURN_IF_ERROR(Annotate(CheckData(data, builtin_, task_), "evaluation data"));
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
      update_on_device_ = (internal::Flatten(state_) - global_on_device_).contiguous();
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
                                      {"script_file", script_file_},
                                      {"task_kind", TaskKindName(task_.kind)},
                                      {"loss", LossName(task_.loss)},
                                      {"buffers", BuffersName(task_.buffers)},
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
      torch::Tensor flat = internal::Flatten(state_);
      group_->Broadcast(flat);
      internal::Unflatten(flat, state_);
      return absl::OkStatus();
    });
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
    torch::Tensor flat = internal::Flatten(grads);
    group_->AllReduceSum(flat);
    internal::Unflatten(flat, grads);
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
    DataTensors tensors = ToTensors(data, device_, task_.loss);
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
    torch::optim::SGD optimizer(params_, torch::optim::SGDOptions(s.learning_rate)
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
      internal::DpSgd dp_sgd(*net_, params_, task_.loss, device_, group_);
      RETURN_IF_ERROR(dp_sgd.Train(tensors.images, tensors.labels, s.dp, step, &result));
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
          torch::Tensor loss = internal::SummedLoss(task_.loss, net_->forward(x), y);
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

  StatusOr<EvalResult> EvaluateChecked(const Dataset& data) {
    const auto start = std::chrono::steady_clock::now();
    torch::NoGradGuard no_grad;
    net_->eval();
    const DataTensors tensors = ToTensors(data, device_, task_.loss);
    const int64_t n = data.size();
    torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().device(device_));
    std::vector<torch::Tensor> outputs;  // per batch, on the device
    for (int64_t begin = 0; begin < n; begin += kEvalBatch) {
      const int64_t end = std::min(n, begin + kEvalBatch);
      torch::Tensor output = net_->forward(tensors.images.slice(0, begin, end));
      loss_sum += internal::SummedLoss(task_.loss, output, tensors.labels.slice(0, begin, end));
      outputs.push_back(std::move(output));
    }
    EvalResult result;
    result.num_examples = n;
    result.loss = loss_sum.item<double>() / static_cast<double>(n);
    const torch::Tensor output = torch::cat(outputs);
    if (task_.kind == TaskKind::kRegression) {
      RETURN_IF_ERROR(AddRegression(output, tensors.labels, &result));
    } else {
      RETURN_IF_ERROR(AddClassification(output, tensors.labels, &result));
    }
    result.seconds = SecondsSince(start);
    return result;
  }

  // Accuracy and the confusion matrix from the arg-max logit (binary with one logit: score >=
  // 0.5); for a binary task also the histograms of the positive class's score.
  Status AddClassification(const torch::Tensor& output, const torch::Tensor& labels,
                           EvalResult* result) {
    const int64_t n = labels.size(0);
    const torch::Tensor truth = labels.to(torch::kInt64);
    torch::Tensor predicted, score;
    int64_t classes = output.dim() == 2 ? output.size(1) : 1;
    if (classes == 1) {  // one logit: BCE with logits
      score = torch::sigmoid(output.reshape({n}));
      predicted = score.ge(0.5).to(torch::kInt64);
      classes = 2;
    } else {
      predicted = output.argmax(1);
      if (task_.kind == TaskKind::kBinary) score = torch::softmax(output, 1).select(1, 1);
    }
    if (task_.kind == TaskKind::kBinary && classes != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("a binary model outputs one logit or two; this one outputs ", classes));
    }
    const int64_t top = truth.max().item<int64_t>();
    if (top >= classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("the data has label ", top, " but the model outputs ", classes, " classes"));
    }
    result->accuracy =
        static_cast<double>(predicted.eq(truth).sum().item<int64_t>()) / static_cast<double>(n);
    result->classes = static_cast<int>(classes);
    result->confusion =
        ToCounts(torch::bincount(truth * classes + predicted, {}, classes * classes));
    if (score.defined()) {
      // Bins of [0, 1] as metrics.h's ScoreHistogram counts them, the last bin closed.
      const int64_t bins = kScoreBins;
      const torch::Tensor bin = (score * bins).floor().clamp(0, bins - 1).to(torch::kInt64);
      const torch::Tensor positive = truth.eq(1);
      result->positive_scores = ToCounts(torch::bincount(bin.masked_select(positive), {}, bins));
      result->negative_scores =
          ToCounts(torch::bincount(bin.masked_select(positive.logical_not()), {}, bins));
    }
    return absl::OkStatus();
  }

  Status AddRegression(const torch::Tensor& output, const torch::Tensor& targets,
                       EvalResult* result) {
    const int64_t n = targets.size(0);
    if (output.numel() != n) {
      return absl::InvalidArgumentError(
          absl::StrCat("a regression model outputs one value per example; this one outputs ",
                       output.numel(), " for ", n));
    }
    const torch::Tensor prediction = output.reshape({n}).to(torch::kFloat64);
    const torch::Tensor target = targets.to(torch::kFloat64);
    const torch::Tensor error = prediction - target;
    RegressionSums& r = result->regression;
    r.count = n;
    r.squared_error = error.pow(2).sum().item<double>();
    r.absolute_error = error.abs().sum().item<double>();
    r.target = target.sum().item<double>();
    r.target_squared = target.pow(2).sum().item<double>();
    return absl::OkStatus();
  }

  static std::vector<int64_t> ToCounts(const torch::Tensor& counts) {
    const torch::Tensor host = counts.to(torch::kCPU).to(torch::kInt64).contiguous();
    return std::vector<int64_t>(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + host.numel());
  }

  torch::Device device_;
  std::shared_ptr<internal::TorchNet> net_;
  ModelLayout layout_;
  std::string model_;
  std::string script_file_;
  Task task_;
  bool builtin_;  // a built-in architecture (false: a study's TorchScript model)
  std::shared_ptr<DataParallelGroup> group_owner_;
  internal::TorchGroup* group_;        // group_owner_ as the torch side sees it; null: alone
  std::vector<torch::Tensor> params_;  // the trained parameters, in layout_ order
  std::vector<torch::Tensor> state_;   // params_, then the averaged buffers: all of layout_
  torch::Tensor global_on_device_;     // CUDA only: the weights of the last SetWeights, flat
  torch::Tensor update_on_device_;     // CUDA only: what UpdateOnDevice returned last
};

// The module's own tensors in layout order: the parameters, then the averaged buffers.
ModelLayout LayoutOf(internal::TorchNet& net) {
  std::vector<TensorSpec> tensors;
  internal::TorchNet::Named named = net.Weights();
  for (auto& buffer : net.AveragedBuffers()) named.push_back(std::move(buffer));
  for (const auto& [name, t] : named) {
    tensors.push_back(
        {name, DType::kF32, std::vector<int64_t>(t.sizes().begin(), t.sizes().end())});
  }
  return ModelLayout(std::move(tensors));
}

// A study's TorchScript model: the file's bytes must have the hash its name pins, and those
// very bytes are what LibTorch loads (the file is read once).
StatusOr<std::shared_ptr<internal::TorchNet>> LoadPinnedScript(const TrainerOptions& options) {
  std::string pinned;
  if (!IsScriptModelName(options.model, &pinned)) {
    return absl::InvalidArgumentError(absl::StrCat("model '", options.model,
                                                   "' names no built-in model and no TorchScript "
                                                   "file (\"sha256:<64 hex digits>\")"));
  }
  if (options.script_file.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", options.model, "' is a TorchScript file this site does not have"));
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(options.script_file, kMaxScriptBytes));
  const std::string actual = ToHex(Sha256(bytes));
  if (actual != pinned) {
    return absl::FailedPreconditionError(absl::StrCat(options.script_file, " has SHA-256 ", actual,
                                                      ", not the ", pinned, " its model names"));
  }
  return internal::LoadScriptNet(bytes, options.script_file, options.task.buffers);
}

StatusOr<std::unique_ptr<Trainer>> CreateChecked(const TrainerOptions& options) {
  ASSIGN_OR_RETURN(torch::Device device, ChooseDevice(options.device));
  const bool builtin = !IsScriptModelName(options.model);
  std::shared_ptr<internal::TorchNet> net;
  ModelLayout layout;
  if (builtin) {
    if (!(options.task == Task{})) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the built-in model '", options.model,
          "' is a multiclass classifier on cross-entropy; "
          "a ",
          std::string(TaskKindName(options.task.kind)), " task needs a TorchScript model"));
    }
    ASSIGN_OR_RETURN(layout, BuiltinModelLayout(options.model));
    ASSIGN_OR_RETURN(net, internal::CreateTorchNet(options.model));
    Status same = LayoutOf(*net).CheckSameAs(layout);
    if (!same.ok()) {
      return absl::InternalError(absl::StrCat("LibTorch module of '", options.model,
                                              "' disagrees with its layout: ", same.message()));
    }
  } else {
    ASSIGN_OR_RETURN(net, LoadPinnedScript(options));
    layout = LayoutOf(*net);
  }
  if (device.is_cpu()) {
    // 0: the cores this process may use (its affinity and cgroup quota), not the machine's.
    torch::set_num_threads(options.threads > 0 ? options.threads : UsableCores());
  }
  net->to(device);
  if (options.group != nullptr &&
      dynamic_cast<internal::TorchGroup*>(options.group.get()) == nullptr) {
    return absl::InvalidArgumentError(
        "the data-parallel group was not made by JoinDataParallelGroup");
  }
  auto trainer =
      std::make_unique<TorchTrainer>(device, std::move(net), std::move(layout), options, builtin);
  if (builtin) {
    // Start from defined weights rather than whatever torch's global generator produced. A
    // TorchScript model starts from the weights in its file.
    ASSIGN_OR_RETURN(Model initial, InitialModel(options.model, 0));
    RETURN_IF_ERROR(trainer->SetWeights(initial));
  }
  return std::unique_ptr<Trainer>(std::move(trainer));
}

}  // namespace

int CudaDeviceCount() {
  return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
}

Trainer::~Trainer() = default;

StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainerOptions& options) {
  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("threads = ", options.threads, " must be >= 0 (0 = one per CPU core)"));
  }
  return CatchTorch("creating trainer", [&]() { return CreateChecked(options); });
}

}  // namespace hansa

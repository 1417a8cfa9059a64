// DP-SGD on LibTorch (see dp_sgd.h): Poisson sampling from a secret source, per-example
// gradients clipped in micro-batches, Gaussian noise added once per step.
#include "client/train/dp_sgd.h"

#include <torch/autograd.h>
#include <torch/nn/functional.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/privacy/central_gaussian.h"

namespace hansa::internal {
namespace {

namespace F = torch::nn::functional;

constexpr int64_t kMaxDpSteps = 1 << 24;
// DP-SGD computes per-example gradients this many examples at a time, bounding its memory
// (a convolution's unfolded input is examples x Cin k^2 x H' W' values).
constexpr int64_t kDpMicroBatch = 128;
// Added to a gradient's norm before dividing by it: a zero gradient is then left as it is.
constexpr double kNormEpsilon = 1e-6;

}  // namespace

Status CheckRecordDpSettings(const RecordDpSettings& dp) {
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

DpSgd::DpSgd(TorchNet& net, std::vector<torch::Tensor>& params, Loss loss, torch::Device device,
             TorchGroup* group)
    : net_(net), params_(params), loss_(loss), device_(device), group_(group) {}

Status DpSgd::Train(const torch::Tensor& images, const torch::Tensor& labels,
                    const RecordDpSettings& dp, absl::FunctionRef<void()> step,
                    TrainResult* result) {
  CryptoUniformSource crypto;
  UniformSource& random = dp.randomness ? *dp.randomness : crypto;
  const int64_t n = labels.size(0);
  const bool batched = !dp.per_example_loop && TracesCoverParameters(images);
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
      torch::Tensor x = images.index_select(0, index);
      torch::Tensor y = labels.index_select(0, index);
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
    return absl::InternalError(
        absl::StrCat("DP-SGD diverged: mean loss is ", result->loss, "; lower the learning rate"));
  }
  return absl::OkStatus();
}

torch::Tensor DpSgd::GaussianNoise(c10::IntArrayRef sizes, double stddev, UniformSource& random) {
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

int DpSgd::ParameterIndex(const torch::Tensor& tensor) const {
  if (!tensor.defined()) return -1;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].unsafeGetTensorImpl() == tensor.unsafeGetTensorImpl()) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

bool DpSgd::TracesCoverParameters(const torch::Tensor& images) {
  std::vector<LayerTrace> trace;
  net_.Forward(images.slice(0, 0, 1), &trace);
  std::vector<int> seen(params_.size(), 0);
  for (const auto& layer : trace) {
    for (const torch::Tensor* p : {&layer.weight, &layer.bias}) {
      const int i = ParameterIndex(*p);
      if (i >= 0) ++seen[i];
      if (p->defined() && i < 0) return false;
    }
    if (layer.kind == LayerTrace::Kind::kLinear && layer.input.dim() != 2) return false;
  }
  return std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; });
}

// One backward pass for the batch: a linear layer's per-example weight gradient is g_i a_i^T
// (its norm |g_i| |a_i| needs no outer product), a convolution's is g_i unfold(a_i)^T, where a
// is the layer's input and g the loss's gradient with respect to its output.
double DpSgd::AddClippedGradientsBatched(const torch::Tensor& x, const torch::Tensor& y,
                                         double clip, std::vector<torch::Tensor>& sums) {
  using Kind = LayerTrace::Kind;
  std::vector<LayerTrace> trace;
  torch::Tensor loss = SummedLoss(loss_, net_.Forward(x, &trace), y);
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
      weight_sum += (per_example[l] * factor.view({batch, 1, 1})).sum(0).view(layer.weight.sizes());
      if (layer.bias.defined()) {
        sums[ParameterIndex(layer.bias)] += (g[l].sum(2) * factor.unsqueeze(1)).sum(0);
      }
    }
  }
  return loss.item<double>();
}

double DpSgd::AddClippedGradientsLoop(const torch::Tensor& x, const torch::Tensor& y, double clip,
                                      std::vector<torch::Tensor>& sums) {
  double loss_sum = 0;
  for (int64_t i = 0; i < x.size(0); ++i) {
    torch::Tensor loss =
        SummedLoss(loss_, net_.forward(x.slice(0, i, i + 1)), y.slice(0, i, i + 1));
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

}  // namespace hansa::internal

// Training throughput of the built-in models on CPU, in examples per second, over real
// Fashion-MNIST examples. The demo's budget is set by these numbers: 3 sites x 20,000 examples
// per round on 2 cores. Arguments: threads, batch size.
//
//   trainer_bench --benchmark_format=json
//
// BM_TrainDpSgd measures record-level DP-SGD (per-example gradients, clipping, noise) on the
// same examples, for the slowdown against BM_Train.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "client/data.h"
#include "client/train/trainer.h"

namespace hansa {
namespace {

constexpr int64_t kExamples = 2000;

const Dataset& TrainingData() {
  static const Dataset* data = [] {
    StatusOr<Dataset> train = LoadMnistStyle(kFashionMnistDir, Split::kTrain);
    if (!train.ok()) {
      std::fprintf(stderr, "trainer_bench: %s\n", std::string(train.status().message()).c_str());
      std::exit(1);
    }
    return new Dataset(*Shard(*train, 0, 60000 / kExamples));
  }();
  return *data;
}

// A CPU trainer holding InitialModel(model, 1); null, with the benchmark skipped, when that
// fails.
std::unique_ptr<Trainer> MakeTrainer(benchmark::State& state, const std::string& model,
                                     int threads) {
  StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(TrainerOptions{model, "cpu", threads});
  if (!trainer.ok() || !(*trainer)->SetWeights(*InitialModel(model, 1)).ok()) {
    state.SkipWithError("cannot create trainer");
    return nullptr;
  }
  return *std::move(trainer);
}

void BM_Train(benchmark::State& state, const std::string& model) {
  const int threads = static_cast<int>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  std::unique_ptr<Trainer> trainer = MakeTrainer(state, model, threads);
  if (!trainer) return;
  const Dataset& data = TrainingData();
  TrainSettings settings{1,   batch, 0.01,
                         0.9, 1e-4,  1};  // epochs, batch, lr, momentum, weight decay, seed
  for (auto _ : state) {
    StatusOr<TrainResult> result = trainer->Train(data, settings);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      return;
    }
  }
  state.counters["examples_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * data.size()), benchmark::Counter::kIsRate);
  state.counters["threads"] = threads;
  state.counters["batch"] = batch;
}

void BM_Evaluate(benchmark::State& state, const std::string& model) {
  StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(TrainerOptions{model, "cpu", static_cast<int>(state.range(0))});
  if (!trainer.ok()) {
    state.SkipWithError("cannot create trainer");
    return;
  }
  const Dataset& data = TrainingData();
  for (auto _ : state) {
    if (!(*trainer)->Evaluate(data).ok()) {
      state.SkipWithError("evaluation failed");
      return;
    }
  }
  state.counters["examples_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * data.size()), benchmark::Counter::kIsRate);
}

// DP-SGD over the same examples: one epoch's worth of Poisson-sampled steps (q = batch / n),
// per-example gradients clipped and noised. Arguments: threads, expected batch, and 0 for the
// batched per-example gradients or 1 for the one-backward-pass-per-example fallback. Divide
// BM_Train's examples_per_s by this one's for the slowdown against non-private training.
void BM_TrainDpSgd(benchmark::State& state, const std::string& model) {
  const int threads = static_cast<int>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  std::unique_ptr<Trainer> trainer = MakeTrainer(state, model, threads);
  if (!trainer) return;
  const Dataset& data = TrainingData();
  TrainSettings settings;
  settings.learning_rate = 0.05;
  settings.dp.clip_norm = 1.0;
  settings.dp.noise_multiplier = 1.0;
  settings.dp.sampling_rate = static_cast<double>(batch) / static_cast<double>(data.size());
  settings.dp.steps = data.size() / batch;
  settings.dp.per_example_loop = state.range(2) != 0;
  int64_t examples = 0;
  for (auto _ : state) {
    StatusOr<TrainResult> result = trainer->Train(data, settings);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      return;
    }
    examples += result->examples_seen;
  }
  state.counters["examples_per_s"] =
      benchmark::Counter(static_cast<double>(examples), benchmark::Counter::kIsRate);
  state.counters["threads"] = threads;
  state.counters["batch"] = batch;
  state.counters["per_example_loop"] = static_cast<double>(state.range(2));
}

BENCHMARK_CAPTURE(BM_Train, simple_cnn, std::string("simple_cnn"))
    ->ArgsProduct({{1, 2}, {32, 64}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, cnn_fedavg, std::string("cnn_fedavg"))
    ->ArgsProduct({{1, 2}, {32}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, simple_cnn_b256, std::string("simple_cnn"))
    ->ArgsProduct({{2}, {256}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_TrainDpSgd, simple_cnn, std::string("simple_cnn"))
    ->ArgsProduct({{2}, {64, 256}, {0}})
    ->Args({2, 64, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_TrainDpSgd, cnn_fedavg, std::string("cnn_fedavg"))
    ->Args({2, 32, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, mlp, std::string("mlp"))
    ->ArgsProduct({{2}, {64}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_TrainDpSgd, mlp, std::string("mlp"))
    ->Args({2, 64, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Evaluate, simple_cnn, std::string("simple_cnn"))
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace hansa

BENCHMARK_MAIN();

// Training throughput of the built-in models on CPU, in examples per second, over real
// Fashion-MNIST examples. The demo's budget is set by these numbers: 3 sites x 20,000 examples
// per round on 2 cores. Arguments: threads, batch size.
//
//   trainer_bench --benchmark_format=json
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "client/data.h"
#include "client/trainer.h"

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

void BM_Train(benchmark::State& state, const std::string& model) {
  const int threads = static_cast<int>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(TrainerOptions{model, "cpu", threads});
  if (!trainer.ok() || !(*trainer)->SetWeights(*InitialModel(model, 1)).ok()) {
    state.SkipWithError("cannot create trainer");
    return;
  }
  const Dataset& data = TrainingData();
  TrainSettings settings{1,   batch, 0.01,
                         0.9, 1e-4,  1};  // epochs, batch, lr, momentum, weight decay, seed
  for (auto _ : state) {
    StatusOr<TrainResult> result = (*trainer)->Train(data, settings);
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

BENCHMARK_CAPTURE(BM_Train, simple_cnn, std::string("simple_cnn"))
    ->ArgsProduct({{1, 2}, {32, 64}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, cnn_fedavg, std::string("cnn_fedavg"))
    ->ArgsProduct({{1, 2}, {32}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Evaluate, simple_cnn, std::string("simple_cnn"))
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace hansa

BENCHMARK_MAIN();

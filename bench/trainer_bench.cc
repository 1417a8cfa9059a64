// Training throughput of the built-in models on CPU, in examples per second, over real
// Fashion-MNIST examples. The demo's budget is set by these numbers: 3 sites x 20,000 examples
// per round on 2 cores. Arguments: threads, batch size.
//
//   trainer_bench --benchmark_format=json
//
// BM_TrainDpSgd measures record-level DP-SGD (per-example gradients, clipping, noise) on the
// same examples, for the slowdown against BM_Train.
//
// BM_TrainMlpPair/builtin and BM_TrainMlpPair/torchscript train the same architecture (784 -> 200
// -> 10, ReLU) from the same weights with the same settings, once as the built-in "mlp" and once as
// a TorchScript module built in C++ (SaveTorchScriptMlp): the ratio of their examples_per_s is what
// a study's own model costs against a built-in one (issue 15 asks >= 0.9).
//
//   trainer_bench --benchmark_filter=BM_TrainMlpPair --benchmark_format=json
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "client/data.h"
#include "client/train/torchscript.h"
#include "client/train/trainer.h"
#include "common/model/task.h"

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

TrainerOptions CpuOptions(const std::string& model, int threads) {
  TrainerOptions options;
  options.model = model;
  options.device = "cpu";
  options.threads = threads;
  return options;
}

// A CPU trainer holding InitialModel(model, 1); null, with the benchmark skipped, when that
// fails.
std::unique_ptr<Trainer> MakeTrainer(benchmark::State& state, const std::string& model,
                                     int threads) {
  StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(CpuOptions(model, threads));
  if (!trainer.ok() || !(*trainer)->SetWeights(*InitialModel(model, 1)).ok()) {
    state.SkipWithError("cannot create trainer");
    return nullptr;
  }
  return *std::move(trainer);
}

// The TorchScript twin of the built-in "mlp", written once per process to a temporary file
// (removed at exit); its TrainerOptions name it by hash. Null when it cannot be written.
const TrainerOptions* ScriptMlpOptions() {
  static const TrainerOptions* options = []() -> const TrainerOptions* {
    static const std::string path = (std::filesystem::temp_directory_path() /
                                     ("trainer_bench_mlp_" + std::to_string(::getpid()) + ".pt"))
                                        .string();
    Status saved = SaveTorchScriptMlp(path, 784, 200, 10, /*seed=*/1);
    StatusOr<TorchScriptInfo> info =
        saved.ok() ? InspectTorchScript(path) : StatusOr<TorchScriptInfo>(saved);
    if (!info.ok()) {
      std::fprintf(stderr, "trainer_bench: %s\n", std::string(info.status().message()).c_str());
      return nullptr;
    }
    std::atexit([] { std::filesystem::remove(path); });
    auto* o = new TrainerOptions(CpuOptions(ScriptModelName(info->sha256), 0));
    o->script_file = path;
    return o;
  }();
  return options;
}

// One epoch of plain SGD with momentum (the demo's settings).
TrainSettings EpochSettings(int batch) {
  TrainSettings settings;
  settings.epochs = 1;
  settings.batch_size = batch;
  settings.learning_rate = 0.01;
  settings.momentum = 0.9;
  settings.weight_decay = 1e-4;
  settings.seed = 1;
  return settings;
}

// Trains `trainer` for one epoch per iteration and reports examples per second. With `start`,
// every epoch starts from those weights (set outside the timing).
void TrainEpochs(benchmark::State& state, Trainer& trainer, int threads, int batch,
                 const Model* start = nullptr) {
  const Dataset& data = TrainingData();
  const TrainSettings settings = EpochSettings(batch);
  double loss = 0;
  for (auto _ : state) {
    if (start != nullptr) {
      state.PauseTiming();
      Status set = trainer.SetWeights(*start);
      state.ResumeTiming();
      if (!set.ok()) {
        state.SkipWithError(std::string(set.message()).c_str());
        return;
      }
    }
    StatusOr<TrainResult> result = trainer.Train(data, settings);
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      return;
    }
    loss = result->loss;
  }
  state.counters["examples_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * data.size()), benchmark::Counter::kIsRate);
  state.counters["threads"] = threads;
  state.counters["batch"] = batch;
  state.counters["epoch_loss"] = loss;
}

void BM_Train(benchmark::State& state, const std::string& model) {
  const int threads = static_cast<int>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  std::unique_ptr<Trainer> trainer = MakeTrainer(state, model, threads);
  if (!trainer) return;
  TrainEpochs(state, *trainer, threads, batch);
}

// The built-in "mlp" (script = false) or its TorchScript twin (true), every epoch from
// InitialModel("mlp", 1) (the same names and shapes), so that both run the same arithmetic:
// their epoch_loss agrees to float rounding.
void BM_TrainMlpPair(benchmark::State& state, bool script) {
  const int threads = static_cast<int>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  TrainerOptions options = CpuOptions("mlp", threads);
  if (script) {
    const TrainerOptions* written = ScriptMlpOptions();
    if (written == nullptr) {
      state.SkipWithError("cannot write the TorchScript MLP");
      return;
    }
    options = *written;
    options.threads = threads;
  }
  StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(options);
  if (!trainer.ok()) {
    state.SkipWithError(std::string(trainer.status().message()).c_str());
    return;
  }
  const Model start = *InitialModel("mlp", 1);
  TrainEpochs(state, **trainer, threads, batch, &start);
}

void BM_Evaluate(benchmark::State& state, const std::string& model) {
  StatusOr<std::unique_ptr<Trainer>> trainer =
      Trainer::Create(CpuOptions(model, static_cast<int>(state.range(0))));
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
// The pair: divide torchscript's examples_per_s by builtin's at the same arguments.
BENCHMARK_CAPTURE(BM_TrainMlpPair, builtin, false)
    ->ArgsProduct({{1, 2}, {64}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_TrainMlpPair, torchscript, true)
    ->ArgsProduct({{1, 2}, {64}})
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

// The simulator's own cost per round, everything but training: one-round engine creation,
// downloads and streamed uploads of every site through the RoundEngine, the strategy's server
// step, metrics and checkpoint files. Training and evaluation are a no-op stand-in, so the
// time is pure overhead. Arguments: sites, model (0 = simple_cnn, 1 = cnn_fedavg). The
// fedavg_secure runs add secure aggregation: every virtual site's key exchange, encoding and
// masking (one pairwise mask per other site up to 32 sites, then the SecAgg+ graph) and the
// engine's unmasking. The *_grpc runs put the sites on real gRPC with mutual TLS 1.3 on
// 127.0.0.1 (transport = "grpc"): a server per round, a TLS connection per site and round,
// every message through protobuf and the kernel's loopback.
//
//   simulate_bench --benchmark_format=json
#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>

#include "common/model/models.h"
#include "sim/simulation.h"
#include "spdlog/spdlog.h"

namespace hansa {
namespace {

constexpr int64_t kRounds = 3;

// Returns the start weights unchanged plus a tiny constant; evaluation is free.
class NoTraining : public SimulationBackend {
 public:
  StatusOr<Model> Train(int, const Model& start, const std::vector<int64_t>& indices,
                        const TrainSettings&, TrainResult* result) override {
    Model out = start;
    out.values[0] += 1e-3f;
    result->num_examples = static_cast<int64_t>(indices.size());
    result->steps = 1;
    return out;
  }
  StatusOr<EvalResult> Evaluate(int, const Model&) override {
    EvalResult r;
    r.num_examples = 1;
    return r;
  }
};

void BM_SimulatorRoundOverhead(benchmark::State& state, const std::string& strategy,
                               bool secure = false, Transport transport = Transport::kInProcess) {
  spdlog::set_level(spdlog::level::warn);
  const int sites = static_cast<int>(state.range(0));
  const std::string model = state.range(1) == 0 ? "simple_cnn" : "cnn_fedavg";
  std::vector<uint8_t> labels(60000);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<uint8_t>(i % 10);
  SimulationConfig config;
  config.model = model;
  config.sites = sites;
  config.rounds = kRounds;
  config.strategy = *ParseStrategySpec(strategy);
  config.secure.enabled = secure;
  config.transport = transport;
  NoTraining backend;
  const std::string dir = std::filesystem::temp_directory_path().string() + "/simulate_bench";
  for (auto _ : state) {
    std::filesystem::remove_all(dir);
    StatusOr<RunResult> r = RunSimulation(config, labels, &backend, dir);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
  }
  std::filesystem::remove_all(dir);
  const double model_bytes = static_cast<double>(BuiltinModelLayout(model)->TotalElements()) * 4;
  state.counters["seconds_per_round"] =
      benchmark::Counter(static_cast<double>(state.iterations() * kRounds),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  // Bytes moved through the engine per second (each site downloads and uploads the model).
  state.counters["engine_bytes_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kRounds) * sites * 2 * model_bytes,
      benchmark::Counter::kIsRate);
  state.counters["sites"] = sites;
}

BENCHMARK_CAPTURE(BM_SimulatorRoundOverhead, fedavg, std::string("fedavg"))
    ->ArgsProduct({{10, 100}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_SimulatorRoundOverhead, fedavg_secure, std::string("fedavg"), true)
    ->ArgsProduct({{10, 100}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_SimulatorRoundOverhead, fedavg_grpc, std::string("fedavg"), false,
                  Transport::kGrpc)
    ->ArgsProduct({{10, 100}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_SimulatorRoundOverhead, fedavg_secure_grpc, std::string("fedavg"), true,
                  Transport::kGrpc)
    ->ArgsProduct({{10, 100}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_SimulatorRoundOverhead, scaffold, std::string("scaffold"))
    ->ArgsProduct({{10, 100}, {0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace hansa

BENCHMARK_MAIN();

// A site's time from the end of training to its masked upload's wire chunks, GPU path against
// CPU path, for an update of n floats (3 sites in the round, so 3 mask streams per element):
//   BM_MaskedUpload/cpu/N  the update copied from the device to the host (when there is a
//                          device: where a GPU site's trainer leaves it), then encoded and
//                          masked on one CPU core (common/secagg/masked_upload.h);
//   BM_MaskedUpload/gpu/N  quantized and masked on the device, only the masked chunks copied
//                          back through pinned buffers (cuda/masked_upload.h).
// Key sharing before each iteration is not timed. Counters: update_GBps (update bytes per
// second) and speedup (in the gpu rows: the cpu row's time over this row's, same N).
// Without a device only the cpu rows run, on an update in host memory.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <vector>

#include "common/secagg/local_round.h"
#include "common/secagg/masked_upload.h"
#include "cuda/device.h"
#include "cuda/masked_upload.h"

namespace hansa {
namespace {

constexpr uint32_t kSites = 3;
constexpr size_t kValuesPerChunk = (1 << 20) / 4;  // 1 MiB wire chunks, the plan's default

void Check(const Status& st) {
  if (!st.ok()) {
    std::fprintf(stderr, "upload_bench: %s\n", st.ToString().c_str());
    std::exit(1);
  }
}

std::map<size_t, double>& CpuSeconds() {
  static auto* m = new std::map<size_t, double>;
  return *m;
}

LocalRound SharedKeys(size_t n) {
  SecAggParams params;
  params.round = 1;
  params.num_sites = kSites;
  params.vector_length = Encoder::EncodedSize(n);
  params.round_seed = {9};
  auto round = LocalRound::Create(params);
  Check(round.status());
  Check(round->ExchangeKeys());
  return std::move(round).value();
}

void BM_MaskedUpload(benchmark::State& state, bool gpu) {
  const size_t n = static_cast<size_t>(state.range(0));
  const bool device = CudaDeviceAvailable();
  if (gpu && !device) {
    state.SkipWithError("no CUDA device");
    return;
  }
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  std::vector<float> host(n);
  for (float& x : host) x = normal(rng);
  DeviceBuffer<float> on_device;
  CudaStream stream;
  if (device) {
    auto s = CudaStream::Create();
    Check(s.status());
    stream = std::move(s).value();
    auto b = DeviceBuffer<float>::Allocate(n);
    Check(b.status());
    on_device = std::move(b).value();
    Check(on_device.CopyFromHost(host.data(), n, stream));
    Check(stream.Synchronize());
  }
  const EncodingParams params{1.0, DefaultQuantizationBits(kSites), static_cast<int>(kSites)};
  SecretBytes seed(std::string(32, 's'));
  std::vector<float> copied(n);
  double seconds = 0;
  for (auto _ : state) {
    state.PauseTiming();
    LocalRound round = SharedKeys(n);
    state.ResumeTiming();
    const auto start = std::chrono::steady_clock::now();
    StatusOr<std::vector<std::string>> chunks;
    if (gpu) {
      chunks = MaskUpdateOnDevice(round.site(1), params, seed, on_device.data(), n, 1.0,
                                  kValuesPerChunk);
    } else {
      const float* values = host.data();
      if (device) {
        Check(on_device.CopyToHost(copied.data(), n, stream));
        Check(stream.Synchronize());
        values = copied.data();
      }
      auto encoder = Encoder::CreateWithSeed(params, seed);
      Check(encoder.status());
      chunks =
          MaskUpdate(round.site(1), *encoder, encoder->ring(), values, n, 1.0, kValuesPerChunk);
    }
    Check(chunks.status());
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    benchmark::DoNotOptimize(chunks->data());
  }
  const double per_iteration = seconds / static_cast<double>(state.iterations());
  state.counters["update_GBps"] = static_cast<double>(n) * 4 / per_iteration / 1e9;
  if (!gpu) CpuSeconds()[n] = per_iteration;
  if (gpu && CpuSeconds().count(n) > 0) state.counters["speedup"] = CpuSeconds()[n] / per_iteration;
}

// cpu rows first: the gpu rows divide by their times.
BENCHMARK_CAPTURE(BM_MaskedUpload, cpu, false)
    ->Arg(1 << 18)
    ->Arg(1 << 22)
    ->Arg(1 << 24)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_MaskedUpload, gpu, true)
    ->Arg(1 << 18)
    ->Arg(1 << 22)
    ->Arg(1 << 24)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace hansa

BENCHMARK_MAIN();

// Kernel throughput on the GPU against the device's own ceilings (style habit 9):
//   BM_DeviceCopy   cudaMemcpy device to device: the measured memory-bandwidth ceiling,
//                   counted as bytes read + written.
//   BM_MaskAdd      a site's mask expansion fused with the add, 1 or 8 ChaCha20 streams.
//   BM_UnmaskSum    the coordinator: sum of 8 masked vectors, then 8 masks subtracted.
//   BM_Quantize, BM_L2Norm  the encoding steps before masking.
// Counters: data_GBps (vector bytes per second), memory_GBps (bytes read + written),
// keystream_GBps (ChaCha20 bytes generated), and chacha_bound_GBps, ChaCha20's arithmetic
// bound on keystream:
//   ops per 64-byte block = 20 rounds * 4 quarter-rounds * 12 (4 add, 4 xor, 4 rotate) + 16
//                           final adds = 976, i.e. 15.25 32-bit integer ops per byte;
//   bound = multiprocessors * SM clock * int32 ops per clock per SM / 15.25.
// The ops per clock per SM is 64 for compute capability 8.x/9.0 (CUDA programming guide,
// arithmetic instruction throughput: 32-bit add, logical, shift); override with the
// environment variable HANSA_INT_OPS_PER_CLK. Run with --benchmark_format=json.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "cuda/device.h"
#include "cuda/mask_kernels.h"

namespace hansa {
namespace {

constexpr double kOpsPerKeystreamByte = (20.0 * 4 * 12 + 16) / 64.0;

struct Context {
  CudaDeviceInfo info;
  CudaStream stream;
  CudaEvent start, stop;
  double chacha_bound_gbps = 0;
};

Context* Ctx() {
  static Context* ctx = [] {
    auto* c = new Context;
    auto info = GetCudaDeviceInfo();
    auto stream = CudaStream::Create();
    auto a = CudaEvent::Create();
    auto b = CudaEvent::Create();
    if (!info.ok() || !stream.ok() || !a.ok() || !b.ok()) return static_cast<Context*>(nullptr);
    c->info = *info;
    c->stream = std::move(stream).value();
    c->start = std::move(a).value();
    c->stop = std::move(b).value();
    double ops_per_clk = 64;
    if (const char* env = std::getenv("HANSA_INT_OPS_PER_CLK")) ops_per_clk = std::atof(env);
    c->chacha_bound_gbps = c->info.multiprocessors * (c->info.sm_clock_khz * 1e3) * ops_per_clk /
                           kOpsPerKeystreamByte / 1e9;
    return c;
  }();
  return ctx;
}

// Times `body` on the stream with events; returns false (and skips) on an error.
template <typename F>
bool TimeIteration(benchmark::State& state, F&& body) {
  Context* c = Ctx();
  Status st = c->start.Record(c->stream);
  if (st.ok()) st = body();
  if (st.ok()) st = c->stop.Record(c->stream);
  if (st.ok()) st = c->stop.Synchronize();
  StatusOr<float> ms = st.ok() ? CudaEvent::ElapsedMs(c->start, c->stop) : StatusOr<float>(st);
  if (!ms.ok()) {
    state.SkipWithError(std::string(ms.status().message()).c_str());
    return false;
  }
  state.SetIterationTime(*ms / 1e3);
  return true;
}

void SetCounters(benchmark::State& state, double data_bytes, double memory_bytes,
                 double keystream_bytes) {
  using benchmark::Counter;
  const double it = static_cast<double>(state.iterations());
  state.counters["data_GBps"] = Counter(data_bytes * it / 1e9, Counter::kIsRate);
  state.counters["memory_GBps"] = Counter(memory_bytes * it / 1e9, Counter::kIsRate);
  if (keystream_bytes > 0) {
    state.counters["keystream_GBps"] = Counter(keystream_bytes * it / 1e9, Counter::kIsRate);
    state.counters["chacha_bound_GBps"] = Ctx()->chacha_bound_gbps;
  }
  state.counters["peak_memory_GBps"] = Ctx()->info.PeakMemoryGBps();
  state.SetBytesProcessed(static_cast<int64_t>(data_bytes * it));
}

bool Ready(benchmark::State& state) {
  if (Ctx() == nullptr) {
    state.SkipWithError("no CUDA device");
    return false;
  }
  return true;
}

std::vector<SecretBytes> Keys(int n) {
  std::mt19937_64 rng(7);
  std::vector<SecretBytes> keys;
  for (int i = 0; i < n; ++i) {
    SecretBytes k(32);
    for (size_t j = 0; j < 32; ++j) k[j] = static_cast<uint8_t>(rng());
    keys.push_back(std::move(k));
  }
  return keys;
}

void BM_DeviceCopy(benchmark::State& state) {
  if (!Ready(state)) return;
  const size_t bytes = state.range(0);
  auto a = DeviceMemory::Allocate(bytes), b = DeviceMemory::Allocate(bytes);
  if (!a.ok() || !b.ok()) return state.SkipWithError("allocation failed");
  for (auto _ : state) {
    if (!TimeIteration(
            state, [&] { return CopyDeviceToDevice(b->get(), a->get(), bytes, Ctx()->stream); })) {
      return;
    }
  }
  SetCounters(state, bytes, 2.0 * bytes, 0);
}

template <typename W>
void BM_MaskAdd(benchmark::State& state) {
  if (!Ready(state)) return;
  const size_t bytes = state.range(0);
  const int num_streams = static_cast<int>(state.range(1));
  const size_t n = bytes / sizeof(W);
  auto data = DeviceBuffer<W>::Allocate(n);
  if (!data.ok()) return state.SkipWithError("allocation failed");
  std::vector<SecretBytes> keys = Keys(num_streams);
  std::vector<MaskStream> streams;
  for (auto& k : keys) streams.push_back({&k, {}, MaskOp::kAdd});
  for (auto _ : state) {
    if (!TimeIteration(state,
                       [&] { return ApplyMasks(streams, 0, data->data(), n, Ctx()->stream); })) {
      return;
    }
  }
  SetCounters(state, bytes, 2.0 * bytes, double(bytes) * num_streams);
}

template <typename W>
void BM_UnmaskSum(benchmark::State& state) {
  if (!Ready(state)) return;
  const size_t bytes = state.range(0);
  const int sites = static_cast<int>(state.range(1));
  const size_t n = bytes / sizeof(W);
  std::vector<DeviceBuffer<W>> inputs;
  std::vector<const W*> ptrs;
  for (int k = 0; k < sites; ++k) {
    auto b = DeviceBuffer<W>::Allocate(n);
    if (!b.ok()) return state.SkipWithError("allocation failed");
    inputs.push_back(std::move(b).value());
    ptrs.push_back(inputs.back().data());
  }
  auto acc = DeviceBuffer<W>::Allocate(n);
  if (!acc.ok()) return state.SkipWithError("allocation failed");
  std::vector<SecretBytes> keys = Keys(sites);
  std::vector<MaskStream> streams;
  for (auto& k : keys) streams.push_back({&k, {}, MaskOp::kSubtract});
  for (auto _ : state) {
    if (!TimeIteration(state, [&]() -> Status {
          RETURN_IF_ERROR(SumInto(acc->data(), ptrs, n, Ctx()->stream));
          return ApplyMasks(streams, 0, acc->data(), n, Ctx()->stream);
        })) {
      return;
    }
  }
  // Reads every input once and the accumulator twice, writes it twice.
  SetCounters(state, double(bytes) * sites, double(bytes) * (sites + 4), double(bytes) * sites);
}

template <typename W>
void BM_Quantize(benchmark::State& state) {
  if (!Ready(state)) return;
  const size_t n = state.range(0) / sizeof(float);
  auto in = DeviceBuffer<float>::Allocate(n);
  auto out = DeviceBuffer<W>::Allocate(n);
  if (!in.ok() || !out.ok()) return state.SkipWithError("allocation failed");
  if (!in->Zero(Ctx()->stream).ok()) return state.SkipWithError("memset failed");
  SecretBytes seed = Keys(1)[0];
  QuantizeParams q{1.0, sizeof(W) == 4 ? 16 : 40, 1.0, &seed, 0};
  for (auto _ : state) {
    if (!TimeIteration(state,
                       [&] { return Quantize(in->data(), n, q, out->data(), Ctx()->stream); })) {
      return;
    }
  }
  SetCounters(state, double(n) * 4, double(n) * (4 + sizeof(W)), double(n) * 4);
}

void BM_L2Norm(benchmark::State& state) {
  if (!Ready(state)) return;
  const size_t n = state.range(0) / sizeof(float);
  auto in = DeviceBuffer<float>::Allocate(n);
  if (!in.ok()) return state.SkipWithError("allocation failed");
  if (!in->Zero(Ctx()->stream).ok()) return state.SkipWithError("memset failed");
  for (auto _ : state) {
    if (!TimeIteration(state, [&] { return L2Norm(in->data(), n, Ctx()->stream).status(); })) {
      return;
    }
  }
  SetCounters(state, double(n) * 4, double(n) * 4, 0);
}

constexpr int64_t kMiB = 1 << 20;

BENCHMARK(BM_DeviceCopy)->Arg(64 * kMiB)->Arg(1024 * kMiB)->UseManualTime();
BENCHMARK(BM_MaskAdd<uint32_t>)->ArgsProduct({{64 * kMiB, 1024 * kMiB}, {1, 8}})->UseManualTime();
BENCHMARK(BM_MaskAdd<uint64_t>)->Args({1024 * kMiB, 1})->UseManualTime();
BENCHMARK(BM_UnmaskSum<uint32_t>)->Args({256 * kMiB, 8})->UseManualTime();
BENCHMARK(BM_UnmaskSum<uint64_t>)->Args({256 * kMiB, 8})->UseManualTime();
BENCHMARK(BM_Quantize<uint32_t>)->Arg(1024 * kMiB)->UseManualTime();
BENCHMARK(BM_L2Norm)->Arg(1024 * kMiB)->UseManualTime();

}  // namespace
}  // namespace hansa

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (hansa::Ctx() != nullptr) {
    const auto& i = hansa::Ctx()->info;
    benchmark::AddCustomContext("device", i.name);
    benchmark::AddCustomContext("multiprocessors", std::to_string(i.multiprocessors));
    benchmark::AddCustomContext("sm_clock_mhz", std::to_string(i.sm_clock_khz / 1000));
    benchmark::AddCustomContext("chacha_bound_GBps",
                                std::to_string(hansa::Ctx()->chacha_bound_gbps));
    benchmark::AddCustomContext("chacha_bound_formula",
                                "SMs * clock * int_ops_per_clk_per_SM / 15.25 ops per byte");
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

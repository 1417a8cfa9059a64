// Secure-aggregation speed against the machine's own ceilings, in one run:
//   - ChaCha20Keystream: plain OpenSSL keystream generation, single core: the ceiling for
//   - MaskAdd32/64: mask expansion + addition into a ring vector (aim >= 0.8 of the ceiling);
//   - MemcpyCeiling: single-core memory bandwidth, the ceiling for
//   - FoldChunk32: the coordinator's running modular sum of masked chunks (aim >= 0.5);
//   - UnmaskStreams: ten streams over a 40 MB sum, one pass per stream against ApplyMaskStreams
//     (one pass in cache-sized blocks), on one thread and on all of them;
//   - Encode32: clipping, weighting and stochastic rounding of a float update into the ring
//     (floats in per second; it runs before masking at every CPU site);
//   - DropoutRecovery: coordinator time to unmask n = 100 sites, m = 100,000 values, 10 %
//     dropped after sharing keys (Bonawitz et al. report ~62 s at n = 500; aim < 1 s).
//
//   secagg_bench --benchmark_format=json
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "common/crypto/chacha20.h"
#include "common/secagg/client.h"
#include "common/secagg/encoding.h"
#include "common/secagg/server.h"

namespace hansa {
namespace {

void Check(const Status& st) {
  if (!st.ok()) {
    std::fprintf(stderr, "secagg_bench: %s\n", st.ToString().c_str());
    std::exit(1);
  }
}

ChaCha20Prg MakePrg() {
  auto prg = ChaCha20Prg::Create(SecretBytes(std::string(32, 'k')), ChaCha20Nonce{});
  Check(prg.status());
  return std::move(*prg);
}

void BM_ChaCha20Keystream(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  ChaCha20Prg prg = MakePrg();
  std::vector<uint8_t> out(bytes);
  for (auto _ : state) {
    Check(prg.Keystream(0, out.data(), out.size()));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_ChaCha20Keystream)->Arg(1 << 16)->Arg(4 << 20);

template <typename Word>
void BM_MaskAdd(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  ChaCha20Prg prg = MakePrg();
  std::vector<Word> data(bytes / sizeof(Word), 1);
  for (auto _ : state) {
    Check(prg.ApplyMask(0, data.data(), data.size(), MaskOp::kAdd));
    benchmark::DoNotOptimize(data.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK_TEMPLATE(BM_MaskAdd, uint32_t)->Name("BM_MaskAdd32")->Arg(1 << 16)->Arg(4 << 20);
BENCHMARK_TEMPLATE(BM_MaskAdd, uint64_t)->Name("BM_MaskAdd64")->Arg(1 << 16)->Arg(4 << 20);

// The coordinator's unmasking without dropouts: 10 self-mask streams over a 10-million-value
// sum (40 MB), one ApplyMask per stream over the whole vector (arg 0) or ApplyMaskStreams with
// 1 or MaskThreads() threads (arg 1, 2). Bytes are keystream bytes: streams x vector.
void BM_UnmaskStreams(benchmark::State& state) {
  const size_t n = 10'000'000;
  const int mode = static_cast<int>(state.range(0));
  std::vector<SecretBytes> keys;
  for (int k = 0; k < 10; ++k) keys.emplace_back(std::string(32, static_cast<char>('a' + k)));
  std::vector<MaskStream> streams;
  for (const SecretBytes& k : keys) streams.push_back({&k, ChaCha20Nonce{}, MaskOp::kSubtract});
  std::vector<uint32_t> sum(n, 1);
  const int threads = mode == 2 ? MaskThreads() : 1;
  for (auto _ : state) {
    if (mode == 0) {
      for (const MaskStream& s : streams) {
        auto prg = ChaCha20Prg::Create(*s.key, s.nonce);
        Check(prg.status());
        Check(prg->ApplyMask(0, sum.data(), n, s.op));
      }
    } else {
      Check(ApplyMaskStreams(streams, 0, sum.data(), n, threads));
    }
    benchmark::DoNotOptimize(sum.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * 4 * streams.size()));
  state.counters["threads"] = threads;
}
BENCHMARK(BM_UnmaskStreams)
    ->ArgName("mode")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Bytes copied per second (read + write counted once, as `bytes` moved).
void BM_MemcpyCeiling(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> a(bytes, 1), b(bytes, 2);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_MemcpyCeiling)->Arg(64 << 20);

// The coordinator's fold: sum += chunk over a model larger than the caches (bytes of the
// incoming chunk per second).
void BM_FoldChunk32(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0)) / 4;
  RingVector sum = RingVector::Zeros(RingWidth::k32, n),
             chunk = RingVector::Zeros(RingWidth::k32, n);
  for (size_t i = 0; i < n; ++i) chunk.w32[i] = static_cast<uint32_t>(i * 2654435761u);
  for (auto _ : state) {
    Check(sum.AddInPlace(chunk));
    benchmark::DoNotOptimize(sum.w32.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * 4));
}
BENCHMARK(BM_FoldChunk32)->Arg(64 << 20);

// Encoding a 4 Mi-value update chunk by chunk, as MaskUpdate does (bytes of float input).
void BM_Encode32(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0)) / 4;
  std::vector<float> values(n);
  for (size_t i = 0; i < n; ++i) values[i] = 1e-4f * static_cast<float>(i % 200) - 0.01f;
  auto encoder = Encoder::CreateWithSeed(EncodingParams{1.0, 30, 3}, SecretBytes(32));
  Check(encoder.status());
  std::vector<uint32_t> out(n);
  for (auto _ : state) {
    Check(encoder->EncodeValues(values.data(), n, 0.025, out.data()));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * 4));
}
BENCHMARK(BM_Encode32)->Arg(16 << 20);

// A whole round up to the unmask stage, sites driven in-process (not timed), then the
// coordinator's unmask: share intake, reconstruction and mask removal (timed).
void BM_DropoutRecovery(benchmark::State& state) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  const uint64_t m = static_cast<uint64_t>(state.range(1));
  const uint32_t dropped = n / 10;
  SecAggParams params;
  params.round = 1;
  params.num_sites = n;
  params.vector_length = m;
  params.round_seed = {7};
  for (auto _ : state) {
    state.PauseTiming();
    auto server = ServerSession::Create(params);
    Check(server.status());
    std::vector<std::unique_ptr<ClientSession>> clients;
    for (SiteId id = 1; id <= n; ++id) {
      auto c = ClientSession::Create((*server)->params(), id, nullptr);
      Check(c.status());
      clients.push_back(std::move(*c));
      auto adv = clients.back()->Start();
      Check(adv.status());
      Check((*server)->OnAdvertiseKeys(*adv));
    }
    auto dir = (*server)->CloseAdvertiseKeys();
    Check(dir.status());
    for (auto& c : clients) {
      auto sk = c->OnKeyDirectory(*dir);
      Check(sk.status());
      Check((*server)->OnShareKeys(*sk));
    }
    auto deliveries = (*server)->CloseShareKeys();
    Check(deliveries.status());
    for (const ShareDelivery& d : *deliveries) {
      if (d.receiver <= dropped) continue;  // sites 1..n/10 vanish before uploading
      ClientSession& c = *clients[d.receiver - 1];
      Check(c.OnShareDelivery(d));
      auto chunk = c.MaskChunk(0, RingVector::Zeros(RingWidth::k32, m));
      Check(chunk.status());
      Check((*server)->OnMaskedInputChunk(*chunk));
    }
    Check((*server)->CloseMaskedInput().status());
    std::vector<UnmaskResponse> responses;
    auto request = (*server)->StartUnmask();
    Check(request.status());
    for (SiteId id = dropped + 1; id <= n; ++id) {
      auto r = clients[id - 1]->OnUnmaskRequest(*request);
      Check(r.status());
      responses.push_back(std::move(*r));
    }
    state.ResumeTiming();
    for (const UnmaskResponse& r : responses) Check((*server)->OnUnmaskResponse(r));
    auto result = (*server)->Finish();
    Check(result.status());
    benchmark::DoNotOptimize(result->sum.w32.data());
  }
  state.counters["sites"] = n;
  state.counters["values"] = static_cast<double>(m);
  state.counters["dropped"] = dropped;
}
BENCHMARK(BM_DropoutRecovery)
    ->Args({100, 100000})
    ->Iterations(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace hansa

BENCHMARK_MAIN();

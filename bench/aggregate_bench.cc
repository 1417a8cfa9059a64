// The coordinator's streaming weighted sum (coordinator/aggregator.h) against this machine's
// memory bandwidth, measured in the same run.
//
//   - MemoryTriad/threads:N   STREAM-style triad a = b + s*c over 256 MiB arrays of doubles,
//                             counted as STREAM counts it (24 bytes per element): the ceiling.
//   - Fold/contributors:N     N (1, 2 = the cores here, 3) threads each Begin, Fold (1 MiB chunks)
//   and Commit a 256 MiB
//                             float32 update into one StreamingAggregator; GB/s of update bytes
//                             folded, and `ratio_to_triad` = that over the triad figure for
//                             min(N, cores) threads.
//   - FoldPart/...            the pieces of one Fold, each alone on one core, so a poor Fold
//                             figure can be attributed: the finiteness scan, the spill-file
//                             write, and the weighted add into the double sum; then the three
//                             interleaved per chunk as Fold does them, without its locks.
//
// One folded float moves at least 20 bytes of memory (read 4, read and write the 8-byte double
// sum) plus 8 for the spill copy, so `ratio_to_triad` cannot reach 1; `traffic_ratio` counts
// those 20 bytes per value against the triad figure instead.
//
//   aggregate_bench --benchmark_format=json
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/tensor/tensor.h"
#include "coordinator/aggregator.h"

namespace hansa {
namespace {

constexpr int64_t kUpdateValues = int64_t{64} << 20;  // 256 MiB of float32
constexpr size_t kChunkValues = (size_t{1} << 20) / sizeof(float);
constexpr int64_t kTriadElements = int64_t{32} << 20;  // 256 MiB per double array
constexpr double kFoldTrafficBytesPerValue = 20.0;

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int Cores() { return std::max(1u, std::thread::hardware_concurrency()); }

void Die(const Status& st) {
  std::fprintf(stderr, "aggregate_bench: %s\n", st.ToString().c_str());
  std::exit(1);
}

const std::vector<float>& Update() {
  static const std::vector<float>* update = [] {
    auto* v = new std::vector<float>(static_cast<size_t>(kUpdateValues));
    for (size_t i = 0; i < v->size(); ++i) (*v)[i] = static_cast<float>(i % 1000) * 1e-3f - 0.5f;
    return v;
  }();
  return *update;
}

std::string SpillDir() {
  static const std::string dir = [] {
    std::string d = (std::filesystem::temp_directory_path() /
                     ("hansa-aggregate-bench-" + std::to_string(::getpid())))
                        .string();
    std::filesystem::create_directories(d);
    std::atexit([] { std::filesystem::remove_all(SpillDir()); });
    return d;
  }();
  return dir;
}

// One triad pass over [lo, hi).
void TriadRange(double* a, const double* b, const double* c, int64_t lo, int64_t hi) {
  const double s = 3.0;
  for (int64_t i = lo; i < hi; ++i) a[i] = b[i] + s * c[i];
}

// Best of five triad passes with `threads` threads, in GB/s (STREAM's 24 bytes per element).
// Each thread first-touches its own slice so pages are spread as they would be in use.
double MeasureTriad(int threads) {
  std::vector<double> a, b, c;
  a.resize(kTriadElements);
  b.resize(kTriadElements, 1.0);
  c.resize(kTriadElements, 2.0);
  double best = 0;
  for (int pass = 0; pass < 6; ++pass) {
    auto start = Clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      int64_t lo = kTriadElements * t / threads, hi = kTriadElements * (t + 1) / threads;
      workers.emplace_back(TriadRange, a.data(), b.data(), c.data(), lo, hi);
    }
    for (auto& w : workers) w.join();
    double gbps = 24.0 * kTriadElements / Seconds(start, Clock::now()) / 1e9;
    if (pass > 0) best = std::max(best, gbps);  // pass 0 pays the page faults of `a`
  }
  benchmark::DoNotOptimize(a.data());
  return best;
}

// The ceiling for `threads` threads, measured once per process.
double TriadCeiling(int threads) {
  static double cache[64] = {};
  threads = std::min(threads, 63);
  if (cache[threads] == 0) cache[threads] = MeasureTriad(threads);
  return cache[threads];
}

void BM_MemoryTriad(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  double gbps = 0;
  for (auto _ : state) gbps = MeasureTriad(threads);
  TriadCeiling(threads);  // keep the cache consistent with what was reported
  state.counters["GBps"] = gbps;
  state.counters["threads"] = threads;
}

// Folds the shared update into `aggregator` from one contributor, in 1 MiB chunks.
Status FoldOne(StreamingAggregator* aggregator, int id) {
  const std::vector<float>& update = Update();
  ASSIGN_OR_RETURN(auto contribution, aggregator->Begin("site" + std::to_string(id), 100.0 + id));
  for (size_t first = 0; first < update.size(); first += kChunkValues) {
    size_t count = std::min(kChunkValues, update.size() - first);
    RETURN_IF_ERROR(contribution->Fold(static_cast<int64_t>(first), update.data() + first, count));
  }
  return contribution->Commit();
}

void BM_Fold(benchmark::State& state) {
  const int contributors = static_cast<int>(state.range(0));
  const int threads_for_ceiling = std::min(contributors, Cores());
  const double ceiling = TriadCeiling(threads_for_ceiling);
  Update();
  StreamingAggregator aggregator(kUpdateValues, SpillDir());
  double seconds = 0;
  for (auto _ : state) {
    auto start = Clock::now();
    std::vector<std::thread> workers;
    std::vector<Status> results(contributors);
    for (int i = 0; i < contributors; ++i) {
      workers.emplace_back([&, i] { results[i] = FoldOne(&aggregator, i); });
    }
    for (auto& w : workers) w.join();
    seconds += Seconds(start, Clock::now());
    for (const Status& st : results) {
      if (!st.ok()) Die(st);
    }
  }
  const double bytes = 4.0 * kUpdateValues * contributors * state.iterations();
  const double gbps = bytes / seconds / 1e9;
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["contributors"] = contributors;
  state.counters["update_GBps"] = gbps;
  state.counters["triad_GBps"] = ceiling;
  state.counters["triad_threads"] = threads_for_ceiling;
  state.counters["ratio_to_triad"] = gbps / ceiling;
  state.counters["traffic_ratio"] = gbps / 4.0 * kFoldTrafficBytesPerValue / ceiling;
}

// --- The pieces of Fold, each alone on one core, on the same 256 MiB update. ----------------

void ReportPart(benchmark::State& state) {
  const double bytes = 4.0 * kUpdateValues * state.iterations();
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["update_GBps"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
}

void BM_FoldPartFiniteScan(benchmark::State& state) {
  const std::vector<float>& update = Update();
  for (auto _ : state) {
    for (size_t first = 0; first < update.size(); first += kChunkValues) {
      benchmark::DoNotOptimize(FindNonFinite(update.data() + first, kChunkValues));
    }
  }
  ReportPart(state);
}

void BM_FoldPartSpillWrite(benchmark::State& state) {
  const std::vector<float>& update = Update();
  const std::string path = SpillDir() + "/part.spill";
  for (auto _ : state) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      state.SkipWithError("cannot create spill file");
      return;
    }
    for (size_t first = 0; first < update.size(); first += kChunkValues) {
      if (::write(fd, update.data() + first, kChunkValues * sizeof(float)) < 0) {
        state.SkipWithError("spill write failed");
      }
    }
    ::close(fd);
    ::unlink(path.c_str());
  }
  ReportPart(state);
}

void BM_FoldPartWeightedAdd(benchmark::State& state) {
  const std::vector<float>& update = Update();
  std::vector<double> sum(update.size(), 0.0);
  const double weight = 100.0;
  for (auto _ : state) {
    double* s = sum.data();
    const float* v = update.data();
    for (size_t i = 0; i < update.size(); ++i) s[i] += weight * static_cast<double>(v[i]);
    benchmark::DoNotOptimize(sum.data());
  }
  ReportPart(state);
}

// All three per 1 MiB chunk, in Fold's order, without the aggregator's locks or bookkeeping:
// what Fold would cost if composing the pieces were free of interference.
void BM_FoldPartsInterleaved(benchmark::State& state) {
  const std::vector<float>& update = Update();
  std::vector<double> sum(update.size(), 0.0);
  const std::string path = SpillDir() + "/interleaved.spill";
  const double weight = 100.0;
  for (auto _ : state) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      state.SkipWithError("cannot create spill file");
      return;
    }
    for (size_t first = 0; first < update.size(); first += kChunkValues) {
      const float* v = update.data() + first;
      benchmark::DoNotOptimize(FindNonFinite(v, kChunkValues));
      if (::write(fd, v, kChunkValues * sizeof(float)) < 0) state.SkipWithError("write failed");
      double* s = sum.data() + first;
      for (size_t i = 0; i < kChunkValues; ++i) s[i] += weight * static_cast<double>(v[i]);
    }
    ::close(fd);
    ::unlink(path.c_str());
    benchmark::DoNotOptimize(sum.data());
  }
  ReportPart(state);
}

BENCHMARK(BM_MemoryTriad)
    ->ArgName("threads")
    ->DenseRange(1, std::max(1, Cores()))
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Fold)
    ->ArgName("contributors")
    ->Arg(1)
    ->Arg(2)
    ->Arg(3)
    ->MinTime(2.0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_FoldPartFiniteScan)->MinTime(1.0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FoldPartSpillWrite)->MinTime(1.0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FoldPartWeightedAdd)->MinTime(1.0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FoldPartsInterleaved)->MinTime(1.0)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace hansa

BENCHMARK_MAIN();

// The CSV loader of a site's tabular data (client/tabular.h) against issue 15's bar of
// >= 100 MB/s: 64 MB of numeric CSV (30 features and a class label per row, like the breast
// cancer data) parsed from memory. MBps counts the file's bytes (1 MB = 1e6 B).
#include <benchmark/benchmark.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/tabular.h"

namespace hansa {
namespace {

constexpr int kFeatures = 30;

std::string MakeCsv(size_t bytes) {
  std::string text = "label";
  for (int j = 0; j < kFeatures; ++j) absl::StrAppend(&text, ",x", j);
  text += "\n";
  uint64_t state = 1;
  while (text.size() < bytes) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    absl::StrAppend(&text, state >> 63);
    for (int j = 0; j < kFeatures; ++j) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      absl::StrAppend(&text, ",", absl::StrFormat("%.6g", (state >> 40) * 1e-4 - 800.0));
    }
    text += "\n";
  }
  return text;
}

void BM_ParseCsv(benchmark::State& state) {
  const std::string text = MakeCsv(static_cast<size_t>(state.range(0)) << 20);
  CsvSchema schema;
  schema.label = "label";
  int64_t rows = 0;
  for (auto _ : state) {
    StatusOr<TabularData> d = ParseCsv(text, "bench.csv", schema);
    if (!d.ok()) return state.SkipWithError(d.status().ToString().c_str());
    rows = d->rows();
    benchmark::DoNotOptimize(d->features.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(text.size()) * state.iterations());
  state.counters["MBps"] = benchmark::Counter(static_cast<double>(text.size()) / 1e6,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.counters["rows"] = static_cast<double>(rows);
}

BENCHMARK(BM_ParseCsv)->ArgName("MiB")->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace hansa

BENCHMARK_MAIN();

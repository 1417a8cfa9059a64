#include "sim/simulation.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/data.h"
#include "common/fileio/fileio.h"
#include "sim/svg_plot.h"
#include "sim/virtual_site.h"
#include "sim/workers.h"

namespace hansa {
namespace {

std::string SafeName(const std::string& s) {
  std::string out;
  for (char c : s) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_';
    out += ok ? c : '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

std::string Fixed(double v, int digits = 4) { return absl::StrFormat("%.*f", digits, v); }

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

double SampleStd(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = Mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

struct Group {
  std::string strategy, partition;
  std::vector<const RunResult*> runs;
};

std::vector<Group> GroupRuns(const std::vector<RunResult>& runs) {
  std::vector<Group> groups;
  for (const RunResult& r : runs) {
    const std::string s = r.config.strategy.Label(), p = r.config.PartitionName();
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const Group& g) { return g.strategy == s && g.partition == p; });
    if (it == groups.end()) {
      groups.push_back({s, p, {}});
      it = groups.end() - 1;
    }
    it->runs.push_back(&r);
  }
  return groups;
}

}  // namespace

std::string SimulationConfig::DirName() const {
  return absl::StrCat(SafeName(strategy.Label()), "__", SafeName(PartitionName()), "__seed", seed);
}

namespace {

// The site files concatenated in order, each file's rows in `rows`.
StatusOr<TabularData> LoadSiteFiles(const ExperimentData& d, std::vector<int64_t>* rows) {
  TabularData all;
  for (const std::string& file : d.site_files) {
    ASSIGN_OR_RETURN(TabularData t, LoadCsv(file, d.csv));
    if (rows->empty()) {
      all.feature_names = t.feature_names;
    } else if (t.feature_names != all.feature_names) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": its features (", t.width(), ") are not those of ", d.site_files.front(), " (",
          all.width(), "); every site's file must have the same columns"));
    }
    rows->push_back(t.rows());
    all.features.insert(all.features.end(), t.features.begin(), t.features.end());
    all.labels.insert(all.labels.end(), t.labels.begin(), t.labels.end());
  }
  return all;
}

// The classes of a classification task over CSV data: the named ones, else up to the largest
// class id the training set has (a binary task: 2).
StatusOr<int> CsvClasses(const ExperimentConfig& e, const Dataset& train, const Dataset& test) {
  const TaskKind kind = e.base.task.kind;
  if (kind == TaskKind::kRegression) return 1;
  int classes = kind == TaskKind::kBinary ? 2 : static_cast<int>(e.data.csv.label_classes.size());
  if (classes == 0) {
    for (uint8_t l : train.labels) classes = std::max(classes, l + 1);
  }
  for (const Dataset* d : {&train, &test}) {
    for (uint8_t l : d->labels) {
      if (l >= classes) {
        return absl::InvalidArgumentError(absl::StrCat(
            d == &train ? "the training data" : e.data.test, " has class ", static_cast<int>(l),
            " of a ", std::string(TaskKindName(kind)), " task with ", classes, " classes"));
      }
    }
  }
  return classes;
}

}  // namespace

StatusOr<ExperimentDataSets> LoadExperimentData(const ExperimentConfig& e) {
  ExperimentDataSets out;
  if (e.data.format != "csv") {
    ASSIGN_OR_RETURN(out.train, LoadMnistStyle(e.data_dir, Split::kTrain));
    ASSIGN_OR_RETURN(out.test, LoadMnistStyle(e.data_dir, Split::kTest));
  } else {
    const bool classification = e.base.task.kind != TaskKind::kRegression;
    StatusOr<TabularData> train = e.data.site_files.empty() ? LoadCsv(e.data.train, e.data.csv)
                                                            : LoadSiteFiles(e.data, &out.site_rows);
    RETURN_IF_ERROR(train.status());
    ASSIGN_OR_RETURN(TabularData test, LoadCsv(e.data.test, e.data.csv));
    if (test.feature_names != train->feature_names) {
      return absl::InvalidArgumentError(
          absl::StrCat(e.data.test, ": its features are not those of the training data"));
    }
    ASSIGN_OR_RETURN(out.train, TableToDataset(std::move(*train), classification));
    ASSIGN_OR_RETURN(out.test, TableToDataset(std::move(test), classification));
  }
  if (e.train_limit > 0) out.train = Head(out.train, e.train_limit);
  if (e.test_limit > 0) out.test = Head(out.test, e.test_limit);
  if (e.data.format == "csv") {
    ASSIGN_OR_RETURN(out.classes, CsvClasses(e, out.train, out.test));
  }
  out.partition_labels = out.train.labels;
  if (out.classes == 1) out.partition_labels.assign(static_cast<size_t>(out.train.size()), 0);
  return out;
}

std::vector<SimulationConfig> ExperimentConfig::Runs() const {
  std::vector<SimulationConfig> out;
  for (const PartitionSpec& p : partitions) {
    for (const StrategyOptions& s : strategies) {
      for (uint64_t seed : seeds) {
        SimulationConfig c = base;
        c.partition = p;
        c.strategy = s;
        c.seed = seed;
        if (p.kind == PartitionKind::kPooled) c.sites = 1;
        c.one_file_per_site = !data.site_files.empty();
        out.push_back(c);
      }
    }
  }
  return out;
}

namespace {

// An exclusive flock on a cell's lock file: held while the cell runs, released when this is
// destroyed or its process dies, so a killed job leaves no stale lock. On a shared file system
// without locks (ENOLCK, EOPNOTSUPP: an NFS mount without its lock service) the cell runs
// unlocked, as before there were locks: then nothing stops two jobs given the same cell.
class CellLock {
 public:
  // nullptr when another process holds the lock.
  static StatusOr<std::unique_ptr<CellLock>> TryLock(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      return absl::InternalError(absl::StrCat("opening ", path, ": ", std::strerror(errno)));
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      if (error == ENOLCK || error == EOPNOTSUPP)
        return std::unique_ptr<CellLock>(new CellLock(fd));
      ::close(fd);
      if (error == EWOULDBLOCK) return std::unique_ptr<CellLock>();
      return absl::InternalError(absl::StrCat("locking ", path, ": ", std::strerror(error)));
    }
    return std::unique_ptr<CellLock>(new CellLock(fd));
  }
  ~CellLock() { ::close(fd_); }
  CellLock(const CellLock&) = delete;
  CellLock& operator=(const CellLock&) = delete;

 private:
  explicit CellLock(int fd) : fd_(fd) {}
  int fd_;
};

// out_dir/experiment.toml: written when absent, else it must be this experiment's. Processes
// starting cells at once all write the same bytes, so a write that loses a race to another
// process's is fine when the file then holds them.
Status PrepareRunDir(const ExperimentConfig& experiment, const std::string& out_dir) {
  RETURN_IF_ERROR(MakeDirs(out_dir + "/.locks"));
  const std::string path = out_dir + "/experiment.toml";
  const std::string toml = experiment.ResolvedToml();
  RETURN_IF_ERROR(CheckRunDir(experiment, out_dir));
  if (std::filesystem::exists(path)) return absl::OkStatus();
  Status written = WriteFileAtomically(path, toml);
  if (written.ok()) return written;
  StatusOr<std::string> now = ReadFile(path, size_t{1} << 20);  // written by another process?
  return now.ok() && *now == toml ? absl::OkStatus() : written;
}

}  // namespace

Status CheckRunDir(const ExperimentConfig& experiment, const std::string& out_dir) {
  const std::string path = out_dir + "/experiment.toml";
  StatusOr<std::string> existing = ReadFile(path, size_t{1} << 20);
  if (absl::IsNotFound(existing.status())) return absl::OkStatus();
  RETURN_IF_ERROR(existing.status());
  if (*existing == experiment.ResolvedToml()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      path, " is another experiment's (its resolved settings differ from those of ",
      experiment.name,
      "): give this experiment its own --out folder, or run the experiment that folder holds"));
}

namespace {

std::vector<int> SelectedCells(const SweepOptions& options, size_t cells) {
  if (!options.cells.empty()) return options.cells;
  std::vector<int> all(cells);
  for (size_t i = 0; i < cells; ++i) all[i] = static_cast<int>(i);
  return all;
}

Status CheckCells(const std::vector<int>& selected, size_t cells) {
  for (int k : selected) {
    if (k < 0 || static_cast<size_t>(k) >= cells) {
      return absl::OutOfRangeError(
          absl::StrCat("cell ", k, " is not in the sweep (cells 0-", cells - 1, ")"));
    }
  }
  return absl::OkStatus();
}

// The selected cells: done ones read back, the others run (with `backend`, which is null when
// every selected cell was done at the start) unless another process is running them.
StatusOr<SweepResult> SweepCells(const ExperimentConfig& experiment, const ExperimentDataSets* data,
                                 SimulationBackend* backend, const std::string& out_dir,
                                 const SweepOptions& options) {
  const auto started = SimClock::now();
  std::vector<SimulationConfig> runs = experiment.Runs();
  const std::vector<int> selected = SelectedCells(options, runs.size());
  RETURN_IF_ERROR(CheckCells(selected, runs.size()));
  const bool whole_sweep = options.cells.empty();
  double done_rounds = 0, total_rounds = 0;
  for (int k : selected) {
    SimulationConfig& c = runs[static_cast<size_t>(k)];
    if (data != nullptr) {
      c.classes = data->classes;
      c.site_rows = data->site_rows;
    }
    if (!RunComplete(out_dir + "/" + c.DirName())) total_rounds += static_cast<double>(c.rounds);
  }
  SweepResult result;
  auto skip = [&](int k, const std::string& why) {
    if (options.skipped) options.skipped(k, runs[static_cast<size_t>(k)], why);
  };
  for (size_t n = 0; n < selected.size(); ++n) {
    const int k = selected[n];
    const SimulationConfig& config = runs[static_cast<size_t>(k)];
    const std::string dir = out_dir + "/" + config.DirName();
    std::unique_ptr<CellLock> lock;
    if (!RunComplete(dir)) {
      ASSIGN_OR_RETURN(lock, CellLock::TryLock(out_dir + "/.locks/" + config.DirName() + ".lock"));
      if (lock == nullptr) {
        skip(k, "running in another process");
        result.missing.push_back(k);
        continue;
      }
    }
    if (RunComplete(dir)) {  // done before, or by another process since the first look
      skip(k, "done");
      ASSIGN_OR_RETURN(RunResult r, LoadRunResult(config, dir));
      result.runs.push_back(std::move(r));
      continue;
    }
    if (backend == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, " is no longer finished; run cell ", k, " again"));
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);  // what a killed run left behind
    if (ec) {
      return absl::InternalError(absl::StrCat("removing the unfinished ", dir, ": ", ec.message()));
    }
    ProgressFn wrapped = [&](const Progress& p) {
      if (!options.progress) return;
      Progress q = p;
      q.run = static_cast<int>(n + 1);
      q.cell = k;
      q.runs = static_cast<int>(selected.size());
      const double elapsed = SecondsSince(started);
      const double finished = done_rounds + static_cast<double>(p.round);
      q.elapsed_seconds = elapsed;
      q.remaining_seconds = elapsed / finished * (total_rounds - finished);
      options.progress(q);
    };
    ASSIGN_OR_RETURN(RunResult r,
                     RunSimulation(config, data->partition_labels, backend, dir, wrapped,
                                   config.workers > 1 ? options.workers : nullptr));
    done_rounds += static_cast<double>(config.rounds);
    r.final_model = Model{};  // on disk; not kept for the whole sweep
    result.runs.push_back(std::move(r));
    if (whole_sweep) {
      RETURN_IF_ERROR(WriteSweepSummaries(experiment.name, result.runs, out_dir));
    }
  }
  if (whole_sweep) RETURN_IF_ERROR(WriteSweepSummaries(experiment.name, result.runs, out_dir));
  return result;
}

}  // namespace

StatusOr<SweepResult> RunSweep(const ExperimentConfig& experiment, const ExperimentDataSets& data,
                               SimulationBackend* backend, const std::string& out_dir,
                               const SweepOptions& options) {
  RETURN_IF_ERROR(CheckCells(options.cells, experiment.Runs().size()));
  RETURN_IF_ERROR(PrepareRunDir(experiment, out_dir));
  return SweepCells(experiment, &data, backend, out_dir, options);
}

StatusOr<SweepResult> RunSweep(const ExperimentConfig& experiment, const std::string& out_dir,
                               const SweepOptions& options) {
  const std::vector<SimulationConfig> runs = experiment.Runs();
  RETURN_IF_ERROR(CheckCells(options.cells, runs.size()));
  RETURN_IF_ERROR(PrepareRunDir(experiment, out_dir));
  bool pending = false;
  for (int k : SelectedCells(options, runs.size())) {
    pending = pending || !RunComplete(out_dir + "/" + runs[static_cast<size_t>(k)].DirName());
  }
  if (!pending) return SweepCells(experiment, nullptr, nullptr, out_dir, options);
  ASSIGN_OR_RETURN(const ExperimentDataSets data, LoadExperimentData(experiment));
  ASSIGN_OR_RETURN(auto backend, CreateExperimentBackend(experiment, data));
  return SweepCells(experiment, &data, backend.get(), out_dir, options);
}

StatusOr<std::unique_ptr<SimulationBackend>> CreateExperimentBackend(
    const ExperimentConfig& experiment, const ExperimentDataSets& data) {
  int max_pool = 1;
  for (const SimulationConfig& c : experiment.Runs()) max_pool = std::max(max_pool, c.pool);
  TrainerOptions trainer;
  trainer.model = experiment.base.model;
  trainer.script_file = experiment.base.script_file;
  trainer.task = experiment.base.task;
  // One GPU per worker on a node with several (workers.h); the experiment's device otherwise.
  trainer.device = WorkerDevice(experiment.device, LocalRank(), CudaDeviceCount());
  trainer.threads = experiment.threads;
  return CreateTorchBackend(&data.train, &data.test, std::move(trainer), max_pool);
}

StatusOr<std::vector<RunResult>> RunExperiment(const ExperimentConfig& experiment,
                                               const std::string& out_dir,
                                               const ProgressFn& progress) {
  SweepOptions options;
  options.progress = progress;
  ASSIGN_OR_RETURN(SweepResult result, RunSweep(experiment, out_dir, options));
  if (!result.missing.empty()) {
    return absl::UnavailableError(
        absl::StrCat(result.missing.size(), " cell(s) of ", out_dir,
                     " are running in another process; summarize the folder once they are done"));
  }
  return std::move(result.runs);
}

Status WriteSweepSummaries(const std::string& title, const std::vector<RunResult>& runs,
                           const std::string& out_dir) {
  RETURN_IF_ERROR(WriteFileAtomically(out_dir + "/summary.csv", SummaryCsv(runs)));
  RETURN_IF_ERROR(WriteFileAtomically(out_dir + "/summary.md", SummaryMarkdown(title, runs)));
  // One accuracy plot per partition comparing the strategies (mean over seeds).
  std::map<std::string, PlotSpec> plots;
  for (const Group& g : GroupRuns(runs)) {
    PlotSpec& plot = plots[g.partition];
    plot.title = absl::StrCat(title, ": ", g.partition);
    plot.y_label = "test accuracy";
    PlotSeries series{g.strategy, {}};
    const size_t rounds = g.runs[0]->rounds.size();
    for (size_t k = 0; k < rounds; ++k) {
      std::vector<double> v;
      for (const RunResult* r : g.runs) v.push_back(r->rounds[k].accuracy);
      series.y.push_back(Mean(v));
    }
    plot.series.push_back(series);
  }
  for (const auto& [partition, plot] : plots) {
    RETURN_IF_ERROR(WriteFileAtomically(
        absl::StrCat(out_dir, "/accuracy__", SafeName(partition), ".svg"), LinePlotSvg(plot)));
  }
  return absl::OkStatus();
}

StatusOr<SweepSummary> SummarizeRunDir(const std::string& run_dir) {
  const std::string toml = run_dir + "/experiment.toml";
  if (!std::filesystem::exists(toml)) {
    return absl::NotFoundError(absl::StrCat(
        run_dir, " has no experiment.toml: it is not the --out folder of hansa simulate"));
  }
  SweepSummary summary;
  ASSIGN_OR_RETURN(summary.experiment, LoadExperiment(toml));
  const std::vector<SimulationConfig> runs = summary.experiment.Runs();
  for (size_t k = 0; k < runs.size(); ++k) {
    const std::string dir = run_dir + "/" + runs[k].DirName();
    if (!RunComplete(dir)) {
      summary.missing.push_back(static_cast<int>(k));
      continue;
    }
    ASSIGN_OR_RETURN(RunResult r, LoadRunResult(runs[k], dir));
    summary.runs.push_back(std::move(r));
  }
  RETURN_IF_ERROR(WriteSweepSummaries(summary.experiment.name, summary.runs, run_dir));
  return summary;
}

StatusOr<std::vector<int>> ParseCellSpec(const std::string& spec, int cells) {
  std::set<int> picked;
  auto bad = [&](const std::string& part, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("--cell '", spec, "': '", part, "' ", why,
                                                   " (the sweep has cells 0-", cells - 1,
                                                   "; give K, K1,K2,... or A-B)"));
  };
  auto number = [&](const std::string& text, int* out) {
    if (text.empty() || text.size() > 9 ||
        !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return false;
    }
    *out = std::stoi(text);
    return true;
  };
  if (spec.empty()) return bad(spec, "is empty");
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    if (comma == std::string::npos) comma = spec.size();
    const std::string part = spec.substr(start, comma - start);
    const size_t dash = part.find('-');
    int from = 0, to = 0;
    if (dash == std::string::npos) {
      if (!number(part, &from)) return bad(part, "is not a cell index");
      to = from;
    } else if (!number(part.substr(0, dash), &from) || !number(part.substr(dash + 1), &to)) {
      return bad(part, "is not a range A-B of cell indices");
    } else if (to < from) {
      return bad(part, "is a range that ends before it starts");
    }
    if (to >= cells) return bad(part, absl::StrCat("is beyond the last cell, ", cells - 1));
    for (int k = from; k <= to; ++k) picked.insert(k);
    start = comma + 1;
  }
  return std::vector<int>(picked.begin(), picked.end());
}

namespace {

// The epsilon of one guarantee a group's runs spent (`field` of RoundMetrics), or "" without
// it.
std::string FinalEpsilon(const Group& g, double RoundMetrics::*field) {
  const double epsilon = g.runs[0]->rounds.back().*field;
  return epsilon > 0 ? Fixed(epsilon, 3) : "";
}

// The privacy columns the summaries have: only those some run used.
struct PrivacyColumns {
  bool record = false, client = false;
  explicit PrivacyColumns(const std::vector<RunResult>& runs) {
    for (const RunResult& r : runs) {
      record = record || r.config.record_privacy.enabled;
      client = client || r.config.client_privacy.enabled;
    }
  }
  // The header cells (`csv`: ",record_epsilon"; else " record ε |") and a group's cells.
  std::string Header(bool csv) const {
    return absl::StrCat(record ? (csv ? ",record_epsilon" : " record ε |") : "",
                        client ? (csv ? ",client_epsilon" : " client ε |") : "");
  }
  std::string Rule() const { return absl::StrCat(record ? "---:|" : "", client ? "---:|" : ""); }
  std::string Cells(const Group& g, bool csv) const {
    std::string out;
    if (record) {
      absl::StrAppend(&out, csv ? "," : " ", FinalEpsilon(g, &RoundMetrics::record_epsilon),
                      csv ? "" : " |");
    }
    if (client) {
      absl::StrAppend(&out, csv ? "," : " ", FinalEpsilon(g, &RoundMetrics::client_epsilon),
                      csv ? "" : " |");
    }
    return out;
  }
};

// A group's best and final accuracies and run times, one entry per seed.
struct GroupStats {
  std::vector<double> best, final_acc, seconds;
  explicit GroupStats(const Group& g) {
    for (const RunResult* r : g.runs) {
      best.push_back(r->best_accuracy);
      final_acc.push_back(r->final_accuracy);
      seconds.push_back(r->seconds);
    }
  }
};

}  // namespace

std::string SummaryCsv(const std::vector<RunResult>& runs) {
  const PrivacyColumns privacy(runs);
  std::string out = absl::StrCat(
      "strategy,partition,seeds,rounds,best_accuracy_mean,best_accuracy_std,"
      "final_accuracy_mean,final_accuracy_std,seconds_mean",
      privacy.Header(true), "\n");
  for (const Group& g : GroupRuns(runs)) {
    const GroupStats st(g);
    absl::StrAppend(&out, "\"", g.strategy, "\",\"", g.partition, "\",", g.runs.size(), ",",
                    g.runs[0]->rounds.size(), ",", Fixed(Mean(st.best)), ",",
                    Fixed(SampleStd(st.best)), ",", Fixed(Mean(st.final_acc)), ",",
                    Fixed(SampleStd(st.final_acc)), ",", Fixed(Mean(st.seconds), 1),
                    privacy.Cells(g, true), "\n");
  }
  return out;
}

std::string SummaryMarkdown(const std::string& title, const std::vector<RunResult>& runs) {
  const PrivacyColumns privacy(runs);
  std::string out = absl::StrCat(
      "# ", title, "\n\nTest accuracy of the global model, mean ± std over seeds.\n\n",
      "| partition | strategy | seeds | rounds | best accuracy | final accuracy | "
      "seconds per run |",
      privacy.Header(false), "\n", "|---|---|---:|---:|---:|---:|---:|", privacy.Rule(), "\n");
  for (const Group& g : GroupRuns(runs)) {
    const GroupStats st(g);
    absl::StrAppend(&out, "| ", g.partition, " | ", g.strategy, " | ", g.runs.size(), " | ",
                    g.runs[0]->rounds.size(), " | ", Fixed(Mean(st.best)), " ± ",
                    Fixed(SampleStd(st.best)), " | ", Fixed(Mean(st.final_acc)), " ± ",
                    Fixed(SampleStd(st.final_acc)), " | ", Fixed(Mean(st.seconds), 0), " |",
                    privacy.Cells(g, false), "\n");
  }
  return out;
}

}  // namespace hansa

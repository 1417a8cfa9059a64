#include "sim/simulation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/data.h"
#include "common/fileio/fileio.h"
#include "sim/svg_plot.h"
#include "sim/virtual_site.h"

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
        out.push_back(c);
      }
    }
  }
  return out;
}

StatusOr<std::vector<RunResult>> RunExperiment(const ExperimentConfig& experiment,
                                               const std::string& out_dir,
                                               const ProgressFn& progress) {
  const auto started = SimClock::now();
  RETURN_IF_ERROR(MakeDirs(out_dir));
  RETURN_IF_ERROR(WriteFileAtomically(out_dir + "/experiment.toml", experiment.ResolvedToml()));
  ASSIGN_OR_RETURN(const ExperimentDataSets data, LoadExperimentData(experiment));
  std::vector<SimulationConfig> runs = experiment.Runs();
  int max_pool = 1;
  for (SimulationConfig& c : runs) {
    max_pool = std::max(max_pool, c.pool);
    c.classes = data.classes;
    c.site_rows = data.site_rows;
  }
  TrainerOptions options;
  options.model = experiment.base.model;
  options.script_file = experiment.base.script_file;
  options.task = experiment.base.task;
  options.device = experiment.device;
  options.threads = experiment.threads;
  ASSIGN_OR_RETURN(auto backend,
                   CreateTorchBackend(&data.train, &data.test, std::move(options), max_pool));
  std::vector<RunResult> results;
  double done_rounds = 0, total_rounds = 0;
  for (const auto& c : runs) total_rounds += static_cast<double>(c.rounds);
  for (size_t i = 0; i < runs.size(); ++i) {
    ProgressFn wrapped = [&](const Progress& p) {
      if (!progress) return;
      Progress q = p;
      q.run = static_cast<int>(i + 1);
      q.runs = static_cast<int>(runs.size());
      const double elapsed = SecondsSince(started);
      const double finished = done_rounds + static_cast<double>(p.round);
      q.elapsed_seconds = elapsed;
      q.remaining_seconds = elapsed / finished * (total_rounds - finished);
      progress(q);
    };
    ASSIGN_OR_RETURN(RunResult r, RunSimulation(runs[i], data.partition_labels, backend.get(),
                                                out_dir + "/" + runs[i].DirName(), wrapped));
    done_rounds += static_cast<double>(runs[i].rounds);
    r.final_model = Model{};  // on disk; not kept for the whole sweep
    results.push_back(std::move(r));
    RETURN_IF_ERROR(WriteFileAtomically(out_dir + "/summary.csv", SummaryCsv(results)));
    RETURN_IF_ERROR(
        WriteFileAtomically(out_dir + "/summary.md", SummaryMarkdown(experiment.name, results)));
  }
  // One accuracy plot per partition comparing the strategies (mean over seeds).
  std::vector<Group> groups = GroupRuns(results);
  std::map<std::string, PlotSpec> plots;
  for (const Group& g : groups) {
    PlotSpec& plot = plots[g.partition];
    plot.title = absl::StrCat(experiment.name, ": ", g.partition);
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
  return results;
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

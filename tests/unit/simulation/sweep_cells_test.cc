// A sweep's cells as independent jobs (sim/simulation.h: ParseCellSpec, RunSweep,
// SummarizeRunDir): cell selections, resume after a killed run, a folder of another experiment,
// a cell locked by another process, and summaries read back from the files, exactly as the
// whole sweep writes them. A fake backend trains; the real binary is tested in
// tests/integration/simulate_test.cc.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "common/model/models.h"
#include "nlohmann/json.hpp"
#include "sim/simulation.h"
#include "spdlog/spdlog.h"
#include "tests/support/text_files.h"

namespace hansa {
namespace {

using test_support::Slurp;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::string TempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/sweep_cells_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

// "Training" adds 0.01 per example at the site to every weight; evaluation reports the first
// weight as the loss and an accuracy that moves with it, so each cell has its own numbers.
class FakeBackend : public SimulationBackend {
 public:
  StatusOr<Model> Train(int, const Model& start, const std::vector<int64_t>& indices,
                        const TrainSettings& settings, TrainResult* result) override {
    ++trained;
    Model out = start;
    const float delta = 0.01f * static_cast<float>(indices.size()) *
                        static_cast<float>(1 + settings.proximal_mu * 100);
    for (float& v : out.values) v += delta;
    result->num_examples = static_cast<int64_t>(indices.size());
    result->steps = 1;
    return out;
  }
  StatusOr<EvalResult> Evaluate(int, const Model& model) override {
    EvalResult r;
    r.num_examples = 1;
    r.loss = model.values[0];
    r.accuracy = 1.0 / (3.0 + std::fabs(model.values[0]));  // not a short decimal
    return r;
  }
  std::atomic<int> trained{0};
};

// 2 partitions x 2 strategies x 1 seed: cells 0-3 are homogeneous x {fedavg, fedprox}, then
// noise:0.1 x the same; over 10 examples with labels 0-9.
ExperimentConfig Experiment() {
  ExperimentConfig e;
  e.name = "cells";
  e.base.model = "mlp";
  e.base.sites = 3;
  e.base.rounds = 2;
  e.base.training.momentum = 0;
  e.partitions = {*ParsePartitionSpec("homogeneous"), *ParsePartitionSpec("noise:0.1")};
  e.strategies = {*ParseStrategySpec("fedavg"), *ParseStrategySpec("fedprox:mu=0.01")};
  e.seeds = {0};
  return e;
}

ExperimentDataSets Data() {
  ExperimentDataSets d;
  d.partition_labels = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  return d;
}

class SweepCellsTest : public ::testing::Test {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::warn); }
  StatusOr<SweepResult> Run(const std::string& out, std::vector<int> cells) {
    SweepOptions options;
    options.cells = std::move(cells);
    options.skipped = [this](int cell, const SimulationConfig&, const std::string& why) {
      skipped_.push_back(absl::StrCat(cell, ": ", why));
    };
    return RunSweep(experiment_, data_, &backend_, out, options);
  }
  std::string CellDir(const std::string& out, int k) {
    return out + "/" + experiment_.Runs()[static_cast<size_t>(k)].DirName();
  }
  ExperimentConfig experiment_ = Experiment();
  ExperimentDataSets data_ = Data();
  FakeBackend backend_;
  std::vector<std::string> skipped_;
};

TEST(CellSpecTest, ParsesIndicesListsAndRangesAscendingWithoutRepeats) {
  EXPECT_THAT(*ParseCellSpec("3", 10), ElementsAre(3));
  EXPECT_THAT(*ParseCellSpec("7,1,4", 10), ElementsAre(1, 4, 7));
  EXPECT_THAT(*ParseCellSpec("0-9", 10), ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
  EXPECT_THAT(*ParseCellSpec("5,0-2,4-6,2", 10), ElementsAre(0, 1, 2, 4, 5, 6));
  EXPECT_THAT(*ParseCellSpec("2-2", 3), ElementsAre(2));
}

TEST(CellSpecTest, RefusesMalformedSpecsAndCellsBeyondTheSweep) {
  struct Case {
    const char* spec;
    const char* says;
  };
  for (const Case& c : {Case{"", "is empty"}, Case{"x", "'x' is not a cell index"},
                        Case{"1,", "'' is not a cell index"}, Case{",1", "'' is not a cell index"},
                        Case{" 1", "is not a cell index"}, Case{"-1", "is not a range"},
                        Case{"1-", "is not a range"}, Case{"1-2-3", "is not a range"},
                        Case{"3-1", "ends before it starts"}, Case{"10", "beyond the last cell, 9"},
                        Case{"8-10", "beyond the last cell"},
                        Case{"99999999999", "is not a cell index"}, Case{"1.5", "not a cell"}}) {
    StatusOr<std::vector<int>> r = ParseCellSpec(c.spec, 10);
    ASSERT_FALSE(r.ok()) << c.spec;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.spec;
    EXPECT_THAT(r.status().message(), HasSubstr(c.says)) << c.spec;
    EXPECT_THAT(r.status().message(), HasSubstr("cells 0-9")) << c.spec;
  }
}

// nlohmann writes the shortest text that reads back to the same double, and reads it back so.
TEST(CellSpecTest, JsonRoundTripsDoublesExactly) {
  for (double v : {0.1 + 0.2, 1.0 / 3.0, 0.8123456789012345, 5e-324, 2.2250738585072014e-308,
                   1.7976931348623157e308, 123456.78901234567, std::nextafter(0.5, 1.0)}) {
    const nlohmann::ordered_json j = {{"v", v}};
    const double back = nlohmann::json::parse(j.dump())["v"].get<double>();
    EXPECT_EQ(std::memcmp(&back, &v, sizeof v), 0) << j.dump();
  }
}

TEST_F(SweepCellsTest, ARunReadsBackToTheSameDoubles) {
  const std::string out = TempDir("read_back");
  StatusOr<SweepResult> r = Run(out, {3});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->runs.size(), 1u);
  const RunResult& ran = r->runs[0];
  EXPECT_TRUE(RunComplete(CellDir(out, 3)));
  StatusOr<RunResult> back = LoadRunResult(ran.config, CellDir(out, 3));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->rounds.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back->rounds[i].round, ran.rounds[i].round);
    EXPECT_EQ(back->rounds[i].accuracy, ran.rounds[i].accuracy);
    EXPECT_EQ(back->rounds[i].loss, ran.rounds[i].loss);
    EXPECT_EQ(back->rounds[i].seconds, ran.rounds[i].seconds);
  }
  EXPECT_EQ(back->best_accuracy, ran.best_accuracy);
  EXPECT_EQ(back->final_accuracy, ran.final_accuracy);
  EXPECT_EQ(back->seconds, ran.seconds);
  // A cell's own run never writes the sweep's summaries (other processes run other cells).
  EXPECT_TRUE(std::filesystem::exists(out + "/experiment.toml"));
  EXPECT_FALSE(std::filesystem::exists(out + "/summary.csv"));
}

TEST_F(SweepCellsTest, ADoneCellIsNeverRunTwice) {
  const std::string out = TempDir("done");
  ASSERT_TRUE(Run(out, {1}).ok());
  const int trained = backend_.trained;
  EXPECT_GT(trained, 0);
  const std::string metrics = Slurp(CellDir(out, 1) + "/metrics.jsonl");
  StatusOr<SweepResult> again = Run(out, {1});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(backend_.trained, trained);
  EXPECT_THAT(skipped_, ElementsAre("1: done"));
  ASSERT_EQ(again->runs.size(), 1u);  // read back from its files
  EXPECT_EQ(again->runs[0].rounds.size(), 2u);
  EXPECT_EQ(Slurp(CellDir(out, 1) + "/metrics.jsonl"), metrics);
}

// A run killed midway leaves run.json without "complete": true; the cell runs again, into a
// folder emptied first.
TEST_F(SweepCellsTest, ACellWithoutItsCompletionMarkRunsAgainFromAnEmptyFolder) {
  const std::string out = TempDir("killed");
  ASSERT_TRUE(Run(out, {2}).ok());
  const std::string dir = CellDir(out, 2);
  const std::string metrics = Slurp(dir + "/metrics.jsonl");
  nlohmann::json run = nlohmann::json::parse(Slurp(dir + "/run.json"));
  EXPECT_EQ(run["complete"], true);
  EXPECT_TRUE(run["result"].contains("best_accuracy"));
  run["complete"] = false;
  run.erase("result");
  std::ofstream(dir + "/run.json") << run.dump(2);
  std::ofstream(dir + "/metrics.jsonl") << metrics.substr(0, metrics.find('\n') + 1);
  std::ofstream(dir + "/left-over") << "from the killed run";
  EXPECT_FALSE(RunComplete(dir));
  std::filesystem::remove(dir + "/run.json");
  EXPECT_FALSE(RunComplete(dir));  // killed before run.json

  const int trained = backend_.trained;
  StatusOr<SweepResult> again = Run(out, {2});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_GT(backend_.trained, trained);
  EXPECT_TRUE(skipped_.empty());
  EXPECT_TRUE(RunComplete(dir));
  EXPECT_FALSE(std::filesystem::exists(dir + "/left-over"));
  EXPECT_EQ(test_support::Lines(dir + "/metrics.jsonl").size(), 2u);  // not 1 + 2
}

TEST_F(SweepCellsTest, RefusesAFolderOfAnotherExperimentBeforeRunningAnything) {
  const std::string out = TempDir("other");
  ASSERT_TRUE(Run(out, {0}).ok());
  const int trained = backend_.trained;
  experiment_.base.rounds = 3;
  EXPECT_EQ(CheckRunDir(experiment_, out).code(), absl::StatusCode::kFailedPrecondition);
  StatusOr<SweepResult> r = Run(out, {1});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("experiment.toml is another experiment's"));
  EXPECT_EQ(backend_.trained, trained);
  EXPECT_FALSE(std::filesystem::exists(CellDir(out, 1)));
}

TEST_F(SweepCellsTest, RefusesACellBeyondTheSweep) {
  const std::string out = TempDir("beyond");
  StatusOr<SweepResult> r = Run(out, {1, 4});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(r.status().message(), HasSubstr("cell 4 is not in the sweep (cells 0-3)"));
  EXPECT_EQ(backend_.trained, 0);
}

// Another process running the cell holds its lock (flock: any other open file description
// conflicts, also in this process): the cell is left to it and reported missing.
TEST_F(SweepCellsTest, ACellLockedByAnotherProcessIsLeftToIt) {
  const std::string out = TempDir("locked");
  ASSERT_TRUE(Run(out, {0}).ok());
  const std::string lock = out + "/.locks/" + experiment_.Runs()[1].DirName() + ".lock";
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  StatusOr<SweepResult> r = Run(out, {0, 1});
  ::close(fd);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(skipped_, ElementsAre("0: done", "1: running in another process"));
  EXPECT_THAT(r->missing, ElementsAre(1));
  EXPECT_FALSE(std::filesystem::exists(CellDir(out, 1)));
  ASSERT_TRUE(Run(out, {1}).ok());  // released: it runs
  EXPECT_TRUE(RunComplete(CellDir(out, 1)));
}

// Summarising lists the missing cells and writes the summaries of those done; the whole sweep
// then runs only the missing ones, and its summaries (from doubles in memory) are the
// summarised ones (from the files) byte for byte.
TEST_F(SweepCellsTest, SummarizeListsMissingCellsAndMatchesTheWholeSweepExactly) {
  const std::string out = TempDir("summarize");
  ASSERT_TRUE(Run(out, {1, 2}).ok());
  StatusOr<SweepSummary> partial = SummarizeRunDir(out);
  ASSERT_TRUE(partial.ok()) << partial.status();
  EXPECT_THAT(partial->missing, ElementsAre(0, 3));
  EXPECT_EQ(partial->runs.size(), 2u);
  EXPECT_EQ(partial->experiment.name, "cells");
  const std::string csv = Slurp(out + "/summary.csv");
  EXPECT_THAT(csv, HasSubstr("\"fedprox:mu=0.01\",\"homogeneous\",1,2,"));
  EXPECT_THAT(csv, HasSubstr("\"fedavg\",\"noise(0.1)\",1,2,"));
  EXPECT_THAT(csv, Not(HasSubstr("\"fedavg\",\"homogeneous\"")));

  const int trained = backend_.trained;
  StatusOr<SweepResult> whole = Run(out, {});
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_THAT(skipped_, ElementsAre("1: done", "2: done"));
  EXPECT_EQ(whole->runs.size(), 4u);
  EXPECT_EQ(backend_.trained - trained, 2 * 2 * 3);  // two cells of 2 rounds x 3 sites
  const std::string whole_csv = Slurp(out + "/summary.csv");
  const std::string whole_md = Slurp(out + "/summary.md");
  std::vector<std::string> plots;
  for (const auto& entry : std::filesystem::directory_iterator(out)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("accuracy__", 0) == 0) plots.push_back(name);
  }
  std::sort(plots.begin(), plots.end());
  EXPECT_THAT(plots, ElementsAre("accuracy__homogeneous.svg", "accuracy__noise-0.1.svg"));
  std::vector<std::string> whole_plots;
  for (const std::string& p : plots) whole_plots.push_back(Slurp(out + "/" + p));

  for (const std::string& p : plots) std::filesystem::remove(out + "/" + p);
  StatusOr<SweepSummary> all = SummarizeRunDir(out);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(all->missing.empty());
  EXPECT_EQ(Slurp(out + "/summary.csv"), whole_csv);
  EXPECT_EQ(Slurp(out + "/summary.md"), whole_md);
  for (size_t i = 0; i < plots.size(); ++i) {
    EXPECT_EQ(Slurp(out + "/" + plots[i]), whole_plots[i]) << plots[i];
  }
}

// The experiment a run folder keeps reads back from there to the same experiment, also when
// the file was named by a path relative to the working folder: its paths are made absolute.
TEST(ExperimentFileTest, RelativePathsResolveToAbsoluteOnesThatReadBackFromTheRunFolder) {
  const std::string dir = TempDir("relative");
  std::filesystem::create_directories(dir + "/run");
  std::ofstream(dir + "/exp.toml") << "[experiment]\nname = \"rel\"\ndata_dir = \"data\"\n";
  const std::string relative =
      std::filesystem::relative(dir + "/exp.toml", std::filesystem::current_path()).string();
  ASSERT_FALSE(std::filesystem::path(relative).is_absolute());
  StatusOr<ExperimentConfig> e = LoadExperiment(relative);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->data_dir, std::filesystem::path(dir + "/data").lexically_normal().string());
  std::ofstream(dir + "/run/experiment.toml") << e->ResolvedToml();
  StatusOr<ExperimentConfig> back = LoadExperiment(dir + "/run/experiment.toml");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ResolvedToml(), e->ResolvedToml());
}

TEST_F(SweepCellsTest, SummarizeNeedsAnExperimentFolder) {
  const std::string out = TempDir("not_a_run");
  std::filesystem::create_directories(out);
  StatusOr<SweepSummary> r = SummarizeRunDir(out);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("has no experiment.toml"));
}

}  // namespace
}  // namespace hansa

// `hansa simulate` with a study's own TorchScript model on CSV data (issue 15): the
// breast-cancer example's MLP trained by three virtual sites, each on its own file, under
// secure aggregation with pooled standardisation; the experiment keys that go with it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "client/tabular.h"
#include "nlohmann/json.hpp"
#include "sim/simulation.h"
#include "spdlog/spdlog.h"
#include "tests/support/text_files.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

const std::string kExample = std::string(HANSA_SOURCE_DIR) + "/examples/breast-cancer";

using test_support::Lines;
using test_support::Slurp;

std::string TempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/csv_sim_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

CsvSchema Diagnosis() {
  CsvSchema s;
  s.label = "diagnosis";
  return s;
}

class CsvSimulationTest : public ::testing::Test {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::warn); }
};

// Three rounds of the shipped experiment: the MLP learns (the pooled baseline reaches 0.98),
// the metrics carry the binary task's AUC from the central evaluation's score histograms, and
// every site standardised by the mean and std of the three files together.
TEST_F(CsvSimulationTest, BreastCancerMlpLearnsOnThreeSecureSitesWithPooledStandardisation) {
  auto e = LoadExperiment(kExample + "/simulate.toml");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->base.model,
            "sha256:dcae0f6532fb8e8f21375b6fcada55f07980223638af882279f6c54cdee4eead");
  EXPECT_TRUE(e->base.secure.enabled);
  EXPECT_EQ(e->base.sites, 3);
  e->base.rounds = 3;
  const std::string out = TempDir("breast_cancer");
  auto runs = RunExperiment(*e, out);
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 1u);
  const std::string run_dir = out + "/" + (*runs)[0].config.DirName();
  EXPECT_EQ((*runs)[0].config.DirName(), "fedavg__files__seed0");
  auto lines = Lines(run_dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_GT(lines[2]["accuracy"].get<double>(), 0.85) << lines[2].dump();
  ASSERT_TRUE(lines[2].contains("auc")) << lines[2].dump();
  EXPECT_GT(lines[2]["auc"].get<double>(), 0.9);
  EXPECT_TRUE(lines[2].contains("balanced_accuracy"));
  EXPECT_FALSE(lines[2].contains("mse"));
  EXPECT_EQ(lines[2]["evaluated_on"], 113);
  EXPECT_EQ(lines[2]["examples"], 456);

  // The pooled standardisation is that of the concatenated files (data/pooled.csv).
  const auto run = nlohmann::json::parse(Slurp(run_dir + "/run.json"));
  auto pooled = LoadCsv(kExample + "/data/pooled.csv", Diagnosis());
  ASSERT_TRUE(pooled.ok()) << pooled.status();
  std::vector<double> mean, std;
  ASSERT_TRUE(FeatureMoments::Of(*pooled).MeanAndStd(&mean, &std).ok());
  ASSERT_EQ(run["standardization"]["rows"], 456);
  ASSERT_EQ(run["standardization"]["mean"].size(), 30u);
  for (size_t j = 0; j < 30; ++j) {
    EXPECT_NEAR(run["standardization"]["mean"][j].get<double>(), mean[j], 1e-9 * std[j]) << j;
    EXPECT_NEAR(run["standardization"]["std"][j].get<double>(), std[j], 1e-9 * std[j]) << j;
  }
  EXPECT_EQ(run["model_file"], kExample + "/mlp.pt");
  EXPECT_EQ(run["task"]["kind"], "binary");
}

// data.site_files: virtual site i holds exactly the rows of file i, in order; the partition
// file shows each site's class mix (site a: 100 malignant, 25 benign).
TEST_F(CsvSimulationTest, SiteFilesGiveEachVirtualSiteExactlyItsFilesRows) {
  auto e = LoadExperiment(kExample + "/simulate.toml");
  ASSERT_TRUE(e.ok()) << e.status();
  auto data = LoadExperimentData(*e);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->site_rows, (std::vector<int64_t>{125, 211, 120}));
  EXPECT_EQ(data->classes, 2);
  int64_t offset = 0;
  for (const char* file : {"site-a", "site-b", "site-c"}) {
    auto rows = LoadCsv(absl::StrCat(kExample, "/data/", file, ".csv"), Diagnosis());
    ASSERT_TRUE(rows.ok()) << rows.status();
    const auto width = static_cast<size_t>(rows->width());
    ASSERT_EQ(static_cast<int64_t>(width), data->train.cols);
    for (int64_t r = 0; r < rows->rows(); ++r) {
      const auto at = data->train.features.begin() + (offset + r) * static_cast<int64_t>(width);
      ASSERT_TRUE(std::equal(at, at + width, rows->features.begin() + r * width)) << file << r;
      ASSERT_EQ(data->train.labels[offset + r], rows->labels[r]) << file << r;
    }
    offset += rows->rows();
  }
  EXPECT_EQ(offset, data->train.size());
  EXPECT_EQ(data->test.size(), 113);

  // A run deals them so (rows 0..124 to site 0, and on), as run.json and partition.csv say.
  e->base.rounds = 1;
  e->base.secure.enabled = false;
  e->base.standardize_features = 0;
  const std::string out = TempDir("site_files");
  auto runs = RunExperiment(*e, out);
  ASSERT_TRUE(runs.ok()) << runs.status();
  const std::string run_dir = out + "/fedavg__files__seed0";
  const auto run = nlohmann::json::parse(Slurp(run_dir + "/run.json"));
  EXPECT_EQ(run["sites_examples"], nlohmann::json::array({125, 211, 120}));
  EXPECT_EQ(run["partition"], "files");
  EXPECT_FALSE(run.contains("standardization"));
  EXPECT_EQ(Slurp(run_dir + "/partition.csv"),
            "site,examples,noise_std,class_0,class_1\n0,125,0,100,25\n1,211,0,10,201\n"
            "2,120,0,60,60\n");
}

// The pooled file dealt out by a partitioner: label skew over the binary task's two classes,
// every row to some site.
TEST_F(CsvSimulationTest, PartitionersDealOutAPooledCsvFile) {
  const std::string text = absl::StrCat(R"([experiment]
sites = 3
rounds = 1
partitions = ["dirichlet:0.5"]
[model]
file = "mlp.pt"
[task]
kind = "binary"
[data]
format = "csv"
train = "data/pooled.csv"
test = "data/test.csv"
[data.csv]
label = "diagnosis"
[standardization]
features = 30
)");
  auto e = ParseExperiment(text, "p.toml", kExample);
  ASSERT_TRUE(e.ok()) << e.status();
  // The resolved file reads back to itself.
  auto again = ParseExperiment(e->ResolvedToml(), "resolved", "/tmp");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << e->ResolvedToml();
  EXPECT_EQ(again->ResolvedToml(), e->ResolvedToml());
  const std::string out = TempDir("pooled");
  auto runs = RunExperiment(*e, out);
  ASSERT_TRUE(runs.ok()) << runs.status();
  const std::string run_dir = out + "/" + (*runs)[0].config.DirName();
  EXPECT_EQ((*runs)[0].config.DirName(), "fedavg__dir-0.5__seed0");
  std::istringstream csv(Slurp(run_dir + "/partition.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "site,examples,noise_std,class_0,class_1");
  const auto run = nlohmann::json::parse(Slurp(run_dir + "/run.json"));
  int64_t rows = 0;
  for (const auto& n : run["sites_examples"]) rows += n.get<int64_t>();
  EXPECT_EQ(rows, 456);
  EXPECT_EQ(run["standardization"]["rows"], 456);
  EXPECT_TRUE(Lines(run_dir + "/metrics.jsonl")[0].contains("auc"));
}

// A regression (the diabetes example): the partitioners deal out examples without classes,
// and the central evaluation reports MSE, MAE and R², no accuracy figures.
TEST_F(CsvSimulationTest, RegressionRunsReportTheRegressionErrors) {
  const std::string text = R"([experiment]
sites = 3
rounds = 2
partitions = ["quantity:1.0"]
[model]
file = "mlp.pt"
[task]
kind = "regression"
[data]
format = "csv"
train = "data/pooled.csv"
test = "data/test.csv"
[data.csv]
label = "progression"
regression = true
[training]
learning_rate = 0.0005
[standardization]
features = 10
)";
  auto e = ParseExperiment(text, "d.toml", std::string(HANSA_SOURCE_DIR) + "/examples/diabetes");
  ASSERT_TRUE(e.ok()) << e.status();
  const std::string out = TempDir("diabetes");
  auto runs = RunExperiment(*e, out);
  ASSERT_TRUE(runs.ok()) << runs.status();
  const std::string run_dir = out + "/" + (*runs)[0].config.DirName();
  EXPECT_THAT(Slurp(run_dir + "/partition.csv"), HasSubstr("site,examples,noise_std,class_0\n"));
  auto lines = Lines(run_dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  for (const char* key : {"mse", "mae", "r2"}) EXPECT_TRUE(lines[1].contains(key)) << key;
  EXPECT_FALSE(lines[1].contains("auc"));
  EXPECT_FALSE(lines[1].contains("balanced_accuracy"));
  EXPECT_LT(lines[1]["mse"].get<double>(), lines[0]["mse"].get<double>()) << lines[1].dump();
}

TEST_F(CsvSimulationTest, ExperimentKeysForAStudysModelAreChecked) {
  const std::string model = "[model]\nfile = \"mlp.pt\"\n[task]\nkind = \"binary\"\n";
  // [data] with `lines`, then [data.csv] with `csv_lines`.
  auto data = [](const std::string& lines, const std::string& csv_lines = "") {
    return absl::StrCat("[data]\nformat = \"csv\"\ntest = \"data/test.csv\"\n", lines,
                        "[data.csv]\nlabel = \"diagnosis\"\n", csv_lines);
  };
  const std::string pooled = "train = \"data/pooled.csv\"\n";
  const std::string files = "site_files = [\"data/site-a.csv\", \"data/site-b.csv\"]\n";
  auto parse = [&](const std::string& text) { return ParseExperiment(text, "t.toml", kExample); };
  struct Case {
    std::string text, error;
    absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  };
  const std::vector<Case> cases = {
      {"[experiment]\nmodel = \"mlp\"\n" + model + data(pooled), "experiment.model and model.file"},
      {"[experiment]\npartitions = [\"dirichlet:0.5\"]\n" + model + data(files),
       "data.site_files gives each of its 2"},
      {"[experiment]\nsites = 3\n" + model + data(files), "must be 2"},
      {model + data(""), "either data.train"},
      {model + data(pooled + files), "either data.train"},
      {"[experiment]\nmodel = \"mlp\"\n[task]\nkind = \"binary\"\n", "need a study's own model"},
      {model + "[data]\ntrain = \"data/pooled.csv\"\n", "need data.format = \"csv\""},
      {model, "trains on CSV data"},
      {"[experiment]\npartitions = [\"#C=1\"]\n[model]\nfile = \"mlp.pt\"\n[task]\nkind = "
       "\"regression\"\n" +
           data(pooled),
       "a regression's examples have none"},
      {"[model]\nfile = \"mlp.pt\"\nbuffers = \"local\"\n[task]\nkind = \"binary\"\n" + data(files),
       "is not simulated", absl::StatusCode::kUnimplemented},
      {"[model]\nfile = \"absent.pt\"\n", "model.file", absl::StatusCode::kNotFound},
      {model + data(files, "regression = true\n"), "data.csv.regression"},
  };
  for (const Case& c : cases) {
    auto e = parse(c.text);
    EXPECT_EQ(e.status().code(), c.code) << c.text << "\n" << e.status();
    EXPECT_THAT(std::string(e.status().message()), HasSubstr(c.error)) << c.text;
  }
  // data.csv keys are site.toml's: a typo is an unknown key.
  auto typo = parse(model + data(files, "labels = \"x\"\n"));
  EXPECT_THAT(std::string(typo.status().message()), HasSubstr("labels"));
  // One file per site sets the sites; the resolved file reads back to itself.
  auto e = parse(model + data(files));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->base.sites, 2);
  auto again = ParseExperiment(e->ResolvedToml(), "resolved", "/tmp");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << e->ResolvedToml();
  EXPECT_EQ(again->ResolvedToml(), e->ResolvedToml());
}

}  // namespace
}  // namespace hansa

// The simulator with a fake training backend (exact arithmetic through the real RoundEngine)
// and, once, with the real Trainer to check run-to-run determinism.
#include "sim/simulation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/model/models.h"
#include "common/privacy/central_gaussian.h"
#include "common/tensor/safetensors.h"
#include "nlohmann/json.hpp"
#include "sim/svg_plot.h"
#include "spdlog/spdlog.h"
#include "tests/support/text_files.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

using test_support::Lines;
using test_support::Slurp;

std::string TempDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/sim_" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

// Local "training" adds 0.01 * (examples at the site) to every weight and reports
// `examples` steps; evaluation reports the first weight as the loss.
class FakeBackend : public SimulationBackend {
 public:
  StatusOr<Model> Train(int, const Model& start, const std::vector<int64_t>& indices,
                        const TrainSettings& settings, TrainResult* result) override {
    Model out = start;
    const float delta = big_site_ && indices.size() == 4 ? 100.0f : 0.01f * indices.size();
    for (float& v : out.values) v += delta;
    result->num_examples = static_cast<int64_t>(indices.size());
    result->steps = static_cast<int64_t>(indices.size());
    last_mu_ = settings.proximal_mu;
    noise_.insert(settings.input_noise_std);
    scaffold_seen_ = scaffold_seen_ || settings.scaffold_correction != nullptr;
    return out;
  }
  StatusOr<EvalResult> Evaluate(int, const Model& model) override {
    EvalResult r = eval_;
    r.accuracy = 0.5;
    r.loss = model.values[0];
    return r;
  }
  EvalResult eval_ = [] {
    EvalResult r;
    r.num_examples = 1;
    return r;
  }();  // the counts Evaluate reports
  bool big_site_ = false;
  double last_mu_ = -1;
  bool scaffold_seen_ = false;
  std::set<double> noise_;  // pool = 1: Train is never called concurrently
};

SimulationConfig TinyConfig(const std::string& strategy) {
  SimulationConfig c;
  c.model = "mlp";
  c.sites = 3;
  c.rounds = 2;
  c.strategy = *ParseStrategySpec(strategy);
  c.training.momentum = 0;
  return c;
}

const std::vector<uint8_t> kTenLabels{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};  // sites get 4, 3, 3

// Every 997th weight of `m` is the initial mlp's plus `move` (the fake backend moves all alike).
void ExpectMovedBy(const Model& m, float move) {
  const Model initial = *InitialModel("mlp", 0);
  for (size_t i = 0; i < initial.values.size(); i += 997) {
    ASSERT_NEAR(m.values[i], initial.values[i] + move, 2e-6) << i;
  }
}

class SimulationTest : public ::testing::Test {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::warn); }
};

TEST_F(SimulationTest, FedAvgAppliesTheExampleWeightedMeanEveryRound) {
  FakeBackend backend;
  const std::string dir = TempDir("fedavg");
  auto r = RunSimulation(TinyConfig("fedavg"), kTenLabels, &backend, dir);
  ASSERT_TRUE(r.ok()) << r.status();
  // Per round: (4 * 0.04 + 3 * 0.03 + 3 * 0.03) / 10 = 0.034.
  ExpectMovedBy(r->final_model, 0.068f);
  const Model initial = *InitialModel("mlp", 0);
  auto lines = Lines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1]["round"], 2);
  EXPECT_EQ(lines[1]["sites"], 3);
  EXPECT_EQ(lines[1]["examples"], 10);
  EXPECT_EQ(lines[1]["per_site"]["site-000"]["examples"], 4);
  EXPECT_NEAR(lines[1]["loss"].get<double>(), initial.values[0] + 0.068, 2e-6);
  for (const char* key : {"accuracy", "seconds", "bytes_up", "bytes_down", "train_seconds"}) {
    EXPECT_TRUE(lines[0].contains(key)) << key;
  }
  EXPECT_THAT(Slurp(dir + "/partition.csv"), HasSubstr("site,examples,noise_std,class_0"));
  EXPECT_THAT(Slurp(dir + "/accuracy.svg"), HasSubstr("<polyline"));
  EXPECT_THAT(Slurp(dir + "/loss.svg"), HasSubstr("</svg>"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/final.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/engine"));  // the per-round engine is cleaned up
}

// The simulator's lines carry the clinical figures of its central evaluation, written by the
// coordinator's own code (coordinator/round_metrics.h): AUC for a binary task, MSE, MAE and R²
// for a regression, nothing that does not apply; counts that do not fit end the run.
TEST_F(SimulationTest, LinesCarryTheCentralEvaluationsAucOrRegressionErrors) {
  FakeBackend binary;
  // Two negatives (bins 1 and 8 of 10), two positives (bins 9 and 7): 3 of 4 pairs ranked right.
  binary.eval_.num_examples = 4;
  binary.eval_.classes = 2;
  binary.eval_.confusion = {1, 1, 0, 2};
  binary.eval_.positive_scores = {0, 0, 0, 0, 0, 0, 0, 1, 0, 1};
  binary.eval_.negative_scores = {0, 1, 0, 0, 0, 0, 0, 0, 1, 0};
  const std::string dir = TempDir("binary_metrics");
  ASSERT_TRUE(RunSimulation(TinyConfig("fedavg"), kTenLabels, &binary, dir).ok());
  auto lines = Lines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_DOUBLE_EQ(lines[1]["auc"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(lines[1]["balanced_accuracy"].get<double>(), 0.75);
  EXPECT_FALSE(lines[1].contains("mse"));

  FakeBackend regression;
  regression.eval_.num_examples = 3;
  // Predictions 1, 2, 3 of targets 1.5, 2, 2: errors 0.5, 0, 1; the targets' mean 11/6.
  for (double i : {1.0, 2.0, 3.0}) regression.eval_.regression.Add(i, i == 1 ? 1.5 : 2.0);
  const std::string rdir = TempDir("regression_metrics");
  ASSERT_TRUE(RunSimulation(TinyConfig("fedavg"), kTenLabels, &regression, rdir).ok());
  lines = Lines(rdir + "/metrics.jsonl");
  EXPECT_NEAR(lines[0]["mse"].get<double>(), 1.25 / 3, 1e-12);
  EXPECT_NEAR(lines[0]["mae"].get<double>(), 0.5, 1e-12);
  EXPECT_NEAR(lines[0]["r2"].get<double>(), 1 - 1.25 / (1.0 / 6), 1e-9);
  EXPECT_FALSE(lines[0].contains("auc"));
  EXPECT_FALSE(lines[0].contains("balanced_accuracy"));

  FakeBackend wrong = binary;
  wrong.eval_.num_examples = 5;
  auto run = RunSimulation(TinyConfig("fedavg"), kTenLabels, &wrong, TempDir("wrong_metrics"));
  EXPECT_EQ(run.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(run.status().message()), HasSubstr("the test set's evaluation"));
}

TEST_F(SimulationTest, FedProxPassesMuAndScaffoldSendsCorrections) {
  FakeBackend prox;
  ASSERT_TRUE(
      RunSimulation(TinyConfig("fedprox:mu=0.25"), kTenLabels, &prox, TempDir("prox")).ok());
  EXPECT_DOUBLE_EQ(prox.last_mu_, 0.25);
  FakeBackend scaffold;
  const std::string dir = TempDir("scaffold");
  auto r = RunSimulation(TinyConfig("scaffold"), kTenLabels, &scaffold, dir);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(scaffold.scaffold_seen_);
  // Round 1: c = 0, c_i = 0; delta_c_i = -(delta_i) / (steps_i * lr) with steps_i = n_i,
  // lr = 0.01: -(0.01 n_i) / (0.01 n_i) = -1 for every site, so c = c_i = -1 after round 1.
  // Round 2: delta_c_i = -c + (-1) = 0, so c stays -1.
  auto state = ReadSafetensorsFile(dir + "/strategy.safetensors");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_NEAR(state->values[0], -1.0f, 1e-4);
  EXPECT_NEAR(state->values[12345], -1.0f, 1e-4);
}

TEST_F(SimulationTest, NoisePartitionGivesSiteIItsNoiseLevel) {
  FakeBackend backend;
  SimulationConfig c = TinyConfig("fedavg");
  c.rounds = 1;
  c.partition = *ParsePartitionSpec("noise:0.1");
  ASSERT_TRUE(RunSimulation(c, kTenLabels, &backend, TempDir("noise")).ok());
  EXPECT_THAT(backend.noise_, ::testing::ElementsAre(0.0, 0.05, 0.1));
}

TEST_F(SimulationTest, FedNovaNormalisesByEachSitesSteps) {
  FakeBackend backend;
  SimulationConfig c = TinyConfig("fednova");
  c.rounds = 1;
  auto r = RunSimulation(c, kTenLabels, &backend, TempDir("nova"));
  ASSERT_TRUE(r.ok()) << r.status();
  // momentum 0: a_i = steps_i = n_i; sum p_i a_i = (16 + 9 + 9) / 10 = 3.4;
  // sum p_i d_i / a_i = 0.01 for every site; step = 3.4 * 0.01 = 0.034 (= FedAvg here).
  const Model initial = *InitialModel("mlp", 0);
  EXPECT_NEAR(r->final_model.values[5], initial.values[5] + 0.034f, 2e-6);
}

TEST_F(SimulationTest, MedianIgnoresOneWildSite) {
  FakeBackend backend;
  backend.big_site_ = true;  // the 4-example site moves every weight by 100
  SimulationConfig c = TinyConfig("median");
  c.rounds = 1;
  auto r = RunSimulation(c, kTenLabels, &backend, TempDir("median"));
  ASSERT_TRUE(r.ok()) << r.status();
  const Model initial = *InitialModel("mlp", 0);
  EXPECT_NEAR(r->final_model.values[7], initial.values[7] + 0.03f, 2e-6);
}

TEST_F(SimulationTest, SummaryGivesMeanAndSampleStdOverSeeds) {
  std::vector<RunResult> runs(2);
  for (int s = 0; s < 2; ++s) {
    runs[s].config = TinyConfig("fedavg");
    runs[s].config.seed = s;
    runs[s].rounds = {{1, 0.5, 1, 1}, {2, 0.6 + 0.2 * s, 1, 1}};
    runs[s].best_accuracy = 0.6 + 0.2 * s;
    runs[s].final_accuracy = 0.6 + 0.2 * s;
  }
  // mean 0.7, sample std sqrt(0.02) = 0.1414
  EXPECT_THAT(SummaryCsv(runs),
              HasSubstr("\"fedavg\",\"homogeneous\",2,2,0.7000,0.1414,0.7000,0.1414"));
  EXPECT_THAT(SummaryMarkdown("t", runs),
              HasSubstr("| homogeneous | fedavg | 2 | 2 | 0.7000 ± 0.1414 |"));
}

TEST_F(SimulationTest, ExperimentFilesAreStrictAndResolveToThemselves) {
  auto e = ParseExperiment(R"(
[experiment]
name = "x"
sites = 4
rounds = 3
repeats = 2
partitions = ["#C=2", "noise:0.1"]
strategies = ["fedavg", "fedprox:mu=0.01"]
[training]
epochs = 2
)",
                           "x.toml", "/tmp");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->Runs().size(), 8u);
  auto again = ParseExperiment(e->ResolvedToml(), "resolved", "/tmp");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << e->ResolvedToml();
  EXPECT_EQ(again->ResolvedToml(), e->ResolvedToml());
  EXPECT_EQ(again->Runs()[7].DirName(), "fedprox-mu-0.01__noise-0.1__seed1");

  auto typo = ParseExperiment("[experiment]\nsitez = 3\n", "typo.toml", "/tmp");
  EXPECT_EQ(typo.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(typo.status().message()), HasSubstr("sitez"));
  auto part = ParseExperiment("[experiment]\npartitions = [\"dir\"]\n", "p.toml", "/tmp");
  EXPECT_THAT(std::string(part.status().message()), HasSubstr("is not one of"));
}

// Secure aggregation as deployed: the virtual sites mask, the engine unmasks the sum, and the
// result is the plaintext one up to the quantization step. max_examples = 10 makes the weights
// 0.4, 0.3, 0.3, so that step (2 / 2^30 on each weighted value) stays far below the tolerance.
SimulationConfig SecureConfig(const std::string& strategy) {
  SimulationConfig c = TinyConfig(strategy);
  c.secure.enabled = true;
  c.secure.max_examples = 10;
  return c;
}

TEST_F(SimulationTest, SecureAggregationGivesThePlaintextResultAndRepeats) {
  FakeBackend backend;
  const std::string dir = TempDir("secure");
  auto r = RunSimulation(SecureConfig("fedavg"), kTenLabels, &backend, dir);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectMovedBy(r->final_model, 0.068f);
  const Model initial = *InitialModel("mlp", 0);
  auto lines = Lines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1]["sites"], 3);
  // The masked upload is the ring words (4 bytes a value, plus the weight) in chunk messages.
  EXPECT_GT(lines[1]["bytes_up"].get<double>(), 3.0 * 4 * initial.values.size());
  // Rounding draws from the seed: a second run is the same to the bit.
  auto again = RunSimulation(SecureConfig("fedavg"), kTenLabels, &backend, TempDir("secure2"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->final_model.values, r->final_model.values);
  // The encoding's clip range applies as deployed: every site's 0.03 or 0.04 becomes 0.02, so
  // two rounds move each weight by 0.04 (plaintext has no such clip).
  SimulationConfig clipped = SecureConfig("fedavg");
  clipped.secure.clip = 0.02;
  auto c = RunSimulation(clipped, kTenLabels, &backend, TempDir("secure-clip"));
  ASSERT_TRUE(c.ok()) << c.status();
  ExpectMovedBy(c->final_model, 0.04f);
}

TEST_F(SimulationTest, ScaffoldAndFedNovaWorkUnderSecureAggregation) {
  FakeBackend backend;
  const std::string dir = TempDir("secure-scaffold");
  auto r = RunSimulation(SecureConfig("scaffold"), kTenLabels, &backend, dir);
  ASSERT_TRUE(r.ok()) << r.status();
  auto state = ReadSafetensorsFile(dir + "/strategy.safetensors");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_NEAR(state->values[0], -1.0f, 1e-4);  // as in plaintext (FedProxPassesMu... above)
  EXPECT_NEAR(state->values[12345], -1.0f, 1e-4);
  SimulationConfig nova = TinyConfig("fednova");
  auto plain = RunSimulation(nova, kTenLabels, &backend, TempDir("plain-nova"));
  nova.secure = SecureConfig("fednova").secure;
  auto secure = RunSimulation(nova, kTenLabels, &backend, TempDir("secure-nova"));
  ASSERT_TRUE(plain.ok() && secure.ok()) << plain.status() << secure.status();
  for (size_t i = 0; i < plain->final_model.values.size(); i += 997) {
    ASSERT_NEAR(secure->final_model.values[i], plain->final_model.values[i], 1e-5) << i;
  }
}

// Against a malicious coordinator the virtual sites sign with their certificates' keys and run
// the consistency check, as hansa-client does; the masks still cancel, so the run is the
// honest-but-curious one to the bit, in process and over gRPC.
TEST_F(SimulationTest, MaliciousModeRunsAsDeployedAndGivesTheSameSum) {
  FakeBackend backend;
  auto honest = RunSimulation(SecureConfig("fedavg"), kTenLabels, &backend, TempDir("honest"));
  ASSERT_TRUE(honest.ok()) << honest.status();
  for (Transport transport : {Transport::kInProcess, Transport::kGrpc}) {
    SimulationConfig c = SecureConfig("fedavg");
    c.secure.malicious = true;
    c.transport = transport;
    auto r = RunSimulation(c, kTenLabels, &backend, TempDir("malicious"));
    ASSERT_TRUE(r.ok()) << r.status() << " " << TransportName(transport);
    EXPECT_EQ(r->final_model.values, honest->final_model.values) << TransportName(transport);
  }
  auto parsed = ParseExperiment(
      "[experiment]\nsites = 3\n[aggregation]\nmode = \"secure\"\n"
      "malicious_coordinator_checks = true\n",
      "m.toml", "/tmp");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->base.secure.malicious);
}

TEST_F(SimulationTest, SecureAggregationRefusesWhatItCannotProtect) {
  FakeBackend backend;
  auto median = RunSimulation(SecureConfig("median"), kTenLabels, &backend, TempDir("s-median"));
  EXPECT_EQ(median.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(median.status().message()), HasSubstr("only their sum"));
  SimulationConfig dp = SecureConfig("fedavg");
  dp.client_privacy.enabled = true;
  auto both = RunSimulation(dp, kTenLabels, &backend, TempDir("s-dp"));
  EXPECT_THAT(std::string(both.status().message()), HasSubstr("needs plaintext aggregation"));

  const char* base = "[experiment]\nsites = 3\n[aggregation]\n";
  auto parsed =
      ParseExperiment(absl::StrCat(base, "mode = \"secure\"\nbits = 24\n"), "s.toml", "/tmp");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->base.secure.enabled);
  EXPECT_EQ(parsed->base.secure.bits, 24);
  auto again = ParseExperiment(parsed->ResolvedToml(), "resolved", "/tmp");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << parsed->ResolvedToml();
  EXPECT_EQ(again->ResolvedToml(), parsed->ResolvedToml());
  for (auto [text, why] : {std::pair{"mode = \"secret\"\n", "must be \"plaintext\" or"},
                           std::pair{"unmask_device = \"gpu\"\n", "must be \"auto\" or"}}) {
    auto bad = ParseExperiment(absl::StrCat(base, text), "bad.toml", "/tmp");
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr(why)) << text;
  }
  auto two = ParseExperiment("[experiment]\nsites = 2\n[aggregation]\nmode = \"secure\"\n",
                             "two.toml", "/tmp");
  EXPECT_THAT(std::string(two.status().message()), HasSubstr("secure aggregation of 2 sites"));
  auto robust = ParseExperiment(
      "[experiment]\nsites = 3\nstrategies = [\"krum\"]\n[aggregation]\nmode = \"secure\"\n",
      "krum.toml", "/tmp");
  EXPECT_THAT(std::string(robust.status().message()), HasSubstr("only their sum"));
}

// "transport = grpc": the virtual sites reach each round's engine over gRPC with mutual TLS on
// 127.0.0.1, and the run is the in-process run to the bit (the same sums in the same order),
// plaintext and secure, with a strategy that sends extra tensors.
TEST_F(SimulationTest, GrpcOnLoopbackGivesTheInProcessRunToTheBit) {
  for (SimulationConfig config :
       {TinyConfig("fedavg"), SecureConfig("fedavg"), TinyConfig("scaffold")}) {
    FakeBackend backend;
    const std::string label = config.Label() + (config.secure.enabled ? " secure" : "");
    const std::string name =
        absl::StrCat("transport-", config.strategy.name, config.secure.enabled ? "-secure" : "");
    const std::string local_dir = TempDir(name + "-local");
    auto local = RunSimulation(config, kTenLabels, &backend, local_dir);
    config.transport = Transport::kGrpc;
    const std::string dir = TempDir(name + "-grpc");
    auto remote = RunSimulation(config, kTenLabels, &backend, dir);
    ASSERT_TRUE(local.ok()) << local.status() << " " << label;
    ASSERT_TRUE(remote.ok()) << remote.status() << " " << label;
    EXPECT_EQ(remote->final_model.values, local->final_model.values) << label;
    auto lines = Lines(dir + "/metrics.jsonl");
    auto local_lines = Lines(local_dir + "/metrics.jsonl");
    ASSERT_EQ(lines.size(), 2u);
    ASSERT_EQ(local_lines.size(), 2u);
    EXPECT_EQ(lines[1]["bytes_up"], local_lines[1]["bytes_up"]) << label;
    EXPECT_EQ(lines[1]["loss"], local_lines[1]["loss"]) << label;
    EXPECT_THAT(Slurp(dir + "/run.json"), HasSubstr("\"transport\": \"grpc\""));
  }
  auto e = ParseExperiment("[experiment]\ntransport = \"grpc\"\n", "g.toml", "/tmp");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->base.transport, Transport::kGrpc);
  auto again = ParseExperiment(e->ResolvedToml(), "resolved", "/tmp");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->base.transport, Transport::kGrpc);
  auto bad = ParseExperiment("[experiment]\ntransport = \"tcp\"\n", "t.toml", "/tmp");
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("\"in-process\" or \"grpc\""));
}

// A site whose training fails ends the run with its error, in process and over gRPC (where the
// round's server goes down with the failed round), instead of hanging or losing the cause.
TEST_F(SimulationTest, AFailingSiteEndsTheRunWithItsError) {
  class FailsInRoundTwo : public FakeBackend {
   public:
    StatusOr<Model> Train(int slot, const Model& start, const std::vector<int64_t>& indices,
                          const TrainSettings& settings, TrainResult* result) override {
      if (++calls_ > 3 && indices.size() == 3) return absl::InternalError("disk full");
      return FakeBackend::Train(slot, start, indices, settings, result);
    }
    int calls_ = 0;
  };
  for (Transport transport : {Transport::kInProcess, Transport::kGrpc}) {
    for (bool secure : {false, true}) {
      FailsInRoundTwo backend;
      SimulationConfig config = secure ? SecureConfig("fedavg") : TinyConfig("fedavg");
      config.transport = transport;
      const std::string what = absl::StrCat(TransportName(transport), secure ? " secure" : "");
      auto r = RunSimulation(config, kTenLabels, &backend, TempDir("fails"));
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << what << ": " << r.status();
      EXPECT_THAT(std::string(r.status().message()), HasSubstr("disk full")) << what;
      EXPECT_THAT(std::string(r.status().message()), HasSubstr("training")) << what;
      EXPECT_EQ(Lines(::testing::TempDir() + "/sim_fails/metrics.jsonl").size(), 1u) << what;
    }
  }
}

// min_sites below the sites only says how many a round needs: with no site dropping out the
// run is the one of every site, to the bit, in process and over gRPC (the engine waits for every
// site to join before it plans, not only for min_sites of them).
TEST_F(SimulationTest, MinSitesBelowTheSitesGivesTheSameRunWhenNoSiteDrops) {
  for (Transport transport : {Transport::kInProcess, Transport::kGrpc}) {
    FakeBackend backend;
    SimulationConfig config = TinyConfig("scaffold");
    config.transport = transport;
    const std::string every_dir = TempDir("min-sites-every");
    auto every = RunSimulation(config, kTenLabels, &backend, every_dir);
    config.min_sites = 1;
    const std::string one_dir = TempDir("min-sites-one");
    auto one = RunSimulation(config, kTenLabels, &backend, one_dir);
    ASSERT_TRUE(every.ok()) << every.status();
    ASSERT_TRUE(one.ok()) << one.status();
    EXPECT_EQ(one->final_model.values, every->final_model.values) << TransportName(transport);
    auto a = Lines(every_dir + "/metrics.jsonl"), b = Lines(one_dir + "/metrics.jsonl");
    ASSERT_EQ(b.size(), 2u);
    for (size_t r = 0; r < 2; ++r) {
      EXPECT_EQ(b[r]["sites"], 3);
      EXPECT_EQ(b[r]["per_site"], a[r]["per_site"]);
      EXPECT_EQ(b[r]["bytes_up"], a[r]["bytes_up"]);
      EXPECT_FALSE(b[r].contains("dropped"));
    }
    EXPECT_THAT(Slurp(one_dir + "/run.json"), HasSubstr("\"min_sites\": 1"));
    EXPECT_THAT(Slurp(every_dir + "/run.json"), ::testing::Not(HasSubstr("min_sites")));
  }
}

TEST_F(SimulationTest, MinSitesIsCheckedAndResolvesToItself) {
  const std::string head = "[experiment]\nsites = 4\n";
  auto e = ParseExperiment(head + "min_sites = 3\n", "m.toml", "/tmp");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->base.min_sites, 3);
  EXPECT_EQ(e->Runs()[0].MinSites(), 3);
  EXPECT_THAT(e->ResolvedToml(), HasSubstr("min_sites = 3\n"));
  auto again = ParseExperiment(e->ResolvedToml(), "resolved", "/tmp");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->ResolvedToml(), e->ResolvedToml());
  // Unset: every site, and experiment.toml as it was before min_sites existed.
  auto every = ParseExperiment(head, "e.toml", "/tmp");
  ASSERT_TRUE(every.ok()) << every.status();
  EXPECT_EQ(every->base.MinSites(), 4);
  EXPECT_THAT(every->ResolvedToml(), ::testing::Not(HasSubstr("min_sites")));
  // A run folder of every site is another experiment's for min_sites = 3: nothing there is
  // taken for its cells.
  const std::string dir = TempDir("min-sites-dir");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/experiment.toml") << every->ResolvedToml();
  EXPECT_TRUE(CheckRunDir(*every, dir).ok());
  EXPECT_EQ(CheckRunDir(*e, dir).code(), absl::StatusCode::kFailedPrecondition);

  auto above = ParseExperiment(head + "min_sites = 5\n", "a.toml", "/tmp");
  EXPECT_EQ(above.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(above.status().message()),
              HasSubstr("experiment.min_sites = 5 but the run has 4 sites; it must be 1..4"));
  auto zero = ParseExperiment(head + "min_sites = 0\n", "z.toml", "/tmp");
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(zero.status().message()), HasSubstr("min_sites"));
  const std::string secure = "[aggregation]\nmode = \"secure\"\n";
  auto two = ParseExperiment(head + "min_sites = 2\n" + secure, "s.toml", "/tmp");
  EXPECT_EQ(two.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(two.status().message()),
              HasSubstr("secure aggregation needs experiment.min_sites >= 3 (it is 2)"));
  // The SecAgg+ parameters must fit every cohort from min_sites up, as coordinator.toml's do.
  auto threshold =
      ParseExperiment(head + "min_sites = 3\n" + secure + "threshold = 3\n", "t.toml", "/tmp");
  EXPECT_EQ(threshold.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(threshold.status().message()),
              HasSubstr("secure aggregation of 3 sites"));
  EXPECT_TRUE(ParseExperiment(head + secure + "threshold = 3\n", "all.toml", "/tmp").ok());
  EXPECT_TRUE(ParseExperiment(head + "min_sites = 3\n" + secure, "ok.toml", "/tmp").ok());
}

// Every experiment file shipped in examples/ reads without an error.
TEST_F(SimulationTest, ShippedExperimentFilesAreValid) {
  int files = 0;
  for (const char* dir : {"/examples/niid-bench", "/examples/dp"}) {
    for (const auto& entry :
         std::filesystem::directory_iterator(HANSA_SOURCE_DIR + std::string(dir))) {
      if (entry.path().extension() != ".toml") continue;
      auto e = LoadExperiment(entry.path().string());
      EXPECT_TRUE(e.ok()) << e.status();
      ++files;
    }
  }
  EXPECT_EQ(files, 14);
}

TEST_F(SimulationTest, PlotsEscapeTextAndDrawOneLinePerSeries) {
  std::string svg = LinePlotSvg({"a <b>", "round", "acc", {{"x", {0.1, 0.5}}, {"y&z", {0.2}}}});
  EXPECT_THAT(svg, HasSubstr("a &lt;b&gt;"));
  EXPECT_THAT(svg, HasSubstr("y&amp;z"));
  size_t lines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 2u);
}

// The real Trainer: the same experiment twice gives bit-identical metrics and models.
TEST_F(SimulationTest, RealTrainingIsDeterministicRunAfterRun) {
  StatusOr<Dataset> train = LoadMnistStyle(kFashionMnistDir, Split::kTrain);
  StatusOr<Dataset> test = LoadMnistStyle(kFashionMnistDir, Split::kTest);
  ASSERT_TRUE(train.ok() && test.ok());
  Dataset small_train = Head(*train, 600), small_test = Head(*test, 200);
  SimulationConfig c = TinyConfig("fedavg");
  c.partition = *ParsePartitionSpec("dirichlet:0.5");
  c.training.batch_size = 32;
  c.training.momentum = 0.9;
  std::vector<RunResult> results;
  std::vector<std::string> metrics;
  for (int k = 0; k < 2; ++k) {
    auto backend = CreateTorchBackend(&small_train, &small_test, "mlp", "cpu", 1, 1);
    ASSERT_TRUE(backend.ok()) << backend.status();
    const std::string dir = TempDir(absl::StrCat("determinism", k));
    auto r = RunSimulation(c, small_train.labels, backend->get(), dir);
    ASSERT_TRUE(r.ok()) << r.status();
    results.push_back(*r);
    EXPECT_GT(r->final_accuracy, 0.2);  // it learns: chance is 0.1
    metrics.push_back(Slurp(dir + "/partition.csv"));
  }
  ASSERT_EQ(results[0].rounds.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(results[0].rounds[i].accuracy, results[1].rounds[i].accuracy);
    EXPECT_EQ(results[0].rounds[i].loss, results[1].rounds[i].loss);
  }
  EXPECT_EQ(results[0].final_model.values, results[1].final_model.values);
  EXPECT_EQ(metrics[0], metrics[1]);
}

// Client-level privacy in simulation, as the deployed plaintext mechanism: every site's update
// is clipped to C, the mean over the sites is unweighted and carries N(0, (z C / n)^2) noise,
// and epsilon is the central Gaussian's with q = 1.
TEST_F(SimulationTest, ClientPrivacyClipsAveragesAndNoisesAsDeployed) {
  FakeBackend backend;
  SimulationConfig c = TinyConfig("fedavg");
  c.client_privacy.enabled = true;
  c.client_privacy.clip_norm = 1.0;
  c.client_privacy.noise_multiplier = 0.01;
  const std::string dir = TempDir("client-dp");
  auto r = RunSimulation(c, kTenLabels, &backend, dir);
  ASSERT_TRUE(r.ok()) << r.status();
  // Each site moves every weight by the same amount: clipped, that is 1/sqrt(d) per weight
  // whatever the site's size, so the unweighted mean of two rounds is 2/sqrt(d).
  const Model initial = *InitialModel("mlp", 0);
  const double d = static_cast<double>(initial.values.size());
  double sum = 0, sum2 = 0;
  for (size_t i = 0; i < initial.values.size(); ++i) {
    const double move = static_cast<double>(r->final_model.values[i]) - initial.values[i];
    sum += move;
    sum2 += move * move;
  }
  const double mean = sum / d, stddev = std::sqrt(sum2 / d - mean * mean);
  const double noise = std::sqrt(2.0) * 0.01 * 1.0 / 3;  // two rounds of z C / n
  EXPECT_NEAR(mean, 2 / std::sqrt(d), 5 * noise / std::sqrt(d));
  EXPECT_NEAR(stddev / noise, 1.0, 0.02);
  auto lines = Lines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  for (int round = 1; round <= 2; ++round) {
    auto expected = CentralGaussianEpsilon(3, 3, 0.01, round, 1e-5);
    ASSERT_TRUE(expected.ok());
    EXPECT_DOUBLE_EQ(lines[round - 1]["epsilon"].get<double>(), expected->epsilon);
    EXPECT_DOUBLE_EQ(r->rounds[round - 1].client_epsilon, expected->epsilon);
  }
  EXPECT_THAT(SummaryCsv({*r}), HasSubstr(",client_epsilon"));
  // The noise draws from the run's seed: a second run is the same to the bit, another seed not.
  auto again = RunSimulation(c, kTenLabels, &backend, TempDir("client-dp-again"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->final_model.values, r->final_model.values);
  SimulationConfig other = c;
  other.seed = c.seed + 1;
  auto reseeded = RunSimulation(other, kTenLabels, &backend, TempDir("client-dp-other"));
  ASSERT_TRUE(reseeded.ok()) << reseeded.status();
  EXPECT_NE(reseeded->final_model.values, r->final_model.values);
  // A robust aggregator would look at every site's update, past the mechanism.
  c.strategy = *ParseStrategySpec("median");
  auto median = RunSimulation(c, kTenLabels, &backend, TempDir("client-dp-median"));
  EXPECT_EQ(median.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(median.status().message()), HasSubstr("client-level privacy"));
}

// Record-level DP-SGD in simulation: planned as deployed (the last round spends the budget),
// and drawn from the run's seed, so that a run repeats exactly.
TEST_F(SimulationTest, RecordPrivacyRunsRepeatAndSpendTheirBudget) {
  StatusOr<Dataset> train = LoadMnistStyle(kFashionMnistDir, Split::kTrain);
  StatusOr<Dataset> test = LoadMnistStyle(kFashionMnistDir, Split::kTest);
  ASSERT_TRUE(train.ok() && test.ok());
  Dataset small_train = Head(*train, 600), small_test = Head(*test, 200);
  SimulationConfig c = TinyConfig("fedavg");
  c.training.learning_rate = 0.1;
  c.record_privacy.enabled = true;
  c.record_privacy.sampling_rate = 0.1;
  c.record_privacy.budget = {5.0, 1e-5};
  std::vector<RunResult> results;
  for (int k = 0; k < 2; ++k) {
    auto backend = CreateTorchBackend(&small_train, &small_test, "mlp", "cpu", 1, 1);
    ASSERT_TRUE(backend.ok()) << backend.status();
    const std::string dir = TempDir(absl::StrCat("record-dp", k));
    auto r = RunSimulation(c, small_train.labels, backend->get(), dir);
    ASSERT_TRUE(r.ok()) << r.status();
    results.push_back(*r);
    EXPECT_THAT(Slurp(dir + "/metrics.jsonl"), HasSubstr("\"record_epsilon\":"));
  }
  const std::vector<RoundMetrics>& rounds = results[0].rounds;
  ASSERT_EQ(rounds.size(), 2u);
  EXPECT_GT(rounds[0].record_epsilon, 0);
  EXPECT_LT(rounds[0].record_epsilon, rounds[1].record_epsilon);
  EXPECT_LE(rounds[1].record_epsilon, 5.0);
  EXPECT_GT(rounds[1].record_epsilon, 5.0 * (1 - 1e-4));
  EXPECT_EQ(results[0].final_model.values, results[1].final_model.values);
  EXPECT_THAT(SummaryMarkdown("dp", results), HasSubstr("record ε"));
}

}  // namespace
}  // namespace hansa

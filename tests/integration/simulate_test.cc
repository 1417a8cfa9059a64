// `hansa simulate` as a researcher runs it: the 2-round NIID-Bench example with the four
// NIID-Bench strategies. Run-to-run determinism is checked in tests/unit/simulation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "nlohmann/json.hpp"

namespace {

using ::testing::HasSubstr;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  if (v && *v) return v;
  if (std::string(name) == "HANSA_SOURCE_DIR") return HANSA_SOURCE_DIR_FALLBACK;
  return HANSA_BUILD_DIR_FALLBACK;
}

// Runs an experiment file (default: the tiny example) into `out`; returns the exit status.
int Simulate(const std::string& out, std::string experiment = "") {
  if (experiment.empty()) experiment = Env("HANSA_SOURCE_DIR") + "/examples/niid-bench/tiny.toml";
  std::filesystem::remove_all(out);
  const std::string cmd = Env("HANSA_BUILD_DIR") + "/tools/hansa simulate " + experiment +
                          " --out " + out + " > " + out + ".log 2>&1";
  return std::system(cmd.c_str());
}

// The metrics.jsonl lines of a run folder.
std::vector<nlohmann::json> Rounds(const std::string& run) {
  std::istringstream lines(Slurp(run + "/metrics.jsonl"));
  std::vector<nlohmann::json> rounds;
  for (std::string line; std::getline(lines, line);) rounds.push_back(nlohmann::json::parse(line));
  return rounds;
}

TEST(SimulateCommandTest, TinyNiidBenchRunsAndLearns) {
  const std::string a = ::testing::TempDir() + "/simulate_a";
  ASSERT_EQ(Simulate(a), 0) << Slurp(a + ".log");
  const std::string summary = Slurp(a + "/summary.md");
  for (const char* s : {"| dir(0.5) | fedavg |", "| dir(0.5) | fedprox:mu=0.01 |",
                        "| dir(0.5) | scaffold |", "| dir(0.5) | fednova |"}) {
    EXPECT_THAT(summary, HasSubstr(s));
  }
  EXPECT_THAT(Slurp(a + ".log"), HasSubstr("round 2/2"));
  const std::string run = a + "/fedavg__dir-0.5__seed0";
  std::vector<nlohmann::json> rounds = Rounds(run);
  ASSERT_EQ(rounds.size(), 2u);
  EXPECT_EQ(rounds[1]["sites"], 3);
  EXPECT_EQ(rounds[1]["per_site"].size(), 3u);
  EXPECT_GT(rounds[1]["accuracy"].get<double>(), 0.25);  // chance is 0.1; measured 0.41
  for (const char* f : {"/partition.csv", "/run.json", "/accuracy.svg", "/loss.svg"}) {
    EXPECT_TRUE(std::filesystem::exists(run + f)) << f;
  }
  EXPECT_TRUE(std::filesystem::exists(a + "/experiment.toml"));
  EXPECT_THAT(Slurp(a + "/summary.csv"), HasSubstr("best_accuracy_mean"));
}

// The same slice with secure aggregation, FedAvg and SCAFFOLD: the virtual sites mask, the
// engine unmasks the sum, and the accuracy is the plaintext run's within a point (measured on
// 1,000 test images: equal for FedAvg; SCAFFOLD 0.002 apart on an AMD EPYC, 0.006 on an Intel
// Xeon, where the quantized sum tips a few more images). Then FedAvg over real gRPC on
// loopback, which must give the in-process run exactly.
TEST(SimulateCommandTest, TinyNiidBenchUnderSecureAggregationLearnsAsPlaintext) {
  const std::string dir = ::testing::TempDir() + "/simulate_secure";
  std::filesystem::create_directories(dir);
  std::string tiny = Slurp(Env("HANSA_SOURCE_DIR") + "/examples/niid-bench/tiny.toml");
  const std::string all = R"(["fedavg", "fedprox:mu=0.01", "scaffold", "fednova"])";
  ASSERT_NE(tiny.find(all), std::string::npos);
  tiny.replace(tiny.find(all), all.size(), R"(["fedavg", "scaffold"])");
  for (const char* mode : {"plaintext", "secure"}) {
    std::ofstream(dir + "/" + mode + ".toml")
        << tiny << "\n[aggregation]\nmode = \"" << mode << "\"\n";
    ASSERT_EQ(Simulate(dir + "/" + mode, dir + "/" + mode + ".toml"), 0)
        << Slurp(dir + "/" + mode + ".log");
  }
  EXPECT_THAT(Slurp(dir + "/secure.log"), HasSubstr("secure aggregation"));
  EXPECT_THAT(Slurp(dir + "/secure/experiment.toml"), HasSubstr("mode = \"secure\""));
  for (const char* run : {"/fedavg__dir-0.5__seed0", "/scaffold__dir-0.5__seed0"}) {
    std::vector<nlohmann::json> plain = Rounds(dir + "/plaintext" + run);
    std::vector<nlohmann::json> secure = Rounds(dir + "/secure" + run);
    ASSERT_EQ(plain.size(), 2u);
    ASSERT_EQ(secure.size(), 2u);
    EXPECT_EQ(secure[1]["sites"], 3);
    EXPECT_NEAR(secure[1]["accuracy"].get<double>(), plain[1]["accuracy"].get<double>(), 0.01)
        << run;
  }
  // FedAvg again with the sites over gRPC with mutual TLS on loopback: the same run to the bit.
  std::string fedavg = tiny;
  const std::string two = R"(["fedavg", "scaffold"])";
  fedavg.replace(fedavg.find(two), two.size(), R"(["fedavg"])");
  fedavg.replace(fedavg.find("[experiment]\n"), 13, "[experiment]\ntransport = \"grpc\"\n");
  std::ofstream(dir + "/grpc.toml") << fedavg << "\n[aggregation]\nmode = \"secure\"\n";
  ASSERT_EQ(Simulate(dir + "/grpc", dir + "/grpc.toml"), 0) << Slurp(dir + "/grpc.log");
  EXPECT_THAT(Slurp(dir + "/grpc.log"), HasSubstr("gRPC with mutual TLS"));
  std::vector<nlohmann::json> local = Rounds(dir + "/secure/fedavg__dir-0.5__seed0");
  std::vector<nlohmann::json> remote = Rounds(dir + "/grpc/fedavg__dir-0.5__seed0");
  ASSERT_EQ(remote.size(), 2u);
  for (size_t r = 0; r < 2; ++r) {
    for (const char* key : {"accuracy", "loss", "bytes_up", "bytes_down"}) {
      EXPECT_EQ(remote[r][key], local[r][key]) << key << " in round " << r + 1;
    }
  }
  EXPECT_EQ(Slurp(dir + "/grpc/fedavg__dir-0.5__seed0/final.safetensors"),
            Slurp(dir + "/secure/fedavg__dir-0.5__seed0/final.safetensors"));
}

}  // namespace

namespace {

// A study's own model as a researcher simulates it: the breast-cancer example's TorchScript
// MLP on three virtual sites, each with its own CSV file, secure aggregation and pooled
// standardisation; the experiment file resolved beside the results reads back to the same run.
TEST(SimulateCommandTest, BreastCancerExampleTrainsTheStudysModelOnItsSiteFiles) {
  const std::string out = ::testing::TempDir() + "/simulate_breast_cancer";
  ASSERT_EQ(Simulate(out, Env("HANSA_SOURCE_DIR") + "/examples/breast-cancer/simulate.toml"), 0)
      << Slurp(out + ".log");
  EXPECT_THAT(Slurp(out + ".log"), HasSubstr("secure aggregation"));
  EXPECT_THAT(Slurp(out + "/summary.md"), HasSubstr("| files | fedavg | 1 | 10 |"));
  std::vector<nlohmann::json> rounds = Rounds(out + "/fedavg__files__seed0");
  ASSERT_EQ(rounds.size(), 10u);
  // Measured: accuracy 0.947, AUC 0.993 after 10 rounds (pooled training: 0.982, 0.999).
  EXPECT_GT(rounds[9]["accuracy"].get<double>(), 0.9);
  EXPECT_GT(rounds[9]["auc"].get<double>(), 0.97);
  EXPECT_EQ(rounds[9]["per_site"]["site-001"]["examples"], 211);

  const std::string again = out + "_again";
  ASSERT_EQ(Simulate(again, out + "/experiment.toml"), 0) << Slurp(again + ".log");
  EXPECT_EQ(Rounds(again + "/fedavg__files__seed0")[9]["accuracy"], rounds[9]["accuracy"]);
}

}  // namespace

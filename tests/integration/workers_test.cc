// `hansa simulate` over two worker processes started as torchrun starts them (RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT): the same run to the bit as one process, in plaintext
// and secure mode; a killed worker's sites drop out and the cell goes on while min_sites
// remain, else the cell fails naming them; with --workers-local, at once.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/integration/harness.h"

extern char** environ;

namespace {

using ::hansa::testing::FreePort;  // rank 0's store port
using ::testing::HasSubstr;
using ::testing::Not;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string BuildDir() {
  const char* v = std::getenv("HANSA_BUILD_DIR");
  return v && *v ? v : HANSA_BUILD_DIR_FALLBACK;
}

// A tiny cell: 4 sites, an mlp on 1,200 Fashion-MNIST images, a few seconds per run.
std::string Experiment(int workers, const std::string& extra = "",
                       const std::string& strategies = R"(["fedavg", "scaffold"])",
                       int rounds = 2) {
  std::string toml = "[experiment]\nname = \"workers-tiny\"\nmodel = \"mlp\"\nsites = 4\n";
  toml += "rounds = " + std::to_string(rounds) + "\nseed = 0\n";
  toml += "partitions = [\"dirichlet:0.5\"]\nstrategies = " + strategies + "\n";
  toml += "train_limit = 1200\ntest_limit = 300\nthreads = 1\n";
  if (workers > 1) toml += "workers = " + std::to_string(workers) + "\n";
  toml += extra;
  toml += "\n[training]\nepochs = 1\nbatch_size = 32\nlearning_rate = 0.05\nmomentum = 0.9\n";
  return toml;
}

// `hansa simulate EXPERIMENT --out OUT [FLAGS]` with the torchrun variables of `rank` (none
// when rank < 0), its output in OUT.rank<r>.log; returns the child's pid.
pid_t Start(const std::string& experiment, const std::string& out, int rank, int world, int port,
            const std::string& flags = "") {
  const std::string log = out + ".rank" + std::to_string(rank < 0 ? 0 : rank) + ".log";
  const std::string cmd = "exec " + BuildDir() + "/tools/hansa simulate " + experiment + " --out " +
                          out + " " + flags + " > " + log + " 2>&1";
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  if (rank >= 0) {
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("WORLD_SIZE=" + std::to_string(world));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(port));
  }
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", c = "-c", line = cmd;
  char* argv[] = {sh.data(), c.data(), line.data(), nullptr};
  pid_t pid = -1;
  if (::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv, envp.data()) != 0) return -1;
  return pid;
}

// The exit code (or 128 + signal) of `pid`, or -1 after `seconds` (the child is then killed).
int Wait(pid_t pid, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (;;) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string Write(const std::string& name, const std::string& text) {
  const std::string dir = ::testing::TempDir() + "/simulate_workers";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// Runs `one` (workers = 1) and `two` (workers = 2) into <name>_one and <name>_two: the two
// ranks started here as a launcher would, or by rank 0 itself (`local`: --workers-local).
void RunBoth(const std::string& name, const std::string& one, const std::string& two, bool local,
             std::string* out_one, std::string* out_two) {
  *out_one = ::testing::TempDir() + "/simulate_workers/" + name + "_one";
  *out_two = ::testing::TempDir() + "/simulate_workers/" + name + "_two";
  std::filesystem::remove_all(*out_one);
  std::filesystem::remove_all(*out_two);
  ASSERT_EQ(Wait(Start(Write(name + "_one.toml", one), *out_one, -1, 1, 0), 300), 0)
      << Slurp(*out_one + ".rank0.log");
  const std::string experiment = Write(name + "_two.toml", two);
  if (local) {
    ASSERT_EQ(Wait(Start(experiment, *out_two, -1, 1, 0, "--workers-local"), 300), 0)
        << Slurp(*out_two + ".rank0.log");
    EXPECT_THAT(Slurp(*out_two + ".rank0.log"), HasSubstr("worker 1 of 2"));
    return;
  }
  const int port = FreePort();
  const pid_t rank1 = Start(experiment, *out_two, 1, 2, port);
  const pid_t rank0 = Start(experiment, *out_two, 0, 2, port);
  const int rc0 = Wait(rank0, 300), rc1 = Wait(rank1, 60);
  ASSERT_EQ(rc0, 0) << Slurp(*out_two + ".rank0.log");
  ASSERT_EQ(rc1, 0) << Slurp(*out_two + ".rank1.log");
  EXPECT_THAT(Slurp(*out_two + ".rank1.log"), HasSubstr("worker 1 of 2"));
}

std::vector<nlohmann::json> Rounds(const std::string& run) {
  std::istringstream lines(Slurp(run + "/metrics.jsonl"));
  std::vector<nlohmann::json> rounds;
  for (std::string line; std::getline(lines, line);) rounds.push_back(nlohmann::json::parse(line));
  return rounds;
}

// Everything but the timings, and the model, to the bit.
void ExpectSameRun(const std::string& a, const std::string& b) {
  std::vector<nlohmann::json> ra = Rounds(a), rb = Rounds(b);
  ASSERT_EQ(ra.size(), 2u) << a;
  ASSERT_EQ(rb.size(), 2u) << b;
  for (size_t r = 0; r < ra.size(); ++r) {
    for (const char* key : {"accuracy", "loss", "sites", "bytes_up", "bytes_down", "examples"}) {
      EXPECT_EQ(rb[r][key], ra[r][key]) << key << " in round " << r + 1 << " of " << b;
    }
    for (const auto& [site, figures] : ra[r]["per_site"].items()) {
      for (const char* key : {"train_loss", "steps", "examples"}) {
        EXPECT_EQ(rb[r]["per_site"][site][key], figures[key]) << site << " " << key;
      }
    }
  }
  EXPECT_EQ(Slurp(b + "/final.safetensors"), Slurp(a + "/final.safetensors")) << b;
  EXPECT_EQ(Slurp(b + "/strategy.safetensors"), Slurp(a + "/strategy.safetensors")) << b;
  EXPECT_EQ(Slurp(b + "/partition.csv"), Slurp(a + "/partition.csv")) << b;
}

TEST(SimulateWorkersTest, TwoWorkersGiveTheOneProcessRunToTheBit) {
  std::string one, two;
  RunBoth("plain", Experiment(1), Experiment(2), /*local=*/false, &one, &two);
  // SCAFFOLD: worker 1's sites keep their control variates across rounds in their process.
  for (const char* run : {"/fedavg__dir-0.5__seed0", "/scaffold__dir-0.5__seed0"}) {
    ExpectSameRun(one + run, two + run);
  }
  EXPECT_THAT(Slurp(two + "/experiment.toml"), HasSubstr("workers = 2"));
}

// The workers started by rank 0 itself (--workers-local), in malicious-coordinator mode:
// worker 1's sites sign with the keys rank 0 issued them.
TEST(SimulateWorkersTest, SecureAggregationOverWorkersIsTheOneProcessRunToTheBit) {
  const std::string secure =
      "\n[aggregation]\nmode = \"secure\"\nmalicious_coordinator_checks = true\n";
  std::string one, two;
  RunBoth("secure", Experiment(1, "", R"(["fedavg"])") + secure,
          Experiment(2, "", R"(["fedavg"])") + secure, /*local=*/true, &one, &two);
  ExpectSameRun(one + "/fedavg__dir-0.5__seed0", two + "/fedavg__dir-0.5__seed0");
}

TEST(SimulateWorkersTest, AKilledWorkerFailsTheCellNamingItsSites) {
  const std::string experiment =
      Write("killed.toml", Experiment(2, "worker_timeout = 5\n", R"(["fedavg"])", 500));
  const std::string out = ::testing::TempDir() + "/simulate_workers/killed";
  std::filesystem::remove_all(out);
  const int port = FreePort();
  const pid_t rank1 = Start(experiment, out, 1, 2, port);
  const pid_t rank0 = Start(experiment, out, 0, 2, port);
  // Once a round is done, worker 1 dies.
  const std::string metrics = out + "/fedavg__dir-0.5__seed0/metrics.jsonl";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (Slurp(metrics).empty() && std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(rank0, &status, WNOHANG) == rank0) {
      ::kill(rank1, SIGKILL);
      Wait(rank1, 60);
      FAIL() << "rank 0 ended before its first round: " << Slurp(out + ".rank0.log");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(Slurp(metrics).empty()) << Slurp(out + ".rank0.log");
  ::kill(rank1, SIGKILL);
  EXPECT_EQ(Wait(rank1, 60), 128 + SIGKILL);
  EXPECT_EQ(Wait(rank0, 300), 1) << Slurp(out + ".rank0.log");
  const std::string log = Slurp(out + ".rank0.log");
  EXPECT_THAT(log, HasSubstr("worker 1 (sites 2..3) has been silent for 5 s"));
  EXPECT_THAT(log, HasSubstr("the plan needs every site"));
  EXPECT_THAT(Slurp(out + "/fedavg__dir-0.5__seed0/run.json"), HasSubstr("\"complete\": false"));
}

// Whether `pid` has ended, without reaping it (Wait still reads its status).
bool Ended(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

// Polls `path` (every 2 ms: the test must act before the run moves on) until it holds `text`;
// false when any of `pids` ended first or after `seconds`.
bool AwaitText(const std::string& path, const std::string& text, const std::vector<pid_t>& pids,
               int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (Slurp(path).find(text) != std::string::npos) return true;
    for (pid_t pid : pids) {
      if (Ended(pid)) return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

std::vector<std::string> Keys(const nlohmann::json& object) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : object.items()) keys.push_back(key);
  return keys;
}

// Three workers over 4 sites (rank 2 runs site-003 alone) with min_sites = 3: rank 2 is killed
// once its site has uploaded in round 1. Its update is in round 1 (it arrived); the worker is
// taken for dead after 5 s of silence, the round ends without waiting longer for it, and rounds
// 2 and 3 run with sites 0..2. Returns the run folder.
std::string KillRankTwoAndGoOn(const std::string& name, const std::string& aggregation) {
  const std::string experiment =
      Write(name + ".toml",
            Experiment(3, "worker_timeout = 5\nmin_sites = 3\n", R"(["fedavg"])", 3) + aggregation);
  const std::string out = ::testing::TempDir() + "/simulate_workers/" + name;
  std::filesystem::remove_all(out);
  std::filesystem::remove(out + ".rank2.log");  // an earlier run's: AwaitText must not read it
  const auto started = std::chrono::steady_clock::now();
  const int port = FreePort();
  // Info: rank 2 logs each round's upload.
  const pid_t rank2 = Start(experiment, out, 2, 3, port, "--log-level info");
  const pid_t rank1 = Start(experiment, out, 1, 3, port);
  const pid_t rank0 = Start(experiment, out, 0, 3, port);
  const bool uploaded =
      AwaitText(out + ".rank2.log", "worker 2: round 1: its sites uploaded", {rank0, rank2}, 300);
  ::kill(rank2, SIGKILL);
  EXPECT_TRUE(uploaded) << Slurp(out + ".rank0.log") << Slurp(out + ".rank2.log");
  EXPECT_EQ(Wait(rank2, 60), 128 + SIGKILL);
  const int rc0 = Wait(rank0, 300), rc1 = Wait(rank1, 60);
  std::cout << name << ": "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
            << " s\n";
  const std::string log = Slurp(out + ".rank0.log");
  EXPECT_EQ(rc0, 0) << log;
  EXPECT_EQ(rc1, 0) << Slurp(out + ".rank1.log");
  EXPECT_THAT(log, HasSubstr("worker 2 (sites 3..3) has been silent for 5 s (worker_timeout): its "
                             "sites drop out of round 1; the cell goes on with 3 sites"));
  const std::string run = out + "/fedavg__dir-0.5__seed0";
  const std::vector<nlohmann::json> rounds = Rounds(run);
  EXPECT_EQ(rounds.size(), 3u) << log;
  const std::vector<std::string> live = {"site-000", "site-001", "site-002"};
  for (size_t r = 0; r < rounds.size(); ++r) {
    if (r == 0) {
      EXPECT_EQ(rounds[r]["sites"], 4) << rounds[r].dump();
      EXPECT_TRUE(rounds[r]["per_site"].contains("site-003")) << rounds[r].dump();
      EXPECT_FALSE(rounds[r].contains("dropped")) << rounds[r].dump();
      continue;
    }
    EXPECT_EQ(rounds[r]["sites"], 3) << rounds[r].dump();
    EXPECT_EQ(Keys(rounds[r]["per_site"]), live) << rounds[r].dump();
    EXPECT_EQ(rounds[r]["dropped"], nlohmann::json::array({"site-003"})) << rounds[r].dump();
  }
  const nlohmann::json summary = nlohmann::json::parse(Slurp(run + "/run.json"));
  EXPECT_EQ(summary["complete"], true);
  EXPECT_EQ(summary["min_sites"], 3);
  EXPECT_THAT(summary["lost_workers"].dump(), HasSubstr("worker 2 (sites 3..3)"));
  EXPECT_THAT(Slurp(out + "/experiment.toml"), HasSubstr("min_sites = 3"));
  return run;
}

TEST(SimulateWorkersTest, AKilledWorkersSitesDropOutAndTheCellGoesOnAboveMinSites) {
  KillRankTwoAndGoOn("dropout", "");
}

// Secure: site-003's masked update arrived, and SecAgg+ recovers the sum without its answers
// to the unmasking; later rounds are secure rounds of three sites.
TEST(SimulateWorkersTest, UnderSecureAggregationAKilledWorkersSitesDropOutToo) {
  KillRankTwoAndGoOn("dropout_secure", "\n[aggregation]\nmode = \"secure\"\n");
}

// Rank k's process among the children --workers-local started (rank 1 first), or -1.
pid_t LocalWorker(pid_t launcher, int rank) {
  std::istringstream children(Slurp("/proc/" + std::to_string(launcher) + "/task/" +
                                    std::to_string(launcher) + "/children"));
  pid_t pid = -1;
  for (int k = 1; k <= rank; ++k) {
    if (!(children >> pid)) return -1;
  }
  return pid;
}

// With --workers-local, rank 0 started the other workers itself and sees one end at once:
// worker_timeout (600 s) never comes into it, and the launcher exits 0 since the cell went on.
TEST(SimulateWorkersTest, ALocalWorkerThatIsKilledDropsItsSitesAtOnce) {
  const std::string experiment =
      Write("local_kill.toml",
            Experiment(3, "worker_timeout = 600\nmin_sites = 3\n", R"(["fedavg"])", 3));
  const std::string out = ::testing::TempDir() + "/simulate_workers/local_kill";
  std::filesystem::remove_all(out);
  std::filesystem::remove(out + ".rank0.log");  // an earlier run's: AwaitText must not read it
  const pid_t launcher = Start(experiment, out, -1, 3, 0, "--workers-local --log-level info");
  const bool uploaded =
      AwaitText(out + ".rank0.log", "worker 2: round 1: its sites uploaded", {launcher}, 300);
  const pid_t rank2 = LocalWorker(launcher, 2);
  ASSERT_TRUE(uploaded && rank2 > 0) << Slurp(out + ".rank0.log");
  ::kill(rank2, SIGKILL);
  const int rc = Wait(launcher, 300);
  const std::string log = Slurp(out + ".rank0.log");
  EXPECT_EQ(rc, 0) << log;
  EXPECT_THAT(log, HasSubstr("worker 2 (sites 3..3) was killed by signal 9 (Killed): its sites "
                             "drop out of round 1; the cell goes on with 3 sites"));
  EXPECT_THAT(log, HasSubstr("worker 2 ended during the run; its sites dropped out"));
  EXPECT_THAT(log, Not(HasSubstr("has been silent")));
  const std::vector<nlohmann::json> rounds = Rounds(out + "/fedavg__dir-0.5__seed0");
  ASSERT_EQ(rounds.size(), 3u) << log;
  EXPECT_EQ(rounds[2]["sites"], 3) << rounds[2].dump();
  EXPECT_EQ(rounds[2]["dropped"], nlohmann::json::array({"site-003"})) << rounds[2].dump();
}

TEST(SimulateWorkersTest, AWorldSizeOtherThanTheExperimentsWorkersIsRefused) {
  const std::string experiment = Write("mismatch.toml", Experiment(2));
  const std::string out = ::testing::TempDir() + "/simulate_workers/mismatch";
  EXPECT_EQ(Wait(Start(experiment, out, 0, 3, FreePort()), 60), 2);
  EXPECT_THAT(Slurp(out + ".rank0.log"),
              HasSubstr("WORLD_SIZE is 3 but the experiment has workers = 2"));
  // Without the variables at all.
  EXPECT_EQ(Wait(Start(experiment, out, -1, 1, 0), 60), 2);
  EXPECT_THAT(Slurp(out + ".rank0.log"), HasSubstr("WORLD_SIZE is not set"));
}

}  // namespace

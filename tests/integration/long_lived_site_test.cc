// A long-lived hansa-client (no --once) as real processes on loopback: after its study's
// coordinator finishes and exits, the site waits quietly, takes part in the next study when a
// new coordinator (new state, same federation and kit) starts, reloads its policy on SIGHUP
// (a bad file keeps the old one), and ends with exit status 0 on SIGTERM. The coordinator
// survives SIGHUP.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <string>

#include "tests/integration/harness.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(LongLivedSiteTest, WaitsAfterItsStudyTakesPartInTheNextAndEndsOnSigterm) {
  const std::string dir = FreshDir();
  const std::string kit = Provision(dir, {"alpha"}, FreePort());
  const std::string coordinator_toml = kit + "/coordinator/coordinator.toml";
  const std::string site_toml = kit + "/sites/alpha/site.toml";
  ReplaceInFile(coordinator_toml, "[coordinator]\n", "[coordinator]\nlinger_seconds = 2\n");
  AppendText(coordinator_toml,
             "\n[model]\nname = \"mlp\"\nseed = 3\n"
             "[rounds]\ntotal = 1\nmin_sites = 1\nwait_for_sites_seconds = 120\n"
             "[training]\nepochs = 1\nbatch_size = 32\n"
             "[aggregation]\nmode = \"plaintext\"\n");
  ReplaceInFile(site_toml, "[policy]\n",
                "[policy]\nrequire_secure_aggregation = false\nmin_cohort = 1\n");
  AppendText(site_toml, "train_limit = 300\ntest_limit = 100\n[compute]\nthreads = 1\n");
  const auto start_coordinator = [&](const std::string& study) {
    return std::make_unique<Process>(
        std::vector<std::string>{BuildPath("coordinator/hansa-coordinator"), "--config",
                                 coordinator_toml, "--state-dir", dir + "/" + study},
        dir + "/" + study + ".log");
  };

  auto one = start_coordinator("study-1");
  ASSERT_TRUE(WaitFor(60, [&] { return one->Log().find("listening on") != std::string::npos; }))
      << one->Log();
  // SIGHUP reloads nothing at the coordinator and does not end it.
  one->Signal(SIGHUP);
  Process site({BuildPath("client/hansa-client"), "--config", site_toml}, dir + "/alpha.log");
  std::optional<int> code = one->Wait(300);
  ASSERT_TRUE(code.has_value()) << one->Log();
  EXPECT_EQ(*code, 0) << one->Log();
  ASSERT_TRUE(WaitFor(60, [&] {
    return site.Log().find("waiting for the federation's next study") != std::string::npos;
  })) << site.Log();
  EXPECT_TRUE(site.Running()) << site.Log();

  // SIGHUP while waiting: a bad [policy] is refused by key and the old one stays; a good one
  // is taken.
  ReplaceInFile(site_toml, "min_cohort = 1\n", "min_cohort = 0\n");
  site.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor(60, [&] {
    return site.Log().find("keeps its current policy") != std::string::npos;
  })) << site.Log();
  EXPECT_THAT(site.Log(), HasSubstr("policy.min_cohort"));
  ReplaceInFile(site_toml, "min_cohort = 0\n", "min_cohort = 1\n");
  site.Signal(SIGHUP);
  ASSERT_TRUE(WaitFor(60, [&] {
    return site.Log().find("it applies from the next plan") != std::string::npos;
  })) << site.Log();
  EXPECT_TRUE(site.Running()) << site.Log();

  // The next study: same federation and kit, new state, another seed (so other updates).
  ReplaceInFile(coordinator_toml, "seed = 3\n", "seed = 4\n");
  auto two = start_coordinator("study-2");
  code = two->Wait(300);
  ASSERT_TRUE(code.has_value()) << two->Log() << site.Log();
  EXPECT_EQ(*code, 0) << two->Log();
  const auto metrics = ReadJsonLines(dir + "/study-2/metrics.jsonl");
  ASSERT_FALSE(metrics.empty()) << two->Log();
  EXPECT_EQ(metrics.back().value("sites", 0), 1) << metrics.back();
  ASSERT_TRUE(WaitFor(60, [&] {
    return Count(site.Log(), "waiting for the federation's next study") == 2;
  })) << site.Log();

  const std::string log = site.Log();
  EXPECT_EQ(Count(log, "a new study offers"), 1u) << log;
  EXPECT_EQ(Count(log, "round 1: trained"), 2u) << log;
  // Waiting is quiet: no line per reconnection attempt.
  EXPECT_THAT(log, Not(HasSubstr("retrying in"))) << log;
  EXPECT_THAT(log, Not(HasSubstr("reconnecting"))) << log;

  site.Signal(SIGTERM);
  code = site.Wait(60);
  ASSERT_TRUE(code.has_value()) << site.Log();
  EXPECT_EQ(*code, 0) << site.Log();

  std::string out;
  EXPECT_EQ(RunCommand({BuildPath("tools/hansa"), "audit", "verify", "--role", "site",
                        kit + "/sites/alpha/state/egress.jsonl", "--ca", kit + "/ca/ca.pem"},
                       &out),
            0)
      << out;
}

}  // namespace
}  // namespace hansa::testing

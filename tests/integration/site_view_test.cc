// A site's own view of a real federation: a coordinator and two real sites over mutual TLS,
// one of them serving its page on loopback ([monitoring] listen). After the run, the page shows
// the federation and the plans, `hansa report --site` on the site's state dir lists every round
// it sent with the figures it sent, and a one-byte change in the ledger makes the report fail.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <set>
#include <string>

#include "tests/integration/harness.h"
#include "tests/support/http_get.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;

TEST(SiteViewTest, ThePageAndTheReportShowWhatTheSiteSentRoundByRound) {
  const std::string dir = FreshDir();
  const int port = FreePort();
  const int page_port = FreePort();
  const std::vector<std::string> sites = {"alpha", "beta"};
  const std::string kit = Provision(dir, sites, port, "site-view");
  const std::string coordinator_toml = kit + "/coordinator/coordinator.toml";
  AppendText(coordinator_toml,
             "\n[model]\nname = \"mlp\"\nseed = 5\n"
             "[rounds]\ntotal = 2\nmin_sites = 2\nupload_timeout_seconds = 60\n"
             "evaluate_timeout_seconds = 30\nwait_for_sites_seconds = 120\n"
             "[training]\nepochs = 1\nbatch_size = 32\n[aggregation]\nmode = \"plaintext\"\n");
  for (const std::string& site : sites) {
    const std::string path = kit + "/sites/" + site + "/site.toml";
    ReplaceInFile(path, "[policy]\n",
                  "[policy]\nrequire_secure_aggregation = false\nmin_cohort = 2\n");
    AppendText(path, "train_limit = 400\ntest_limit = 200\n[compute]\nthreads = 1\n");
  }
  AppendText(kit + "/sites/alpha/site.toml",
             "[monitoring]\nlisten = \"127.0.0.1:" + std::to_string(page_port) + "\"\n");
  Process coordinator({BuildPath("coordinator/hansa-coordinator"), "--config", coordinator_toml},
                      dir + "/coordinator.log");
  // alpha is long-lived: it stays up after the study, its page with it.
  Process alpha({BuildPath("client/hansa-client"), "--config", kit + "/sites/alpha/site.toml"},
                dir + "/alpha.log");
  Process beta(
      {BuildPath("client/hansa-client"), "--once", "--config", kit + "/sites/beta/site.toml"},
      dir + "/beta.log");
  ASSERT_EQ(coordinator.Wait(300).value_or(-1), 0) << coordinator.Log() << alpha.Log();
  EXPECT_EQ(beta.Wait(60).value_or(-1), 0) << beta.Log();
  ASSERT_TRUE(WaitFor(60, [&] {
    return alpha.Log().find("waiting for the federation's next study") != std::string::npos;
  })) << alpha.Log();

  // The page, read over loopback while the site runs.
  auto page = LoopbackHttpGet(page_port, "/");
  ASSERT_TRUE(page.ok()) << page.status() << "\n" << alpha.Log();
  EXPECT_EQ(page->status, 200) << page->body;
  EXPECT_THAT(page->body, HasSubstr("Site report: alpha in site-view"));
  EXPECT_THAT(page->body, HasSubstr("Egress ledger verified"));
  EXPECT_THAT(page->body, HasSubstr("Plans received"));
  EXPECT_THAT(page->body, HasSubstr(">accepted<"));
  auto page_json = LoopbackHttpGet(page_port, "/report.json");
  ASSERT_TRUE(page_json.ok()) << page_json.status();
  EXPECT_EQ(nlohmann::json::parse(page_json->body)["plans"].size(), 2u);
  alpha.Signal(SIGTERM);
  EXPECT_EQ(alpha.Wait(60).value_or(-1), 0) << alpha.Log();

  // The report from the state dir alone.
  const std::string state = kit + "/sites/alpha/state";
  std::string output;
  ASSERT_EQ(RunCommand({BuildPath("tools/hansa"), "report", "--site", state, "--ca",
                        kit + "/sites/alpha/ca.pem", "--certificate", kit + "/sites/alpha/cert.pem",
                        "--out", dir + "/report"},
                       &output),
            0)
      << output;
  EXPECT_THAT(output, HasSubstr("egress ledger verified against the federation CA"));
  const nlohmann::json r = nlohmann::json::parse(ReadText(dir + "/report/report.json"));
  EXPECT_EQ(r["federation"]["name"], "site-view");
  EXPECT_EQ(r["site"]["name"], "alpha");
  EXPECT_EQ(r["totals"]["plans_accepted"], 2);
  // Every training round the coordinator completed, with what alpha sent in it.
  std::set<int64_t> trained, evaluated;
  for (const nlohmann::json& o : r["rounds"]) {
    if (o["update"].is_object()) {
      trained.insert(o["round"].get<int64_t>());
      EXPECT_GT(o["update"]["values"]["num_examples"].get<int64_t>(), 0) << o.dump();
      EXPECT_EQ(o["update"]["sha256"].get<std::string>().size(), 64u);
    }
    if (o["metrics"].is_object()) {
      evaluated.insert(o["round"].get<int64_t>());
      EXPECT_TRUE(o["metrics"]["accuracy"].is_number()) << o.dump();
      EXPECT_EQ(o["metrics"]["num_examples"], 200) << o.dump();
    }
  }
  EXPECT_EQ(trained, (std::set<int64_t>{1, 2})) << r["rounds"].dump();
  // Every evaluation the coordinator recorded (round 0: the initial model) has alpha's figures.
  std::set<int64_t> recorded;
  for (const nlohmann::json& m : ReadJsonLines(kit + "/coordinator/state/metrics.jsonl")) {
    recorded.insert(m["round"].get<int64_t>());
  }
  EXPECT_EQ(recorded, (std::set<int64_t>{0, 1, 2}));
  EXPECT_EQ(evaluated, recorded) << r["rounds"].dump();
  EXPECT_THAT(ReadText(dir + "/report/report.html"), HasSubstr("Site report: alpha in site-view"));

  // One byte changed in the ledger: the report says so and exits 2.
  ReplaceInFile(state + "/egress.jsonl", "\"accuracy\":0.", "\"accuracy\":1.");
  ASSERT_EQ(RunCommand({BuildPath("tools/hansa"), "report", "--site", state, "--ca",
                        kit + "/sites/alpha/ca.pem", "--out", dir + "/tampered"},
                       &output),
            2)
      << output;
  EXPECT_THAT(output, HasSubstr("the egress ledger did not verify"));
  EXPECT_THAT(ReadText(dir + "/tampered/report.html"), HasSubstr("Egress ledger NOT verified"));
}

}  // namespace
}  // namespace hansa::testing

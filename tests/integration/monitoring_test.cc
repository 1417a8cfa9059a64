// Prometheus metrics of a running federation, scraped over loopback like Prometheus does: a real
// coordinator with [monitoring] listen and three real sites. A scrape before the third site
// joins shows two sites and no round; a later one three sites and the round counter risen.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <map>
#include <sstream>
#include <string>

#include "tests/integration/harness.h"
#include "tests/support/http_get.h"
#include "tests/support/tls_peers.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;

// The value of the first sample whose name and labels start with `series`
// ("hansa_sites_connected{"); -1 when absent.
double Sample(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(series, 0) != 0) continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

TEST(MonitoringTest, ScrapesShowThreeSitesConnectedAndTheRoundCounterRising) {
  const std::string dir = FreshDir();
  const int port = FreePort();
  const int metrics_port = FreePort();
  const int site_metrics_port = FreePort();
  const std::vector<std::string> sites = {"alpha", "beta", "gamma"};
  const std::string kit = Provision(dir, sites, port);
  const std::string coordinator_toml = kit + "/coordinator/coordinator.toml";
  ReplaceInFile(coordinator_toml, "[coordinator]\n", "[coordinator]\nlinger_seconds = 5\n");
  AppendText(coordinator_toml,
             "\n[model]\nname = \"mlp\"\nseed = 3\n"
             "[rounds]\ntotal = 3\nmin_sites = 3\nupload_timeout_seconds = 60\n"
             "evaluate_timeout_seconds = 20\nwait_for_sites_seconds = 120\n"
             "site_idle_seconds = 30\n[training]\nepochs = 1\nbatch_size = 32\n"
             "[aggregation]\nmode = \"plaintext\"\n[monitoring]\nlisten = \"127.0.0.1:" +
                 std::to_string(metrics_port) + "\"\n");
  for (const std::string& site : sites) {
    const std::string path = kit + "/sites/" + site + "/site.toml";
    ReplaceInFile(path, "[policy]\n", "[policy]\nrequire_secure_aggregation = false\n");
    AppendText(path, "train_limit = 600\ntest_limit = 200\n[compute]\nthreads = 1\n");
  }
  AppendText(kit + "/sites/alpha/site.toml",
             "[monitoring]\nlisten = \"127.0.0.1:" + std::to_string(site_metrics_port) + "\"\n");
  Process coordinator({BuildPath("coordinator/hansa-coordinator"), "--config", coordinator_toml},
                      dir + "/coordinator.log");
  std::vector<std::unique_ptr<Process>> running;
  // alpha is long-lived (no --once): it outlives the study, so its metrics can be read after.
  const auto start_site = [&](const std::string& site) {
    std::vector<std::string> argv = {BuildPath("client/hansa-client"), "--config",
                                     kit + "/sites/" + site + "/site.toml"};
    if (site != "alpha") argv.insert(argv.begin() + 1, "--once");
    running.push_back(std::make_unique<Process>(argv, dir + "/" + site + ".log"));
  };
  // Two sites first: with min_sites = 3 no round can start, so the first scrape is taken
  // before any round, whatever the machine's speed.
  start_site("alpha");
  start_site("beta");
  std::string first;
  ASSERT_TRUE(WaitFor(120,
                      [&] {
                        first = LoopbackHttp(metrics_port, "/metrics");
                        return Sample(first, "hansa_sites_connected{") == 2;
                      }))
      << first << "\n"
      << coordinator.Log();
  EXPECT_THAT(first, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(first, HasSubstr("X-Content-Type-Options: nosniff"));
  EXPECT_EQ(Sample(first, "hansa_rounds_completed_total{"), 0) << first;
  EXPECT_EQ(Sample(first, "hansa_rounds_configured{"), 3) << first;
  EXPECT_THAT(first, HasSubstr("hansa_certificate_expiry_timestamp_seconds{certificate=\"ca\"}"));
  EXPECT_GT(
      Sample(first,
             "hansa_site_certificate_expiry_timestamp_seconds{country=\"DE\",site=\"alpha\"}"),
      0)
      << first;
  EXPECT_GT(Sample(first, "hansa_audit_records_total{"), 0) << first;

  start_site("gamma");
  std::string second;
  ASSERT_TRUE(WaitFor(240,
                      [&] {
                        second = LoopbackHttp(metrics_port, "/metrics");
                        return Sample(second, "hansa_sites_connected{") == 3 &&
                               Sample(second, "hansa_rounds_completed_total{") >= 1;
                      }))
      << second << "\n"
      << coordinator.Log();
  EXPECT_GT(Sample(second, "hansa_site_uploads_total{country=\"DE\",site=\"gamma\"}"), 0) << second;
  EXPECT_GT(Sample(second, "hansa_site_received_bytes_total{country=\"DE\",site=\"beta\"}"), 0)
      << second;
  EXPECT_GE(Sample(second, "hansa_round_duration_seconds_count{"), 1) << second;
  EXPECT_THAT(LoopbackHttp(metrics_port, "/nothing"), HasSubstr("404"));

  ASSERT_EQ(coordinator.Wait(240).value_or(-1), 0) << coordinator.Log();
  EXPECT_EQ(running[1]->Wait(60).value_or(-1), 0) << running[1]->Log();
  EXPECT_EQ(running[2]->Wait(60).value_or(-1), 0) << running[2]->Log();

  // The site's own series, from its egress ledger: three plans accepted, three updates sent.
  const std::string site = LoopbackHttp(site_metrics_port, "/metrics");
  EXPECT_EQ(Sample(site, "hansa_site_plans_accepted_total{site=\"alpha\"}"), 3) << site;
  EXPECT_EQ(Sample(site, "hansa_site_messages_sent_total{site=\"alpha\",type=\"upload\"}"), 3)
      << site;
  EXPECT_GT(Sample(site, "hansa_site_sent_bytes_total{site=\"alpha\",type=\"upload\"}"), 3 * 600000)
      << site;
  EXPECT_EQ(Sample(site, "hansa_site_trained_examples_total{site=\"alpha\"}"), 3 * 600) << site;
  EXPECT_GT(Sample(site, "hansa_site_training_throughput_examples_per_second{site=\"alpha\"}"), 0)
      << site;
  running[0]->Signal(SIGTERM);
  EXPECT_EQ(running[0]->Wait(60).value_or(-1), 0) << running[0]->Log();
}

}  // namespace
}  // namespace hansa::testing

// A site behind an outbound HTTP CONNECT proxy ([network] proxy in site.toml): a real
// tinyproxy on loopback, a real coordinator and hansa-client. Mutual TLS and the coordinator
// pin run inside the tunnel; a proxy that refuses the CONNECT is named in the site's error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/integration/harness.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // make test installs it (scripts/install-deps.sh): a missing proxy is a broken set-up, not a
    // reason to pass.
    ASSERT_TRUE(std::filesystem::exists(kTinyproxy))
        << "tinyproxy is not installed; scripts/install-deps.sh installs it";
    // Only [network] proxy may steer the site: the children inherit this environment.
    for (const char* name : {"grpc_proxy", "https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY",
                             "no_proxy", "NO_PROXY", "no_grpc_proxy"}) {
      unsetenv(name);
    }
    dir_ = FreshDir();
    coordinator_port_ = FreePort();
    kit_ = Provision(dir_, {"alpha"}, coordinator_port_);
    site_toml_ = kit_ + "/sites/alpha/site.toml";
  }

  std::unique_ptr<Process> StartSite(const std::string& log) {
    return std::make_unique<Process>(std::vector<std::string>{BuildPath("client/hansa-client"),
                                                              "--once", "--config", site_toml_},
                                     dir_ + "/" + log);
  }

  // One short plaintext round of one site on a small shard.
  void ConfigureOneRound() {
    const std::string coordinator_toml = kit_ + "/coordinator/coordinator.toml";
    ReplaceInFile(coordinator_toml, "[coordinator]\n", "[coordinator]\nlinger_seconds = 1\n");
    AppendText(coordinator_toml,
               "\n[model]\nname = \"mlp\"\nseed = 3\n"
               "[rounds]\ntotal = 1\nmin_sites = 1\nwait_for_sites_seconds = 60\n"
               "[training]\nepochs = 1\nbatch_size = 32\nlearning_rate = 0.05\n"
               "[aggregation]\nmode = \"plaintext\"\n");
    ReplaceInFile(site_toml_, "[policy]\n",
                  "[policy]\nrequire_secure_aggregation = false\nmin_cohort = 1\n");
    AppendText(site_toml_, "train_limit = 500\ntest_limit = 200\n[compute]\nthreads = 1\n");
  }

  std::string dir_, kit_, site_toml_;
  int coordinator_port_ = 0;
};

TEST_F(ProxyTest, SiteJoinsThroughTheProxyAndARoundCompletesOverMutualTls) {
  ConfigureOneRound();
  const std::string coordinator_toml = kit_ + "/coordinator/coordinator.toml";
  const int proxy_port = FreePort();
  AppendText(site_toml_,
             absl::StrCat("[network]\nproxy = \"http://127.0.0.1:", proxy_port, "\"\n"));
  // The provisioned site pins the coordinator's certificate: the pin is checked in the
  // handshake that runs inside the tunnel.
  ASSERT_THAT(ReadText(site_toml_), HasSubstr("coordinator_fingerprint"));

  auto proxy = StartTinyproxy(dir_, proxy_port, coordinator_port_);
  Process coordinator({BuildPath("coordinator/hansa-coordinator"), "--config", coordinator_toml},
                      dir_ + "/coordinator.log");
  auto site = StartSite("alpha.log");
  std::optional<int> code = site->Wait(120);
  ASSERT_TRUE(code.has_value()) << site->Log() << coordinator.Log();
  EXPECT_EQ(*code, 0) << site->Log() << coordinator.Log();
  EXPECT_THAT(site->Log(), HasSubstr("joined federation"));
  EXPECT_TRUE(coordinator.Wait(60).has_value()) << coordinator.Log();
  // One round, its model released; the site reached the coordinator only through the proxy.
  EXPECT_EQ(ReadJsonLines(kit_ + "/coordinator/state/metrics.jsonl").size(), 2u)
      << coordinator.Log();
  const std::string log = ReadText(dir_ + "/tinyproxy.log");
  EXPECT_THAT(log, HasSubstr(absl::StrCat("CONNECT 127.0.0.1:", coordinator_port_)));
  proxy->Signal(SIGTERM);
}

TEST_F(ProxyTest, ProxyThatRefusesTheConnectIsNamedInTheSitesError) {
  const int proxy_port = FreePort();
  const std::string proxy_url = absl::StrCat("http://127.0.0.1:", proxy_port);
  ReplaceInFile(site_toml_, "[site]\n", "[site]\nreconnect_seconds = 1\n");
  AppendText(site_toml_, absl::StrCat("[network]\nproxy = \"", proxy_url, "\"\n"));
  // CONNECT is allowed to another port only.
  auto proxy = StartTinyproxy(dir_, proxy_port, coordinator_port_ == 1 ? 2 : 1);
  auto site = StartSite("alpha.log");
  std::optional<int> code = site->Wait(60);
  ASSERT_TRUE(code.has_value()) << site->Log();
  EXPECT_EQ(*code, 1) << site->Log();
  EXPECT_THAT(site->Log(), HasSubstr(absl::StrCat("the proxy ", proxy_url,
                                                  " ([network] proxy) refused the CONNECT to "
                                                  "127.0.0.1:",
                                                  coordinator_port_, ": it answered \"HTTP/1.")));
  EXPECT_THAT(site->Log(), HasSubstr(" 403 "));
  EXPECT_THAT(ReadText(dir_ + "/tinyproxy.log"),
              HasSubstr(absl::StrCat("CONNECT 127.0.0.1:", coordinator_port_)));
  proxy->Signal(SIGTERM);
}

// The tunnel carries the TLS handshake end to end: a pin that does not match the coordinator's
// certificate refuses it, proxy or not.
TEST_F(ProxyTest, CoordinatorPinIsCheckedInsideTheTunnel) {
  ConfigureOneRound();
  const int proxy_port = FreePort();
  AppendText(site_toml_,
             absl::StrCat("[network]\nproxy = \"http://127.0.0.1:", proxy_port, "\"\n"));
  const std::string text = ReadText(site_toml_);
  const size_t at = text.find("coordinator_fingerprint = \"");
  ASSERT_NE(at, std::string::npos);
  const std::string pinned = text.substr(at + 27, 64);
  ReplaceInFile(site_toml_, pinned, std::string(64, 'a'));
  auto proxy = StartTinyproxy(dir_, proxy_port, coordinator_port_);
  Process coordinator({BuildPath("coordinator/hansa-coordinator"), "--config",
                       kit_ + "/coordinator/coordinator.toml"},
                      dir_ + "/coordinator.log");
  auto site = StartSite("alpha.log");
  std::optional<int> code = site->Wait(60);
  ASSERT_TRUE(code.has_value()) << site->Log();
  EXPECT_EQ(*code, 1) << site->Log();
  EXPECT_THAT(site->Log(), HasSubstr(absl::StrCat("coordinator certificate fingerprint ", pinned,
                                                  " is not the one this site's policy trusts")));
  EXPECT_THAT(ReadText(dir_ + "/tinyproxy.log"),
              HasSubstr(absl::StrCat("CONNECT 127.0.0.1:", coordinator_port_)));
  coordinator.Signal(SIGTERM);
  proxy->Signal(SIGTERM);
}

TEST_F(ProxyTest, ProxyUrlIsValidated) {
  for (const auto& [url, why] : std::vector<std::pair<std::string, std::string>>{
           {"https://127.0.0.1:3128", "it must be \"http://host:port\""},
           {"http://127.0.0.1", "it must be \"http://host:port\""},
           {"http://:3128", "no host"},
           {"http://proxy:99999", "the port must be a number from 1 to 65535"},
           {"http://user:secret@proxy:3128", "user:password@ is not supported"}}) {
    SCOPED_TRACE(url);
    const std::string toml = kit_ + "/sites/alpha-bad.toml";
    std::filesystem::copy_file(site_toml_, toml, std::filesystem::copy_options::overwrite_existing);
    AppendText(toml, absl::StrCat("[network]\nproxy = \"", url, "\"\n"));
    std::string out;
    EXPECT_NE(RunCommand({BuildPath("client/hansa-client"), "--once", "--config", toml}, &out), 0);
    EXPECT_THAT(out, HasSubstr("network.proxy"));
    EXPECT_THAT(out, HasSubstr(why));
  }
}

}  // namespace
}  // namespace hansa::testing

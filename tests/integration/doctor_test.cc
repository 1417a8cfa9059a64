// `hansa doctor site.toml` against real processes: a provisioned federation's coordinator,
// reached directly and through a tinyproxy on loopback. The doctor passes, names the pin when
// site.toml pins another fingerprint, and leaves nothing in the coordinator's audit log.
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
using ::testing::Not;

class DoctorIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Only site.toml may steer the doctor: it and gRPC read these.
    for (const char* name : {"grpc_proxy", "https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY",
                             "no_proxy", "NO_PROXY", "no_grpc_proxy"}) {
      unsetenv(name);
    }
    dir_ = FreshDir();
    port_ = FreePort();
    kit_ = Provision(dir_, {"alpha", "beta", "gamma"}, port_);
    site_toml_ = kit_ + "/sites/alpha/site.toml";
    coordinator_ = std::make_unique<Process>(
        std::vector<std::string>{BuildPath("coordinator/hansa-coordinator"), "--config",
                                 kit_ + "/coordinator/coordinator.toml"},
        dir_ + "/coordinator.log");
    // Listening, or gone (then the assertion shows its log at once).
    ASSERT_TRUE(WaitFor(60, [&] {
      return !coordinator_->Running() ||
             coordinator_->Log().find("listening on") != std::string::npos;
    }));
    ASSERT_THAT(coordinator_->Log(), HasSubstr("listening on"));
  }

  void TearDown() override {
    if (coordinator_) coordinator_->Signal(SIGTERM);
  }

  int Doctor(std::string* output) {
    return RunCommand({BuildPath("tools/hansa"), "doctor", site_toml_}, output);
  }

  // The doctor never joined: the audit log holds no admission or refusal of a site.
  void ExpectNoSiteInTheAuditLog() {
    const std::string path = kit_ + "/coordinator/state/audit.jsonl";
    EXPECT_TRUE(WaitFor(30, [&] {
      return ReadText(path).find("federation_started") != std::string::npos;
    })) << coordinator_->Log();
    const std::string audit = ReadText(path);
    EXPECT_THAT(audit, Not(HasSubstr("site_admitted")));
    EXPECT_THAT(audit, Not(HasSubstr("site_refused")));
  }

  std::string dir_, kit_, site_toml_;
  int port_ = 0;
  std::unique_ptr<Process> coordinator_;
};

TEST_F(DoctorIntegrationTest, PassesAgainstARunningCoordinatorWithoutJoining) {
  std::string out;
  EXPECT_EQ(Doctor(&out), 0) << out;
  EXPECT_THAT(out, HasSubstr("OK    config: "));
  EXPECT_THAT(out, HasSubstr("OK    private key: "));
  EXPECT_THAT(out, HasSubstr("OK    data train: "));
  EXPECT_THAT(out, HasSubstr(absl::StrCat("OK    route: TCP connection to 127.0.0.1:", port_)));
  EXPECT_THAT(out, HasSubstr(absl::StrCat("OK    TLS: mutual TLS 1.3 with 127.0.0.1:", port_,
                                          " established; the coordinator's certificate is the "
                                          "pinned one")));
  EXPECT_THAT(out, Not(HasSubstr("FAIL")));
  EXPECT_THAT(out, HasSubstr("hansa doctor: no check failed"));
  ExpectNoSiteInTheAuditLog();
}

TEST_F(DoctorIntegrationTest, FailsWithThePinMessageWhenSiteTomlPinsAnotherFingerprint) {
  const std::string text = ReadText(site_toml_);
  const size_t at = text.find("coordinator_fingerprint = \"");
  ASSERT_NE(at, std::string::npos);
  const std::string pinned = text.substr(at + 27, 64);
  const std::string other(64, 'b');
  ReplaceInFile(site_toml_, pinned, other);
  std::string out;
  EXPECT_EQ(Doctor(&out), 1) << out;
  EXPECT_THAT(out, HasSubstr(absl::StrCat("FAIL  TLS: the coordinator presents certificate ",
                                          pinned, " but site.toml pins ", other)));
  EXPECT_THAT(out, HasSubstr("fix: ask the federation operator for the current fingerprint"));
  EXPECT_THAT(out, HasSubstr("OK    route: "));
  ExpectNoSiteInTheAuditLog();
}

TEST_F(DoctorIntegrationTest, PassesThroughAnHttpConnectProxy) {
  ASSERT_TRUE(std::filesystem::exists(kTinyproxy))
      << "tinyproxy is not installed; scripts/install-deps.sh installs it";
  const int proxy_port = FreePort();
  const std::string proxy_url = absl::StrCat("http://127.0.0.1:", proxy_port);
  AppendText(site_toml_, absl::StrCat("[network]\nproxy = \"", proxy_url, "\"\n"));
  auto proxy = StartTinyproxy(dir_, proxy_port, port_);
  std::string out;
  EXPECT_EQ(Doctor(&out), 0) << out;
  EXPECT_THAT(out, HasSubstr(absl::StrCat("OK    proxy: ", proxy_url, " ([network] proxy)")));
  EXPECT_THAT(out,
              HasSubstr(absl::StrCat("OK    route: the proxy ", proxy_url, " answered \"HTTP/1.")));
  EXPECT_THAT(out, HasSubstr("OK    TLS: mutual TLS 1.3"));
  // Both the route check's CONNECT and the handshake's went through the proxy.
  const std::string log = ReadText(dir_ + "/tinyproxy.log");
  const std::string connect = absl::StrCat("CONNECT 127.0.0.1:", port_);
  const size_t first = log.find(connect);
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_NE(log.find(connect, first + 1), std::string::npos) << log;
  ExpectNoSiteInTheAuditLog();
  proxy->Signal(SIGTERM);
}

TEST_F(DoctorIntegrationTest, ProxyThatRefusesTheConnectIsNamedWithItsStatusLine) {
  ASSERT_TRUE(std::filesystem::exists(kTinyproxy))
      << "tinyproxy is not installed; scripts/install-deps.sh installs it";
  const int proxy_port = FreePort();
  AppendText(site_toml_,
             absl::StrCat("[network]\nproxy = \"http://127.0.0.1:", proxy_port, "\"\n"));
  auto proxy = StartTinyproxy(dir_, proxy_port, port_ == 1 ? 2 : 1);
  std::string out;
  EXPECT_EQ(Doctor(&out), 1) << out;
  EXPECT_THAT(out, HasSubstr(absl::StrCat("refused the CONNECT to 127.0.0.1:", port_,
                                          ": it answered \"HTTP/1.")));
  EXPECT_THAT(out, HasSubstr(" 403 "));
  EXPECT_THAT(out, HasSubstr("FAIL  TLS: not attempted"));
  proxy->Signal(SIGTERM);
}

}  // namespace
}  // namespace hansa::testing

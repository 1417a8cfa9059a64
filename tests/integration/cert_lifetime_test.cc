// Certificates that expire during a run, as real processes on loopback: a site's certificate
// expiring while it is connected or while it reconnects, and the coordinator's own. Each side
// names the certificate and the moment it expired instead of a bare TLS handshake failure.
// The short-lived certificates come from the federation's CA with the project's own code, for
// the keys `hansa provision` made.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "common/pki/authority.h"
#include "common/pki/key.h"
#include "tests/integration/harness.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;

// Long enough for a coordinator and a site to start and the site to join on a busy machine;
// the tests wait for the join before the end comes.
constexpr absl::Duration kLifetime = absl::Seconds(15);

// Replaces the certificate in `kit_dir` (cert.pem beside key.pem) with one of the same subject,
// usage and names that expires `lifetime` from now. Returns it.
Certificate ReissueShortLived(const std::string& federation, const std::string& kit_dir,
                              bool server, absl::Duration lifetime) {
  auto ca = CertificateAuthority::Load(federation + "/ca/ca.pem", federation + "/ca/ca-key.pem");
  EXPECT_TRUE(ca.ok()) << ca.status();
  auto old = Certificate::FromFile(kit_dir + "/cert.pem");
  auto key = ReadPrivateKeyFile(kit_dir + "/key.pem");
  EXPECT_TRUE(old.ok() && key.ok());
  CertificateRequest request;
  request.subject = old->Subject();
  request.server_auth = server;
  request.client_auth = !server;
  if (server) {
    request.dns_names = {"localhost"};
    request.ip_addresses = {"127.0.0.1"};
  }
  request.not_after = absl::Now() + lifetime;
  auto cert = ca->Issue(request, key->GetPublicKey());
  EXPECT_TRUE(cert.ok()) << cert.status();
  std::ofstream(kit_dir + "/cert.pem", std::ios::trunc) << cert->ToPem();
  return *std::move(cert);
}

// A provisioned federation of three sites (secure aggregation's minimum, so the coordinator
// only waits while alpha alone is up), alpha quick to notice a lost connection.
struct Kit {
  std::string dir;
  std::string federation;
  std::string alpha_toml;
};

Kit MakeKit() {
  Kit kit;
  kit.dir = FreshDir();
  kit.federation = Provision(kit.dir, {"alpha", "beta", "gamma"}, FreePort());
  kit.alpha_toml = kit.federation + "/sites/alpha/site.toml";
  ReplaceInFile(kit.alpha_toml, "[site]\n",
                "[site]\nreconnect_seconds = 60\nrpc_timeout_seconds = 2\n");
  return kit;
}

std::unique_ptr<Process> StartCoordinator(const Kit& kit, const std::string& log) {
  return std::make_unique<Process>(
      std::vector<std::string>{BuildPath("coordinator/hansa-coordinator"), "--config",
                               kit.federation + "/coordinator/coordinator.toml"},
      kit.dir + "/" + log);
}

std::unique_ptr<Process> StartAlpha(const Kit& kit, const std::string& log) {
  return std::make_unique<Process>(
      std::vector<std::string>{BuildPath("client/hansa-client"), "--config", kit.alpha_toml},
      kit.dir + "/" + log);
}

bool WaitForLine(Process& p, const std::string& text, double seconds) {
  return WaitFor(seconds, [&] { return p.Log().find(text) != std::string::npos; });
}

// The site's egress ledger holds no record past its certificate: it verifies.
void ExpectEgressVerifies(const Kit& kit) {
  std::string out;
  EXPECT_EQ(RunCommand({BuildPath("tools/hansa"), "audit", "verify",
                        kit.federation + "/sites/alpha/state/egress.jsonl", "--ca",
                        kit.federation + "/ca/ca.pem", "--role", "site"},
                       &out),
            0)
      << out;
}

TEST(CertLifetimeTest, ASiteWhoseCertificateExpiresWhileConnectedIsRefusedAndBothSidesSayWhy) {
  Kit kit = MakeKit();
  const Certificate cert =
      ReissueShortLived(kit.federation, kit.federation + "/sites/alpha", false, kLifetime);
  const std::string expired_at = "expired at " + FormatCertificateTime(cert.NotAfter());
  auto coordinator = StartCoordinator(kit, "coordinator.log");
  ASSERT_TRUE(WaitForLine(*coordinator, "listening on", 30)) << coordinator->Log();
  auto alpha = StartAlpha(kit, "alpha.log");
  ASSERT_TRUE(WaitForLine(*alpha, "joined federation", 30)) << alpha->Log();
  ASSERT_LT(absl::Now(), cert.NotAfter()) << "the site joined too late to test anything";
  // Its connection outlives the certificate (TLS checks it only in the handshake): its next
  // task poll, at most one poll wait (20 s) after the end, is refused by name.
  ASSERT_EQ(alpha->Wait(absl::ToDoubleSeconds(kLifetime) + 40).value_or(-1), 1) << alpha->Log();
  EXPECT_THAT(alpha->Log(),
              HasSubstr("the coordinator refused this site: certificate of 'alpha' " + expired_at));
  EXPECT_THAT(coordinator->Log(),
              HasSubstr("refused site alpha: certificate of 'alpha' " + expired_at));
  EXPECT_TRUE(coordinator->Running());  // one site's certificate stops nobody else
  // Started again, the site refuses at once and names its certificate.
  auto again = StartAlpha(kit, "alpha-again.log");
  ASSERT_EQ(again->Wait(30).value_or(-1), 2) << again->Log();
  EXPECT_THAT(again->Log(), HasSubstr("certificate of 'alpha' expired on"));
  ExpectEgressVerifies(kit);
}

TEST(CertLifetimeTest, ASiteWhoseCertificateExpiredDoesNotReconnectAndSaysWhy) {
  Kit kit = MakeKit();
  const Certificate cert =
      ReissueShortLived(kit.federation, kit.federation + "/sites/alpha", false, kLifetime);
  auto coordinator = StartCoordinator(kit, "coordinator.log");
  ASSERT_TRUE(WaitForLine(*coordinator, "listening on", 30)) << coordinator->Log();
  auto alpha = StartAlpha(kit, "alpha.log");
  ASSERT_TRUE(WaitForLine(*alpha, "joined federation", 30)) << alpha->Log();
  ASSERT_LT(absl::Now(), cert.NotAfter()) << "the site joined too late to test anything";
  coordinator->Signal(SIGKILL);
  coordinator->Wait(10);
  // The site tries to reconnect until its certificate's end, then looks at it before the next
  // try and stops: nothing more goes out.
  ASSERT_EQ(alpha->Wait(absl::ToDoubleSeconds(kLifetime) + 30).value_or(-1), 1) << alpha->Log();
  const std::string log = alpha->Log();
  EXPECT_THAT(log, HasSubstr("retrying in"));
  EXPECT_THAT(log, HasSubstr("this site's certificate of 'alpha' expired at " +
                             FormatCertificateTime(cert.NotAfter())));
  EXPECT_THAT(log, HasSubstr("not connecting to 127.0.0.1:"));
  ExpectEgressVerifies(kit);
}

TEST(CertLifetimeTest, ACoordinatorWhoseCertificateExpiresStopsAndTheSitesSayWhy) {
  Kit kit = MakeKit();
  const std::string pinned = [&] {
    std::string text = ReadText(kit.alpha_toml);
    size_t at = text.find("coordinator_fingerprint = \"") + 27;
    return text.substr(at, 64);
  }();
  const Certificate cert =
      ReissueShortLived(kit.federation, kit.federation + "/coordinator", true, kLifetime);
  ReplaceInFile(kit.alpha_toml, pinned, cert.Sha256Fingerprint());
  const std::string expired_at = "expired at " + FormatCertificateTime(cert.NotAfter());
  auto coordinator = StartCoordinator(kit, "coordinator.log");
  auto alpha = StartAlpha(kit, "alpha.log");
  ASSERT_TRUE(WaitForLine(*alpha, "joined federation", 30)) << alpha->Log();
  ASSERT_LT(absl::Now(), cert.NotAfter()) << "the site joined too late to test anything";
  ASSERT_EQ(coordinator->Wait(absl::ToDoubleSeconds(kLifetime) + 20).value_or(-1), 1)
      << coordinator->Log();
  EXPECT_THAT(coordinator->Log(),
              HasSubstr("the coordinator's certificate of 'coordinator' (" + kit.federation +
                        "/coordinator/cert.pem) " + expired_at));
  ASSERT_EQ(alpha->Wait(30).value_or(-1), 1) << alpha->Log();
  EXPECT_THAT(alpha->Log(), HasSubstr("the coordinator's certificate (" + cert.Sha256Fingerprint() +
                                      ") " + expired_at));
  // Its audit log ends before the certificate did: it verifies.
  std::string out;
  EXPECT_EQ(RunCommand({BuildPath("tools/hansa"), "audit", "verify",
                        kit.federation + "/coordinator/state/audit.jsonl", "--ca",
                        kit.federation + "/ca/ca.pem"},
                       &out),
            0)
      << out;
  // Restarted with the expired certificate, it refuses at once and names it.
  auto again = StartCoordinator(kit, "coordinator-again.log");
  ASSERT_EQ(again->Wait(30).value_or(-1), 2) << again->Log();
  EXPECT_THAT(again->Log(), HasSubstr("certificate of 'coordinator' expired on"));
}

}  // namespace
}  // namespace hansa::testing

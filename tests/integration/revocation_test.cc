// Certificate revocation as real processes on loopback: the federation operator revokes a site's
// certificate while the coordinator runs (a new revocation list signed with the CA key of the
// provisioned ca/ folder, written over the file coordinator.toml names); the coordinator picks
// the list up, refuses the site in the TLS handshake, says why in its log and puts the refusal
// on record, and the other sites train to the end.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "common/pki/authority.h"
#include "common/pki/revocation.h"
#include "tests/integration/harness.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

bool WaitForLine(Process& p, const std::string& text, double seconds) {
  return WaitFor(seconds, [&] { return p.Log().find(text) != std::string::npos; });
}

std::unique_ptr<Process> StartSite(const std::string& dir, const std::string& federation,
                                   const std::string& site) {
  return std::make_unique<Process>(
      std::vector<std::string>{BuildPath("client/hansa-client"), "--once", "--config",
                               federation + "/sites/" + site + "/site.toml"},
      dir + "/" + site + ".log");
}

// The coordinator's site_refused records made in the TLS handshake for `site`.
std::vector<nlohmann::json> HandshakeRefusals(const std::string& audit, const std::string& site) {
  std::vector<nlohmann::json> out;
  for (const nlohmann::json& r : ReadJsonLines(audit)) {
    if (r.value("event", "") != "site_refused") continue;
    const nlohmann::json& f = r["fields"];
    if (f.value("site", "") == site && f.value("stage", "") == "tls_handshake") out.push_back(f);
  }
  return out;
}

// A federation of alpha, beta, gamma and delta (plaintext, two rounds of three sites), its
// coordinator reading federation/coordinator/crl.pem, which holds an empty list (number 1).
struct Kit {
  std::string dir;
  std::string federation;
  std::string coordinator_toml;
  std::string crl;
  std::string audit;
};

Kit MakeKit() {
  Kit kit;
  kit.dir = FreshDir();
  kit.federation = Provision(kit.dir, {"alpha", "beta", "gamma", "delta"}, FreePort());
  kit.coordinator_toml = kit.federation + "/coordinator/coordinator.toml";
  kit.crl = kit.federation + "/coordinator/crl.pem";
  kit.audit = kit.federation + "/coordinator/state/audit.jsonl";
  ReplaceInFile(kit.coordinator_toml, "[coordinator]\n", "[coordinator]\nlinger_seconds = 5\n");
  AppendText(kit.coordinator_toml,
             "\n[model]\nname = \"mlp\"\nseed = 3\n"
             "[rounds]\ntotal = 2\nmin_sites = 3\nwait_for_sites_seconds = 120\n"
             "site_idle_seconds = 20\n"
             "[training]\nepochs = 1\nbatch_size = 32\nlearning_rate = 0.05\n"
             "[aggregation]\nmode = \"plaintext\"\n"
             "[pki]\nrevocation_list = \"crl.pem\"\n");
  for (const std::string site : {"alpha", "beta", "gamma", "delta"}) {
    const std::string path = kit.federation + "/sites/" + site + "/site.toml";
    ReplaceInFile(path, "[site]\n",
                  site == std::string("delta") ? "[site]\nreconnect_seconds = 4\n"
                                               : "[site]\nreconnect_seconds = 120\n");
    ReplaceInFile(path, "[policy]\n",
                  "[policy]\nrequire_secure_aggregation = false\nmin_cohort = 1\n");
    AppendText(path, "train_limit = 1500\ntest_limit = 500\n[compute]\nthreads = 1\n");
  }
  auto ca =
      CertificateAuthority::Load(kit.federation + "/ca/ca.pem", kit.federation + "/ca/ca-key.pem");
  EXPECT_TRUE(ca.ok()) << ca.status();
  const absl::Time now = absl::Now();
  auto empty = RevocationList::Issue(*ca, {}, 1, now, now + absl::Hours(24 * 7));
  EXPECT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(WriteRevocationListFile(kit.crl, *empty).ok());
  return kit;
}

// The operator revokes delta's certificate (keyCompromise) in list number 2, as `hansa ca
// revoke` would, with the CA key of the provisioned ca/ folder. Returns the refusal message.
std::string RevokeDelta(const Kit& kit) {
  auto ca =
      CertificateAuthority::Load(kit.federation + "/ca/ca.pem", kit.federation + "/ca/ca-key.pem");
  EXPECT_TRUE(ca.ok()) << ca.status();
  auto delta = Certificate::FromFile(kit.federation + "/sites/delta/cert.pem");
  EXPECT_TRUE(delta.ok()) << delta.status();
  const absl::Time revoked_at = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  auto list = RevocationList::Issue(*ca, {{delta->SerialHex(), revoked_at, "keyCompromise"}}, 2,
                                    revoked_at, revoked_at + absl::Hours(24 * 7));
  EXPECT_TRUE(list.ok()) << list.status();
  EXPECT_TRUE(WriteRevocationListFile(kit.crl, *list).ok());
  return "certificate of 'delta' (serial " + delta->SerialHex() +
         ") was revoked by the federation CA on " + FormatCertificateTime(revoked_at) +
         " (keyCompromise)";
}

// The three others train to the end; the audit log verifies.
void ExpectTheOthersFinish(const Kit& kit, Process& coordinator) {
  auto alpha = StartSite(kit.dir, kit.federation, "alpha");
  auto beta = StartSite(kit.dir, kit.federation, "beta");
  auto gamma = StartSite(kit.dir, kit.federation, "gamma");
  ASSERT_EQ(coordinator.Wait(300).value_or(-1), 0) << coordinator.Log();
  EXPECT_EQ(alpha->Wait(60).value_or(-1), 0) << alpha->Log();
  EXPECT_EQ(beta->Wait(60).value_or(-1), 0) << beta->Log();
  EXPECT_EQ(gamma->Wait(60).value_or(-1), 0) << gamma->Log();
  std::string out;
  EXPECT_EQ(RunCommand({BuildPath("tools/hansa"), "audit", "verify", kit.audit, "--ca",
                        kit.federation + "/ca/ca.pem"},
                       &out),
            0)
      << out;
}

TEST(RevocationTest, ASiteRevokedWhileConnectedIsRefusedAtItsNextCall) {
  Kit kit = MakeKit();
  Process coordinator(
      {BuildPath("coordinator/hansa-coordinator"), "--config", kit.coordinator_toml},
      kit.dir + "/coordinator.log");
  ASSERT_TRUE(WaitForLine(coordinator, "listening on", 60)) << coordinator.Log();
  // delta joins and waits for a round (too few sites yet), polling over its open connection.
  auto delta = StartSite(kit.dir, kit.federation, "delta");
  ASSERT_TRUE(WaitForLine(*delta, "joined federation", 60)) << delta->Log();
  const std::string refused = RevokeDelta(kit);
  ASSERT_TRUE(WaitForLine(coordinator, "reloaded: number 2, 1 revoked certificate(s)", 60))
      << coordinator.Log();
  // Its next poll is refused, it stops and says why.
  EXPECT_NE(delta->Wait(90).value_or(0), 0) << delta->Log();
  EXPECT_THAT(delta->Log(), HasSubstr(refused));
  EXPECT_THAT(coordinator.Log(),
              HasSubstr("refused a call of a connected client: the client's " + refused));
  std::vector<nlohmann::json> refusals;
  for (const nlohmann::json& r : ReadJsonLines(kit.audit)) {
    if (r.value("event", "") == "site_refused" && r["fields"].value("site", "") == "delta") {
      refusals.push_back(r["fields"]);
    }
  }
  ASSERT_EQ(refusals.size(), 1u) << ReadText(kit.audit);
  EXPECT_EQ(refusals[0].value("stage", ""), "call");
  EXPECT_EQ(refusals[0].value("certificate_problem", ""), "revoked");
  EXPECT_EQ(refusals[0].value("reason", ""), refused);
  ExpectTheOthersFinish(kit, coordinator);
}

TEST(RevocationTest, ARevokedSiteIsRefusedOnRecordWhileTheOthersTrain) {
  Kit kit = MakeKit();
  Process coordinator(
      {BuildPath("coordinator/hansa-coordinator"), "--config", kit.coordinator_toml},
      kit.dir + "/coordinator.log");
  ASSERT_TRUE(WaitForLine(coordinator, "listening on", 60)) << coordinator.Log();
  EXPECT_THAT(coordinator.Log(), HasSubstr("revocation list " + kit.crl + ": number 1, 0 revoked"));

  // delta's key is compromised: the operator revokes its certificate and replaces the list,
  // which the running coordinator picks up.
  const std::string refused = RevokeDelta(kit);
  ASSERT_TRUE(WaitForLine(coordinator, "reloaded: number 2, 1 revoked certificate(s)", 60))
      << coordinator.Log();

  // delta cannot join: refused in every handshake, it gives up.
  auto delta = StartSite(kit.dir, kit.federation, "delta");
  ASSERT_TRUE(WaitFor(60, [&] { return !HandshakeRefusals(kit.audit, "delta").empty(); }))
      << coordinator.Log();
  EXPECT_NE(delta->Wait(90).value_or(0), 0) << delta->Log();
  EXPECT_THAT(delta->Log(), Not(HasSubstr("joined federation")));
  EXPECT_THAT(coordinator.Log(), HasSubstr("refused a TLS client: the client's " + refused));

  ExpectTheOthersFinish(kit, coordinator);

  // On record once, however often delta retried; delta never admitted.
  auto delta_cert = Certificate::FromFile(kit.federation + "/sites/delta/cert.pem");
  ASSERT_TRUE(delta_cert.ok()) << delta_cert.status();
  const std::vector<nlohmann::json> refusals = HandshakeRefusals(kit.audit, "delta");
  ASSERT_EQ(refusals.size(), 1u);
  EXPECT_EQ(refusals[0].value("certificate_problem", ""), "revoked");
  EXPECT_EQ(refusals[0].value("serial", ""), delta_cert->SerialHex());
  EXPECT_EQ(refusals[0].value("fingerprint", ""), delta_cert->Sha256Fingerprint());
  EXPECT_EQ(refusals[0].value("country", ""), "DE");
  EXPECT_EQ(refusals[0].value("reason", ""), refused);
  int admitted = 0;
  for (const nlohmann::json& r : ReadJsonLines(kit.audit)) {
    if (r.value("event", "") == "site_admitted") {
      ++admitted;
      EXPECT_NE(r["fields"].value("site", ""), "delta");
    }
  }
  EXPECT_EQ(admitted, 3);
}

// A list the coordinator cannot use stops it at start, naming the file; a bad list written
// while it runs is logged and the old one kept.
TEST(RevocationTest, ABadListStopsTheCoordinatorAtStartAndIsIgnoredWhileItRuns) {
  const std::string dir = FreshDir();
  const int port = FreePort();
  const std::string federation = Provision(dir, {"alpha", "beta", "gamma"}, port);
  const std::string coordinator_toml = federation + "/coordinator/coordinator.toml";
  AppendText(coordinator_toml, "\n[pki]\nrevocation_list = \"crl.pem\"\n");
  const std::string crl = federation + "/coordinator/crl.pem";
  AppendText(crl, "not a revocation list\n");
  {
    Process coordinator({BuildPath("coordinator/hansa-coordinator"), "--config", coordinator_toml},
                        dir + "/bad.log");
    ASSERT_EQ(coordinator.Wait(60).value_or(-1), 2) << coordinator.Log();
    EXPECT_THAT(coordinator.Log(), HasSubstr("pki.revocation_list: revocation list file " + crl));
  }
  auto ca = CertificateAuthority::Load(federation + "/ca/ca.pem", federation + "/ca/ca-key.pem");
  ASSERT_TRUE(ca.ok()) << ca.status();
  const absl::Time now = absl::Now();
  auto list =
      RevocationList::Issue(*ca, {{"0abc", now, "superseded"}}, 5, now, now + absl::Hours(24));
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_TRUE(WriteRevocationListFile(crl, *list).ok());
  Process coordinator({BuildPath("coordinator/hansa-coordinator"), "--config", coordinator_toml},
                      dir + "/coordinator.log");
  ASSERT_TRUE(WaitForLine(coordinator, "listening on", 60)) << coordinator.Log();
  EXPECT_THAT(coordinator.Log(), HasSubstr("number 5, 1 revoked certificate(s)"));
  // A changed file that no longer holds a list.
  ReplaceInFile(crl, "-----BEGIN X509 CRL-----", "-----BEGIN X509 CRX-----");
  ASSERT_TRUE(WaitForLine(coordinator, "keeping the revocation list read before (number 5)", 60))
      << coordinator.Log();
  EXPECT_TRUE(coordinator.Running());
  coordinator.Signal(SIGTERM);
  coordinator.Wait(60);
}

}  // namespace
}  // namespace hansa::testing

// Certificates that expire during a run, as real processes on loopback: a site's certificate
// expiring while it is connected or while it reconnects, and the coordinator's own. Each side
// names the certificate and the moment it expired instead of a bare TLS handshake failure.
// The short-lived certificates come from the federation's CA with the project's own code, for
// the keys `hansa provision` made. Last, the coordinator's TLS handshake itself, met by a raw TLS
// client that skips a site's own checks: expired, early, foreign and missing client
// certificates are refused in the handshake and the coordinator says which and why.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "common/pki/authority.h"
#include "common/pki/key.h"
#include "tests/integration/harness.h"
#include "tests/support/tls_peers.h"

namespace hansa::testing {
namespace {

using ::testing::HasSubstr;

// Long enough for a coordinator and a site to start and the site to join on a busy machine;
// the tests wait for the join before the end comes.
constexpr absl::Duration kLifetime = absl::Seconds(15);

// A certificate of the subject of `kit_dir`'s cert.pem for its key.pem, from `ca`: for a TLS
// server (localhost, 127.0.0.1) when `server`, a client otherwise; valid until `not_after`, from
// `not_before` where given (the CA's default otherwise).
Certificate Reissue(const CertificateAuthority& ca, const std::string& kit_dir, bool server,
                    std::optional<absl::Time> not_before, absl::Time not_after) {
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
  if (not_before) request.not_before = *not_before;
  request.not_after = not_after;
  auto cert = ca.Issue(request, key->GetPublicKey());
  EXPECT_TRUE(cert.ok()) << cert.status();
  return *std::move(cert);
}

// Replaces the certificate in `kit_dir` (cert.pem beside key.pem) with one of the same subject,
// usage and names that expires `lifetime` from now. Returns it.
Certificate ReissueShortLived(const std::string& federation, const std::string& kit_dir,
                              bool server, absl::Duration lifetime) {
  auto ca = CertificateAuthority::Load(federation + "/ca/ca.pem", federation + "/ca/ca-key.pem");
  EXPECT_TRUE(ca.ok()) << ca.status();
  Certificate cert = Reissue(*ca, kit_dir, server, std::nullopt, absl::Now() + lifetime);
  std::ofstream(kit_dir + "/cert.pem", std::ios::trunc) << cert.ToPem();
  return cert;
}

// A provisioned federation of three sites (secure aggregation's minimum, so the coordinator
// only waits while alpha alone is up), alpha quick to notice a lost connection.
struct Kit {
  std::string dir;
  std::string federation;
  std::string alpha_toml;
  int port = 0;
};

Kit MakeKit() {
  Kit kit;
  kit.dir = FreshDir();
  kit.port = FreePort();
  kit.federation = Provision(kit.dir, {"alpha", "beta", "gamma"}, kit.port);
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
  return std::make_unique<Process>(std::vector<std::string>{BuildPath("client/hansa-client"),
                                                            "--once", "--config", kit.alpha_toml},
                                   kit.dir + "/" + log);
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
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

// ---- The coordinator's handshake, met by a raw TLS 1.3 client ----

enum class Handshake {
  kServed,   // the handshake passed and the coordinator answered with HTTP/2 SETTINGS
  kRefused,  // the connection ended before any HTTP/2 byte came back
};

// Connects to 127.0.0.1:port over TLS 1.3 (ALPN h2), verifying the coordinator against `ca_pem`
// and presenting `cert_pem`/`key_pem` (none when empty), sends the HTTP/2 preface and an empty
// SETTINGS frame, and reports whether the coordinator served the connection.
Handshake TryTls(int port, const std::string& ca_pem, const std::string& cert_pem,
                 const std::string& key_pem) {
  ::signal(SIGPIPE, SIG_IGN);  // a refused connection is closed under our writes
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  EXPECT_TRUE(ctx);
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  BioPtr ca_bio(BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size())));
  X509Ptr ca(PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr));
  EXPECT_TRUE(ca);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca.get());
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (!cert_pem.empty()) {
    BioPtr cert_bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
    X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    BioPtr key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
    EvpPkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    EXPECT_TRUE(cert && key);
    EXPECT_EQ(SSL_CTX_use_certificate(ctx.get(), cert.get()), 1);
    EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx.get(), key.get()), 1);
  }
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof kAlpn);

  // A coordinator that neither serves nor refuses fails the test.
  int fd = ConnectLoopback(port, absl::Seconds(20));
  SslPtr ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd);
  SSL_set_tlsext_host_name(ssl.get(), "localhost");
  Handshake outcome = Handshake::kRefused;
  // In TLS 1.3 the client's side of the handshake ends before the server has looked at the
  // client's certificate: the verdict is whether anything comes back.
  if (SSL_connect(ssl.get()) == 1) {
    static const char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    static const unsigned char kSettings[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    SSL_write(ssl.get(), kPreface, sizeof kPreface - 1);
    SSL_write(ssl.get(), kSettings, sizeof kSettings);
    unsigned char frame[9];
    int got = 0;
    while (got < 9) {
      const int n = SSL_read(ssl.get(), frame + got, 9 - got);
      if (n <= 0) break;
      got += n;
    }
    if (got == 9 && frame[3] == 4) outcome = Handshake::kServed;
  }
  ERR_clear_error();
  ssl.reset();
  ::close(fd);
  return outcome;
}

TEST(CertLifetimeTest, TheCoordinatorRefusesBadClientCertificatesInTheHandshakeAndSaysWhy) {
  Kit kit = MakeKit();
  const std::string alpha = kit.federation + "/sites/alpha";
  auto ca =
      CertificateAuthority::Load(kit.federation + "/ca/ca.pem", kit.federation + "/ca/ca-key.pem");
  ASSERT_TRUE(ca.ok()) << ca.status();
  const absl::Time now = absl::Now();
  // alpha's own key each time: only the certificate differs. The expired one ended a second
  // ago, the early one starts in an hour, the foreign one comes from another CA of the same name.
  const Certificate expired =
      Reissue(*ca, alpha, false, ca->certificate().NotBefore(), now - absl::Seconds(1));
  const Certificate early = Reissue(*ca, alpha, false, now + absl::Hours(1), now + absl::Hours(2));
  auto foreign_ca =
      CertificateAuthority::Create({.federation = "test", .organization = "", .country = "DE"});
  ASSERT_TRUE(foreign_ca.ok()) << foreign_ca.status();
  const Certificate foreign =
      Reissue(*foreign_ca, alpha, false, now - absl::Minutes(1), now + absl::Hours(1));
  const std::string ca_pem = ReadText(kit.federation + "/ca/ca.pem");
  const std::string key_pem = ReadText(alpha + "/key.pem");

  auto coordinator = StartCoordinator(kit, "coordinator.log");
  ASSERT_TRUE(WaitForLine(*coordinator, "listening on", 30)) << coordinator->Log();
  EXPECT_EQ(TryTls(kit.port, ca_pem, expired.ToPem(), key_pem), Handshake::kRefused);
  EXPECT_EQ(TryTls(kit.port, ca_pem, early.ToPem(), key_pem), Handshake::kRefused);
  EXPECT_EQ(TryTls(kit.port, ca_pem, foreign.ToPem(), key_pem), Handshake::kRefused);
  EXPECT_EQ(TryTls(kit.port, ca_pem, "", ""), Handshake::kRefused);
  // The coordinator's own certificate is the federation's, but for servers only.
  EXPECT_EQ(TryTls(kit.port, ca_pem, ReadText(kit.federation + "/coordinator/cert.pem"),
                   ReadText(kit.federation + "/coordinator/key.pem")),
            Handshake::kRefused);
  // The same key with its provisioned certificate is served: the refusals were the certificates.
  EXPECT_EQ(TryTls(kit.port, ca_pem, ReadText(alpha + "/cert.pem"), key_pem), Handshake::kServed);

  const std::string refused = "refused a TLS client: the client's certificate of 'alpha' ";
  ASSERT_TRUE(WaitForLine(*coordinator, "not allowed for TLS client authentication", 10))
      << coordinator->Log();
  const std::string log = coordinator->Log();
  EXPECT_THAT(log, HasSubstr(refused + "expired on " + FormatCertificateTime(expired.NotAfter()) +
                             "; ask the federation operator for a new certificate (sha256 " +
                             expired.Sha256Fingerprint() + ")"));
  EXPECT_THAT(log, HasSubstr(refused + "is not yet valid: valid from " +
                             FormatCertificateTime(early.NotBefore())));
  EXPECT_THAT(log, HasSubstr("(sha256 " + foreign.Sha256Fingerprint() + ")"));
  EXPECT_THAT(log, HasSubstr("the client's certificate of 'coordinator' is not allowed for TLS "
                             "client authentication"));
  EXPECT_EQ(Count(log, "refused a TLS client: "), 4u) << log;
  EXPECT_TRUE(coordinator->Running());

  // Each refusal is on record (site_refused, stage tls_handshake) with what was wrong, and the
  // audit log verifies.
  const std::string audit = kit.federation + "/coordinator/state/audit.jsonl";
  std::map<std::string, nlohmann::json> by_fingerprint;
  ASSERT_TRUE(WaitFor(30, [&] {
    by_fingerprint.clear();
    for (const nlohmann::json& r : ReadJsonLines(audit)) {
      if (r.value("event", "") == "site_refused" &&
          r["fields"].value("stage", "") == "tls_handshake") {
        by_fingerprint[r["fields"].value("fingerprint", "")] = r["fields"];
      }
    }
    return by_fingerprint.size() == 4;
  })) << ReadText(audit);
  const auto problem = [&](const Certificate& c) {
    return by_fingerprint[c.Sha256Fingerprint()].value("certificate_problem", "");
  };
  EXPECT_EQ(problem(expired), "expired");
  EXPECT_EQ(problem(early), "not_yet_valid");
  EXPECT_EQ(problem(foreign), "wrong_ca");
  auto coordinator_cert = Certificate::FromFile(kit.federation + "/coordinator/cert.pem");
  ASSERT_TRUE(coordinator_cert.ok());
  EXPECT_EQ(problem(*coordinator_cert), "invalid");
  const nlohmann::json& e = by_fingerprint[expired.Sha256Fingerprint()];
  EXPECT_EQ(e.value("site", ""), "alpha");
  EXPECT_EQ(e.value("country", ""), "DE");
  EXPECT_EQ(e.value("serial", ""), expired.SerialHex());
  EXPECT_THAT(e.value("reason", ""), HasSubstr("certificate of 'alpha' expired on "));
  coordinator->Signal(SIGTERM);
  coordinator->Wait(60);
  std::string out;
  EXPECT_EQ(RunCommand({BuildPath("tools/hansa"), "audit", "verify", audit, "--ca",
                        kit.federation + "/ca/ca.pem"},
                       &out),
            0)
      << out;
}

}  // namespace
}  // namespace hansa::testing

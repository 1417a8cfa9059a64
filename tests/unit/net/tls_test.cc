// The coordinator's own check of a client certificate (CheckClientCertificate), which replaces
// OpenSSL's chain check in its TLS handshake so that a refusal can say why: it must refuse every
// certificate that check refuses. Each candidate meets both: OpenSSL as a TLS 1.3 server that
// verifies client certificates against the federation CA (what gRPC did before), in memory over
// a BIO pair, and CheckClientCertificate.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>

#include <list>
#include <memory>
#include <string>
#include <vector>

#include "common/fileio/fileio.h"
#include "common/net/tls.h"
#include "common/pki/authority.h"
#include "tests/support/tls_peers.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

using testing::Participant;
using testing::SslCtxPtr;
using testing::SslPtr;

// A participant of `ca` valid over [not_before, not_after].
Participant Issue(const CertificateAuthority& ca, const std::string& name, bool server,
                  absl::Time not_before, absl::Time not_after) {
  return testing::IssueParticipant(ca, name, server, KeyType::kEd25519, not_before, not_after);
}

SslCtxPtr Context(bool server, const Certificate& cert, const PrivateKey& key,
                  const Certificate& ca) {
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  EXPECT_EQ(SSL_CTX_use_certificate(ctx.get(), cert.get()), 1);
  EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx.get(), key.get()), 1);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca.get());
  SSL_CTX_set_verify(ctx.get(),
                     server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                     nullptr);
  return ctx;
}

// Whether an OpenSSL server verifying client certificates against `ca` accepts `client`.
bool OpenSslAccepts(const Participant& server_id, const Certificate& ca, const Certificate& cert,
                    const PrivateKey& key) {
  SslCtxPtr server_ctx = Context(true, server_id.cert, server_id.key, ca);
  SslCtxPtr client_ctx = Context(false, cert, key, ca);
  SslPtr server(SSL_new(server_ctx.get()));
  SslPtr client(SSL_new(client_ctx.get()));
  BIO* client_bio = nullptr;
  BIO* server_bio = nullptr;
  BIO_new_bio_pair(&client_bio, 0, &server_bio, 0);
  SSL_set_bio(client.get(), client_bio, client_bio);
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_connect_state(client.get());
  SSL_set_accept_state(server.get());
  bool client_done = false, server_done = false;
  for (int i = 0; i < 20 && !(client_done && server_done); ++i) {
    if (!client_done) {
      const int rc = SSL_do_handshake(client.get());
      if (rc == 1) {
        client_done = true;
      } else if (SSL_get_error(client.get(), rc) != SSL_ERROR_WANT_READ) {
        break;
      }
    }
    if (!server_done) {
      const int rc = SSL_do_handshake(server.get());
      if (rc == 1) {
        server_done = true;
      } else if (SSL_get_error(server.get(), rc) != SSL_ERROR_WANT_READ) {
        break;
      }
    }
  }
  ERR_clear_error();
  return client_done && server_done;
}

TEST(CheckClientCertificateTest, RefusesEveryCertificateOpenSslRefusesAndSaysWhy) {
  auto ca =
      CertificateAuthority::Create({.federation = "demo", .organization = "", .country = "DE"});
  auto rogue =
      CertificateAuthority::Create({.federation = "demo", .organization = "", .country = "DE"});
  ASSERT_TRUE(ca.ok() && rogue.ok());
  const absl::Time now = absl::Now();
  const absl::Time start = ca->certificate().NotBefore();
  const Participant coordinator = Issue(*ca, "coordinator", true, start, now + absl::Hours(1));
  struct Candidate {
    std::string name;
    const Certificate* cert;
    const PrivateKey* key;
    std::string why;  // empty: accepted
  };
  std::list<Participant> issued;
  std::vector<Candidate> candidates;
  auto add = [&](const std::string& name, Participant p, const std::string& why) {
    issued.push_back(std::move(p));
    candidates.push_back({name, &issued.back().cert, &issued.back().key, why});
  };
  add("valid", Issue(*ca, "berlin", false, start, now + absl::Hours(1)), "");
  add("expired", Issue(*ca, "berlin", false, start, now - absl::Seconds(1)),
      "certificate of 'berlin' expired on ");
  add("early", Issue(*ca, "berlin", false, now + absl::Hours(1), now + absl::Hours(2)),
      "certificate of 'berlin' is not yet valid: valid from ");
  add("foreign", Issue(*rogue, "berlin", false, now - absl::Minutes(1), now + absl::Hours(1)),
      "certificate of 'berlin' was not signed by the federation CA");
  candidates.push_back({"server only", &coordinator.cert, &coordinator.key,
                        "certificate of 'coordinator' is not allowed for TLS client"});
  candidates.push_back({"the CA itself", &ca->certificate(), &ca->private_key(),
                        "is a CA certificate, not a participant certificate"});
  candidates.push_back({"the other CA", &rogue->certificate(), &rogue->private_key(),
                        "is a CA certificate, not a participant certificate"});
  for (const Candidate& c : candidates) {
    const bool openssl = OpenSslAccepts(coordinator, ca->certificate(), *c.cert, *c.key);
    const Status ours = CheckClientCertificate(c.cert->ToPem(), ca->certificate(), absl::Now());
    // Here both agree on every candidate; what matters is that OpenSSL's refusal is ours too.
    EXPECT_EQ(ours.ok(), openssl) << c.name << ": " << ours;
    if (c.why.empty()) {
      EXPECT_TRUE(openssl) << c.name;
      EXPECT_TRUE(ours.ok()) << c.name << ": " << ours;
    } else {
      EXPECT_EQ(ours.code(), absl::StatusCode::kPermissionDenied) << c.name << ": " << ours;
      EXPECT_THAT(std::string(ours.message()), HasSubstr(c.why)) << c.name;
    }
  }
}

TEST(CheckClientCertificateTest, RefusesWhatIsNotACertificate) {
  auto ca =
      CertificateAuthority::Create({.federation = "demo", .organization = "", .country = "DE"});
  ASSERT_TRUE(ca.ok());
  const Status st = CheckClientCertificate("not a certificate", ca->certificate(), absl::Now());
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(st.message()), HasSubstr("certificate could not be read"));
}

// The coordinator's policy: the CA check, then the revocation list, which it re-reads when the
// file changes; refusals told once per certificate and problem.
class ClientCertificatePolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca =
        CertificateAuthority::Create({.federation = "demo", .organization = "", .country = "DE"});
    ASSERT_TRUE(ca.ok());
    ca_ = std::make_unique<CertificateAuthority>(*std::move(ca));
    std::string tmpl = ::testing::TempDir() + "/net_policy_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    crl_ = tmpl + "/crl.pem";
  }
  RevocationList List(std::vector<RevokedEntry> entries, uint64_t number) {
    auto list =
        RevocationList::Issue(*ca_, std::move(entries), number, now_, now_ + absl::Hours(24));
    EXPECT_TRUE(list.ok()) << list.status();
    return *std::move(list);
  }
  Participant Site(const std::string& name) { return testing::IssueParticipant(*ca_, name, false); }

  const absl::Time now_ = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  std::unique_ptr<CertificateAuthority> ca_;
  std::string crl_;
};

TEST_F(ClientCertificatePolicyTest, RefusesARevokedCertificateAndSaysWhenAndWhy) {
  Participant alpha = Site("alpha"), beta = Site("beta");
  ClientCertificatePolicy policy(ca_->certificate());
  EXPECT_TRUE(policy.Check(alpha.cert.ToPem(), absl::Now()).ok());
  policy.SetRevocationList(std::make_shared<const RevocationList>(
      List({{alpha.cert.SerialHex(), now_, "keyCompromise"}}, 1)));
  const Status st = policy.Check(alpha.cert.ToPem(), absl::Now());
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(std::string(st.message()), "certificate of 'alpha' (serial " + alpha.cert.SerialHex() +
                                           ") was revoked by the federation CA on " +
                                           FormatCertificateTime(now_) + " (keyCompromise)");
  EXPECT_EQ(CertificateRefusalKind(st), "revoked");
  EXPECT_TRUE(policy.Check(beta.cert.ToPem(), absl::Now()).ok());
}

TEST_F(ClientCertificatePolicyTest, RereadsTheWatchedFileAndKeepsTheOldListWhenTheNewIsBad) {
  Participant alpha = Site("alpha");
  ASSERT_TRUE(WriteRevocationListFile(crl_, List({}, 1)).ok());
  ClientCertificatePolicy policy(ca_->certificate());
  ASSERT_TRUE(policy.WatchRevocationList(crl_).ok());
  ASSERT_TRUE(
      WriteRevocationListFile(crl_, List({{alpha.cert.SerialHex(), now_, "superseded"}}, 2)).ok());
  // Looked at no more than once a second: times are given, not waited for.
  const absl::Time t = absl::Now() + absl::Seconds(5);
  EXPECT_EQ(policy.Check(alpha.cert.ToPem(), t).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(policy.revocation_list()->number(), 2u);

  // A damaged file, then an older list: both keep list 2.
  ASSERT_TRUE(WriteFileAtomically(crl_, "damaged").ok());
  policy.Refresh(t + absl::Seconds(2));
  EXPECT_EQ(policy.revocation_list()->number(), 2u);
  ASSERT_TRUE(WriteRevocationListFile(crl_, List({}, 1)).ok());
  policy.Refresh(t + absl::Seconds(4));
  EXPECT_EQ(policy.revocation_list()->number(), 2u);
  EXPECT_EQ(policy.Check(alpha.cert.ToPem(), t + absl::Seconds(6)).code(),
            absl::StatusCode::kPermissionDenied);
  // A newer list that lifts the revocation takes effect.
  ASSERT_TRUE(WriteRevocationListFile(crl_, List({}, 3)).ok());
  policy.Refresh(t + absl::Seconds(8));
  EXPECT_EQ(policy.revocation_list()->number(), 3u);
  EXPECT_TRUE(policy.Check(alpha.cert.ToPem(), t + absl::Seconds(8)).ok());
}

TEST_F(ClientCertificatePolicyTest, ABadFileAtStartIsAnErrorNamingIt) {
  ASSERT_TRUE(WriteFileAtomically(crl_, "not a list").ok());
  ClientCertificatePolicy policy(ca_->certificate());
  const Status st = policy.WatchRevocationList(crl_);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr(crl_));
  EXPECT_EQ(policy.revocation_list(), nullptr);
}

TEST_F(ClientCertificatePolicyTest, TellsEachRefusalOncePerCertificateAndProblem) {
  Participant alpha = Site("alpha");
  Participant expired = testing::IssueParticipant(*ca_, "beta", false, KeyType::kEd25519,
                                                  now_ - absl::Hours(2), now_ - absl::Hours(1));
  ClientCertificatePolicy policy(ca_->certificate());
  policy.SetRevocationList(std::make_shared<const RevocationList>(
      List({{alpha.cert.SerialHex(), now_, "keyCompromise"}}, 1)));
  std::vector<CertificateRefusal> told;
  policy.SetRefusalSink([&](const CertificateRefusal& r) { told.push_back(r); });
  for (int i = 0; i < 5; ++i) {
    for (const Participant* p : {&alpha, &expired}) {
      const absl::Time at = absl::Now();
      const Status st = policy.Check(p->cert.ToPem(), at);
      ASSERT_FALSE(st.ok());
      policy.Refused(p->cert.ToPem(), st, at);
    }
  }
  ASSERT_EQ(told.size(), 2u);
  EXPECT_EQ(told[0].subject.common_name, "alpha");
  EXPECT_EQ(told[0].subject.country, "DE");
  EXPECT_EQ(told[0].kind, "revoked");
  EXPECT_EQ(told[0].serial_hex, alpha.cert.SerialHex());
  EXPECT_EQ(told[0].fingerprint, alpha.cert.Sha256Fingerprint());
  EXPECT_THAT(told[0].message, HasSubstr("was revoked by the federation CA"));
  EXPECT_EQ(told[1].subject.common_name, "beta");
  EXPECT_EQ(told[1].kind, "expired");
  // Unreadable input is told too, once.
  policy.Refused("junk", absl::PermissionDeniedError("certificate could not be read: x"), now_);
  policy.Refused("junk", absl::PermissionDeniedError("certificate could not be read: x"), now_);
  ASSERT_EQ(told.size(), 3u);
  EXPECT_EQ(told[2].fingerprint, "unreadable");
  EXPECT_EQ(told[2].kind, "invalid");
}

TEST(CertificateRefusalKindTest, NamesEachProblem) {
  EXPECT_EQ(CertificateRefusalKind(absl::PermissionDeniedError(
                "certificate of 'a' expired on 2031-01-01 00:00:00 UTC; ask ...")),
            "expired");
  EXPECT_EQ(CertificateRefusalKind(
                absl::PermissionDeniedError("certificate of 'a' is not yet valid: valid from ...")),
            "not_yet_valid");
  EXPECT_EQ(CertificateRefusalKind(absl::PermissionDeniedError(
                "certificate of 'a' was not signed by the federation CA (x)")),
            "wrong_ca");
  EXPECT_EQ(CertificateRefusalKind(absl::PermissionDeniedError(
                "certificate of 'a' is not allowed for TLS client authentication")),
            "invalid");
}

}  // namespace
}  // namespace hansa

#include "common/pki/authority.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_replace.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/key_types.h"

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

CertificateAuthority MakeCa(const std::string& federation = "demo",
                            KeyType type = KeyType::kEd25519) {
  CaOptions options;
  options.federation = federation;
  options.organization = "Hansa Operators";
  options.country = "DE";
  options.key_type = type;
  auto ca = CertificateAuthority::Create(options);
  EXPECT_TRUE(ca.ok()) << ca.status();
  return std::move(ca).value();
}

CertificateRequest SiteRequest(const std::string& name = "berlin") {
  CertificateRequest request;
  request.subject = {name, "Charité Berlin", "DE"};
  request.client_auth = true;
  request.dns_names = {name};
  return request;
}

Certificate Issue(const CertificateAuthority& ca, const CertificateRequest& request,
                  KeyType type = KeyType::kEd25519) {
  auto key = PrivateKey::Generate(type);
  EXPECT_TRUE(key.ok());
  auto cert = ca.Issue(request, key->GetPublicKey());
  EXPECT_TRUE(cert.ok()) << cert.status();
  return std::move(cert).value();
}

class AuthorityTest : public ::testing::TestWithParam<KeyType> {};

TEST_P(AuthorityTest, IssuedCertificateVerifiesAgainstItsCa) {
  CertificateAuthority ca = MakeCa("demo", GetParam());
  Certificate cert = Issue(ca, SiteRequest(), GetParam());
  EXPECT_TRUE(VerifyCertificate(cert, ca.certificate(), absl::Now()).ok());
  Status st = VerifyCertificate(cert, ca.certificate(), absl::Now(), CertificateUsage::kTlsClient);
  EXPECT_TRUE(st.ok()) << st;
}

INSTANTIATE_TEST_SUITE_P(Types, AuthorityTest, testing::AllKeyTypes(), testing::KeyTypeTestName);

TEST(AuthorityTest, CaCertificateHasCaExtensionsAndName) {
  CertificateAuthority ca = MakeCa();
  const Certificate& cert = ca.certificate();
  EXPECT_TRUE(cert.IsCa());
  EXPECT_EQ(cert.Subject(), (SubjectName{"demo CA", "Hansa Operators", "DE"}));
  EXPECT_EQ(cert.Issuer(), cert.Subject());
  EXPECT_GT(cert.NotAfter() - absl::Now(), absl::Hours(24 * 3650));
}

TEST(AuthorityTest, CertificateOfAnotherCaWithTheSameNameIsRejected) {
  CertificateAuthority ours = MakeCa("demo");
  CertificateAuthority theirs = MakeCa("demo");  // same subject name, different key
  Certificate cert = Issue(theirs, SiteRequest("mallory"));
  Status st = VerifyCertificate(cert, ours.certificate(), absl::Now());
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("certificate of 'mallory' was not signed by the federation CA"));
}

TEST(AuthorityTest, CertificateOfAnotherFederationIsRejected) {
  CertificateAuthority ours = MakeCa("demo");
  CertificateAuthority theirs = MakeCa("other");
  Status st =
      VerifyCertificate(Issue(theirs, SiteRequest("paris")), ours.certificate(), absl::Now());
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("certificate of 'paris' was not signed by the federation CA"));
}

TEST(AuthorityTest, ExpiredCertificateIsRejectedWithItsDate) {
  CertificateAuthority ca = MakeCa();
  CertificateRequest request = SiteRequest();
  request.not_before = absl::FromCivil(absl::CivilSecond(2024, 1, 1, 0, 0, 0), absl::UTCTimeZone());
  request.not_after = absl::FromCivil(absl::CivilSecond(2024, 2, 1, 12, 0, 0), absl::UTCTimeZone());
  Certificate cert = Issue(ca, request);
  Status st = VerifyCertificate(cert, ca.certificate(), absl::Now());
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("certificate of 'berlin' expired on 2024-02-01 12:00:00 UTC"));
}

TEST(AuthorityTest, CertificateIsCheckedAtTheGivenTime) {
  CertificateAuthority ca = MakeCa();
  CertificateRequest future = SiteRequest();
  future.not_before = absl::Now() + absl::Hours(24);
  Status early = VerifyCertificate(Issue(ca, future), ca.certificate(), absl::Now());
  EXPECT_EQ(early.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(early.message()), HasSubstr("certificate of 'berlin' is not yet valid"));

  Certificate cert = Issue(ca, SiteRequest());
  Status before_ca = VerifyCertificate(cert, ca.certificate(), absl::Now() - absl::Hours(3));
  EXPECT_THAT(std::string(before_ca.message()),
              HasSubstr("the federation CA certificate is not yet valid"));
  Status late = VerifyCertificate(cert, ca.certificate(), absl::Now() + absl::Hours(24 * 400));
  EXPECT_THAT(std::string(late.message()), HasSubstr("certificate of 'berlin' expired on"));
  EXPECT_TRUE(VerifyCertificate(cert, ca.certificate(), absl::Now() + absl::Hours(24 * 360)).ok());
}

TEST(AuthorityTest, SiteCertificateIsNotAServerCertificate) {
  CertificateAuthority ca = MakeCa();
  Certificate cert = Issue(ca, SiteRequest());
  Status st = VerifyCertificate(cert, ca.certificate(), absl::Now(), CertificateUsage::kTlsServer);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("'berlin' is not allowed for TLS server authentication"));
}

TEST(AuthorityTest, CaCertificateIsNotAParticipant) {
  CertificateAuthority ca = MakeCa();
  Status st = VerifyCertificate(ca.certificate(), ca.certificate(), absl::Now());
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(st.message()), HasSubstr("is a CA certificate"));
  Certificate site = Issue(ca, SiteRequest());
  EXPECT_EQ(VerifyCertificate(site, site, absl::Now()).code(), absl::StatusCode::kInvalidArgument);
}

TEST(AuthorityTest, SubjectAndAltNamesRoundTripThroughPem) {
  CertificateAuthority ca = MakeCa();
  CertificateRequest request;
  request.subject = {"coordinator", "Hansa Operators", "FR"};
  request.server_auth = true;
  request.dns_names = {"localhost", "fl.example.org"};
  request.ip_addresses = {"127.0.0.1", "::1"};
  Certificate issued = Issue(ca, request);
  auto cert = Certificate::FromPem(issued.ToPem());
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(cert->Subject(), (SubjectName{"coordinator", "Hansa Operators", "FR"}));
  EXPECT_EQ(cert->Issuer(), ca.certificate().Subject());
  EXPECT_FALSE(cert->IsCa());
  EXPECT_THAT(cert->SubjectAltNames(),
              ElementsAre("DNS:localhost", "DNS:fl.example.org", "IP:127.0.0.1", "IP:::1"));
  EXPECT_EQ(cert->NotAfter(), absl::FromUnixSeconds(absl::ToUnixSeconds(request.not_after)));
  EXPECT_EQ(cert->SerialHex().size(), 32u);
  EXPECT_NE(cert->SerialHex(), Issue(ca, request).SerialHex());
}

TEST(AuthorityTest, UnicodeOrganisationSurvives) {
  CertificateAuthority ca = MakeCa();
  Certificate cert = Issue(ca, SiteRequest());
  EXPECT_EQ(Certificate::FromPem(cert.ToPem())->Subject().organization, "Charité Berlin");
}

TEST(AuthorityTest, BadCountryIsRejected) {
  CertificateAuthority ca = MakeCa();
  auto key = PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  for (const char* country : {"de", "DEU", "", "D1", "Dé"}) {
    CertificateRequest request = SiteRequest();
    request.subject.country = country;
    auto cert = ca.Issue(request, key->GetPublicKey());
    EXPECT_EQ(cert.status().code(), absl::StatusCode::kInvalidArgument) << country;
    EXPECT_THAT(std::string(cert.status().message()), HasSubstr("ISO 3166-1 alpha-2")) << country;
  }
  CaOptions options;
  options.federation = "demo";
  options.country = "Germany";
  EXPECT_EQ(CertificateAuthority::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AuthorityTest, RequestsOutsideTheRulesAreRejected) {
  CertificateAuthority ca = MakeCa();
  PublicKey pub = PrivateKey::Generate()->GetPublicKey();
  CertificateRequest no_usage = SiteRequest();
  no_usage.client_auth = false;
  EXPECT_EQ(ca.Issue(no_usage, pub).status().code(), absl::StatusCode::kInvalidArgument);
  CertificateRequest outlives = SiteRequest();
  outlives.not_after = ca.certificate().NotAfter() + absl::Hours(24);
  EXPECT_THAT(std::string(ca.Issue(outlives, pub).status().message()),
              HasSubstr("after the federation CA expires"));
  CertificateRequest bad_dns = SiteRequest();
  bad_dns.dns_names = {"bad,DNS:evil.example"};
  EXPECT_THAT(std::string(ca.Issue(bad_dns, pub).status().message()),
              HasSubstr("not a valid host name"));
  CertificateRequest bad_ip = SiteRequest();
  bad_ip.ip_addresses = {"127.0.0.256"};
  EXPECT_EQ(ca.Issue(bad_ip, pub).status().code(), absl::StatusCode::kInvalidArgument);
  CertificateRequest no_cn = SiteRequest();
  no_cn.subject.common_name = "";
  EXPECT_EQ(ca.Issue(no_cn, pub).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AuthorityTest, FingerprintIsSha256OfDerAndStable) {
  CertificateAuthority ca = MakeCa();
  Certificate cert = Issue(ca, SiteRequest());
  std::string fp = cert.Sha256Fingerprint();
  EXPECT_EQ(fp.size(), 64u);
  EXPECT_EQ(fp, ToHex(Sha256(cert.ToDer())));
  EXPECT_EQ(Certificate::FromPem(cert.ToPem())->Sha256Fingerprint(), fp);
}

TEST(AuthorityTest, FingerprintMatchesOpensslCli) {
  if (std::system("openssl version > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "no openssl binary";
  }
  CertificateAuthority ca = MakeCa();
  Certificate cert = Issue(ca, SiteRequest());
  std::string path = ::testing::TempDir() + "/pki_fingerprint_cert.pem";
  ASSERT_TRUE(WriteFileAtomically(path, cert.ToPem()).ok());
  std::string cmd = "openssl x509 -noout -fingerprint -sha256 -in " + path;
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[512] = {0};
  std::string output;
  while (fgets(buf, sizeof(buf), pipe) != nullptr) output += buf;
  ASSERT_EQ(pclose(pipe), 0) << output;
  // "sha256 Fingerprint=AB:CD:..." (the prefix differs between OpenSSL versions).
  std::string hex = output.substr(output.find('=') + 1);
  hex = absl::StrReplaceAll(hex, {{":", ""}, {"\n", ""}});
  for (char& c : hex) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_EQ(hex, cert.Sha256Fingerprint());
}

TEST(AuthorityTest, KeyAndCertificateMustMatch) {
  CertificateAuthority ca = MakeCa();
  auto key = PrivateKey::Generate();
  auto other = PrivateKey::Generate();
  ASSERT_TRUE(key.ok() && other.ok());
  auto cert = ca.Issue(SiteRequest(), key->GetPublicKey());
  ASSERT_TRUE(cert.ok());
  EXPECT_TRUE(cert->CheckPrivateKeyMatches(*key).ok());
  Status st = cert->CheckPrivateKeyMatches(*other);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("does not belong to the certificate of 'berlin'"));
  // The certificate's public key verifies the key's signatures (audit records use this).
  auto sig = key->Sign("record");
  ASSERT_TRUE(sig.ok());
  auto pub = cert->GetPublicKey();
  ASSERT_TRUE(pub.ok());
  EXPECT_TRUE(pub->Verify("record", *sig).ok());
  EXPECT_EQ(cert->PublicKeyPem(), key->GetPublicKey().ToPem());
}

TEST(AuthorityTest, LoadedCaIssuesVerifyingCertificates) {
  CertificateAuthority ca = MakeCa();
  std::string dir = ::testing::TempDir();
  ASSERT_TRUE(WriteFileAtomically(dir + "/pki_ca.pem", ca.certificate().ToPem()).ok());
  ASSERT_TRUE(WritePrivateKeyFile(dir + "/pki_ca-key.pem", ca.private_key()).ok());
  auto loaded = CertificateAuthority::Load(dir + "/pki_ca.pem", dir + "/pki_ca-key.pem");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(VerifyCertificate(Issue(*loaded, SiteRequest()), ca.certificate(), absl::Now()).ok());
}

TEST(CertificateTest, GarbageIsNotACertificate) {
  auto cert = Certificate::FromPem("hello");
  EXPECT_EQ(cert.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cert.status().message()), HasSubstr("no PEM certificate"));
  auto missing = Certificate::FromFile("/nonexistent/cert.pem");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

// Found by pki_fuzz: one changed byte left the certificate loadable with a public key that
// does not decode, and PublicKeyPem() then aborted the process.
TEST(CertificateTest, CertificateWhoseKeyDoesNotDecodeIsRefused) {
  constexpr char kDamaged[] = R"(-----BEGIN CERTIFICATE-----
MIICBjCCAaugAwIBAgIQF+YdAO6LMgq4SgK9r5PpxjAKBggqhkjOPQQDAjAyMQsw
CQYDVQQGEwJGUjEMMAoGA1UECgwDSHViMRUwEwYDVQQDDAxGdXp6IFNlZWQgQ0Ew
HhcNMjYxMjA1MDcwNjE5WhcNMjcxMjA1MDgwNjE5WjApMQswCQYDVQQGEwJGUjEM
MAoGA0UECgwDSHViMQwwCgYDVQQDDANodWIwWTATBgcqhkjOPQIBBggqhkjOPQMB
BwNCAAToLwfT4umBP1j7u3wP1z+FuSy6Flfzqeouwgga0iX/0bM4wAQ2RLsMOG4+
g7aCVIjdUF1Q7NofdLiUgaV82H+mo4GrMIGoMAwGA1UdEwEB/wQCMAAwDgYDVR0P
AQH/BAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMBMDMGA1UdEQQsMCqCCWxvY2Fs
aG9zdIIRY29vcmQuZXhhbXBsZS5vcmeHBH8AAAGHBAoAAAEwHQYDVR0OBBYEFKar
HwkvQ+Mg74s12hVUYIxrN8xFMB8GA1UdIwQYMBaAFLtK2rjLH3m3UBhLwwykxt3o
X0YXMAoGCCqGSM49BAMCA0kAMEYCIQCo6nbEeAwoEF+JbFr9FmSmTbBmQ+xgF7RU
bIRLqwoctwIhAMTq4XywTeWZFaZqJrRWFLnyyDNOkrW+RNmorcrr5mWU
-----END CERTIFICATE-----
)";
  auto cert = Certificate::FromPem(kDamaged);
  EXPECT_EQ(cert.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cert.status().message()), HasSubstr("public key cannot be read"));
}

// Found by pki_fuzz: a notAfter that is no time at all loaded, and NotAfter() then aborted.
TEST(CertificateTest, CertificateWhoseValidityDoesNotDecodeIsRefused) {
  constexpr char kDamaged[] = R"(-----BEGIN CERTIFICATE-----
MIIBszCCAWWgAwIBAgIQL2B8a5MnIEYKO0bZJbooOTAFBgMrZXAwOjELMAkGA1UE
BhMCREUxGTAXBgNVBAoMEFRlc3QgQ29vcmRpbmF0b3IxEDAOBgNVBAMMB3Rlc3Qg
Q0EwHhcNMjYxMjA1MDY1NTI5WhcNMjcxM1MAjDc1NTI5WjAyMQswCQYDVQQGEwJE
RTETMBEGA1UECgwKU2l0ZSBhbHBoYTEOMAwGA1UEAwwFYWxwaGEwKjAFBgMrZXAD
IQCYLgZpfxwRozSqkVzXDH7sijTqGRHX/YZGTQTj3D3SMKOBiDCBhTAMBgNVHRMB
Af8EAjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggRBgEFBQcDAjAQBgNV
HREECTAHggVhbHBoYTAdBgNVHQ4EFgQUPTG3rNKx5bAsuaVTHN29GvPmtFUwHwYD
VR0jBBgwFoAUVKL4VUv/BJognRABtFgnAvXdIXgwBQYDK2VwA0EAlM81GqhfL5iR
2oWq33JBO2iOqeY+L29Vcc9C/whZskf01RqQTu8/bJYPAti84k/buKuoWg+Bl4dZ
mfLW1mfACw==
-----END CERTIFICATE-----
)";
  auto cert = Certificate::FromPem(kDamaged);
  EXPECT_EQ(cert.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cert.status().message()), HasSubstr("validity times cannot be read"));
}

}  // namespace
}  // namespace hansa

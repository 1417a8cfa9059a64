#include "common/pki/signing_request.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <string>

#include "common/fileio/fileio.h"
#include "common/pki/authority.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/key_types.h"

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/pki_csr_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

// Runs a shell command; returns its exit code and fills `output` with stdout+stderr.
int Shell(const std::string& command, std::string* output) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[512];
  output->clear();
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) output->append(buf, n);
  int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

SubjectName Alpha() { return {"alpha", "Hôpital Alpha", "FR"}; }

// The request's DER with the first `from` replaced by `to` (same length), back in PEM.
std::string Tamper(const std::string& pem, const std::string& from, const std::string& to) {
  const std::string begin = "-----BEGIN CERTIFICATE REQUEST-----\n";
  const std::string end = "-----END CERTIFICATE REQUEST-----\n";
  std::string b64 = pem.substr(begin.size(), pem.size() - begin.size() - end.size());
  b64.erase(std::remove(b64.begin(), b64.end(), '\n'), b64.end());
  std::string der(b64.size(), '\0');
  int len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(der.data()),
                            reinterpret_cast<const unsigned char*>(b64.data()),
                            static_cast<int>(b64.size()));
  EXPECT_GT(len, 0);
  while (!b64.empty() && b64.back() == '=') {  // EVP_DecodeBlock keeps padding bytes
    b64.pop_back();
    --len;
  }
  der.resize(static_cast<size_t>(len));
  size_t at = der.find(from);
  EXPECT_NE(at, std::string::npos);
  der.replace(at, from.size(), to);
  std::string out(4 * ((der.size() + 2) / 3) + 1, '\0');
  int out_len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(der.data()),
                                static_cast<int>(der.size()));
  out.resize(static_cast<size_t>(out_len));
  std::string wrapped;
  for (size_t i = 0; i < out.size(); i += 64) wrapped += out.substr(i, 64) + "\n";
  return begin + wrapped + end;
}

class SigningRequestTest : public ::testing::TestWithParam<KeyType> {};

TEST_P(SigningRequestTest, OpensslVerifiesTheRequestAndReadsItsSubjectAndNames) {
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_TRUE(key.ok()) << key.status();
  auto csr = SigningRequest::Create(*key, {"coordinator", "Ops", "DE"},
                                    {"fl.example.org", "127.0.0.1", "::1"});
  ASSERT_TRUE(csr.ok()) << csr.status();
  const std::string path = MakeTempDir() + "/request.csr";
  ASSERT_TRUE(WriteFileAtomically(path, csr->ToPem()).ok());
  std::string out;
  EXPECT_EQ(Shell("openssl req -verify -noout -subject -text -in " + path, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("verify OK"));
  EXPECT_THAT(out, HasSubstr("CN = coordinator"));
  EXPECT_THAT(out, HasSubstr("DNS:fl.example.org"));
  EXPECT_THAT(out, HasSubstr("IP Address:127.0.0.1"));
}

TEST_P(SigningRequestTest, PemRoundTripKeepsSubjectKeyAndRequestedNames) {
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_TRUE(key.ok());
  auto csr = SigningRequest::Create(*key, Alpha(), {"coordinator.example.org", "10.0.0.5"});
  ASSERT_TRUE(csr.ok()) << csr.status();
  auto back = SigningRequest::FromPem(csr->ToPem());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->Subject(), Alpha());
  EXPECT_EQ(back->public_key().ToPem(), key->GetPublicKey().ToPem());
  EXPECT_EQ(back->public_key().type(), GetParam());
  EXPECT_THAT(back->dns_names(), ElementsAre("coordinator.example.org"));
  EXPECT_THAT(back->ip_addresses(), ElementsAre("10.0.0.5"));
  EXPECT_EQ(back->Sha256Fingerprint(), csr->Sha256Fingerprint());
  EXPECT_EQ(back->ToPem(), csr->ToPem());
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, SigningRequestTest, testing::AllKeyTypes(),
                         testing::KeyTypeTestName);

TEST(SigningRequestTest, ASiteRequestAsksForNoNames) {
  auto key = PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  auto csr = SigningRequest::Create(*key, Alpha());
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_THAT(csr->dns_names(), IsEmpty());
  EXPECT_THAT(csr->ip_addresses(), IsEmpty());
}

TEST(SigningRequestTest, AChangedSubjectNoLongerVerifies) {
  auto key = PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  auto csr = SigningRequest::Create(*key, {"alpha", "Alpha", "FR"});
  ASSERT_TRUE(csr.ok());
  // The same request, but for "bravo"'s name: what a man in the middle would send.
  const std::string tampered = Tamper(csr->ToPem(), "alpha", "bravo");
  auto back = SigningRequest::FromPem(tampered);
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), absl::StatusCode::kPermissionDenied) << back.status();
  EXPECT_THAT(back.status().message(), HasSubstr("signature does not verify"));
  // OpenSSL agrees (OpenSSL 3.0's req exits 0 either way: its message says).
  const std::string path = MakeTempDir() + "/tampered.csr";
  ASSERT_TRUE(WriteFileAtomically(path, tampered).ok());
  std::string out;
  Shell("openssl req -verify -noout -in " + path, &out);
  EXPECT_THAT(out, HasSubstr("verify failure"));
  EXPECT_THAT(out, Not(HasSubstr("verify OK")));
}

TEST(SigningRequestTest, GarbageAndOtherPemObjectsAreRefused) {
  for (const std::string& pem :
       {std::string(), std::string("hello"),
        std::string("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE "
                    "REQUEST-----\n")}) {
    auto csr = SigningRequest::FromPem(pem);
    ASSERT_FALSE(csr.ok()) << pem;
    EXPECT_EQ(csr.status().code(), absl::StatusCode::kInvalidArgument) << csr.status();
    EXPECT_THAT(csr.status().message(), HasSubstr("no PEM certificate signing request"));
  }
  auto key = PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  auto key_pem = key->ToPem();
  ASSERT_TRUE(key_pem.ok());
  auto csr = SigningRequest::FromPem(*key_pem);
  EXPECT_EQ(csr.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SigningRequestTest, FileErrorsNameTheFile) {
  const std::string path = MakeTempDir() + "/absent.csr";
  auto csr = SigningRequest::FromFile(path);
  ASSERT_FALSE(csr.ok());
  EXPECT_EQ(csr.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(csr.status().message(), HasSubstr(path));
}

TEST(SigningRequestTest, ReadsARequestMadeByOpenssl) {
  const std::string dir = MakeTempDir();
  std::string out;
  ASSERT_EQ(Shell("openssl req -new -newkey ed25519 -nodes -keyout " + dir +
                      "/k.pem -subj '/C=IT/O=Ospedale/CN=milan' -addext "
                      "'subjectAltName=DNS:milan.example.org' -out " +
                      dir + "/r.csr",
                  &out),
            0)
      << out;
  auto csr = SigningRequest::FromFile(dir + "/r.csr");
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_EQ(csr->Subject(), (SubjectName{"milan", "Ospedale", "IT"}));
  EXPECT_THAT(csr->dns_names(), ElementsAre("milan.example.org"));
}

TEST(SigningRequestTest, CreateRefusesBadSubjectsAndHosts) {
  auto key = PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  auto bad_country = SigningRequest::Create(*key, {"alpha", "", "France"});
  EXPECT_EQ(bad_country.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_country.status().message(), HasSubstr("ISO 3166"));
  auto bad_host = SigningRequest::Create(*key, {"coordinator", "", "DE"}, {"bad host"});
  EXPECT_EQ(bad_host.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_host.status().message(), HasSubstr("not a valid host name"));
}

TEST(SigningRequestTest, TheKeyFingerprintIsTheIssuedCertificatesKeyFingerprint) {
  auto key = PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  auto csr = SigningRequest::Create(*key, Alpha());
  ASSERT_TRUE(csr.ok());
  CaOptions options;
  options.federation = "test";
  options.country = "DE";
  auto ca = CertificateAuthority::Create(options);
  ASSERT_TRUE(ca.ok());
  CertificateRequest cr;
  cr.subject = csr->Subject();
  cr.client_auth = true;
  auto cert = ca->Issue(cr, csr->public_key());
  ASSERT_TRUE(cert.ok()) << cert.status();
  auto cert_key = cert->GetPublicKey();
  ASSERT_TRUE(cert_key.ok());
  const std::string fingerprint = PublicKeyFingerprint(csr->public_key());
  EXPECT_EQ(fingerprint.size(), 64u);
  EXPECT_EQ(PublicKeyFingerprint(*cert_key), fingerprint);
  EXPECT_EQ(GroupFingerprint("0123456789abcdef"), "0123 4567 89ab cdef");
}

}  // namespace
}  // namespace hansa

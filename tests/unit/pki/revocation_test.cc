#include "common/pki/revocation.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "common/fileio/fileio.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/key_types.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/pki_crl_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

CertificateAuthority MakeCa(KeyType type = KeyType::kEd25519) {
  CaOptions options;
  options.federation = "demo";
  options.organization = "Hansa Operators";
  options.country = "DE";
  options.key_type = type;
  auto ca = CertificateAuthority::Create(options);
  EXPECT_TRUE(ca.ok()) << ca.status();
  return std::move(ca).value();
}

Certificate IssueSite(const CertificateAuthority& ca, const std::string& name) {
  CertificateRequest request;
  request.subject = {name, "Hospital", "DE"};
  request.client_auth = true;
  auto key = PrivateKey::Generate(KeyType::kEd25519);
  EXPECT_TRUE(key.ok());
  auto cert = ca.Issue(request, key->GetPublicKey());
  EXPECT_TRUE(cert.ok()) << cert.status();
  return std::move(cert).value();
}

const absl::Time kThisUpdate = absl::FromUnixSeconds(1790000000);
const absl::Time kNextUpdate = kThisUpdate + absl::Hours(24 * 30);

RevocationList IssueList(const CertificateAuthority& ca, std::vector<RevokedEntry> entries,
                         uint64_t number = 7) {
  auto list = RevocationList::Issue(ca, std::move(entries), number, kThisUpdate, kNextUpdate);
  EXPECT_TRUE(list.ok()) << list.status();
  return std::move(list).value();
}

// The list's DER with one byte changed at the first occurrence of `needle`.
std::string TamperedPem(const std::string& pem, const std::string& needle) {
  BIO* in = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long len = 0;
  EXPECT_EQ(PEM_read_bio(in, &name, &header, &data, &len), 1);
  BIO_free(in);
  std::string der(reinterpret_cast<char*>(data), static_cast<size_t>(len));
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(data);
  size_t at = der.find(needle);
  EXPECT_NE(at, std::string::npos);
  // The needle's last byte: flipping its first could leave a serial that is no longer minimal DER
  // (a leading 0x00 before a byte below 0x80), which the parser refuses as malformed instead.
  size_t last = at + needle.size() - 1;
  der[last] = static_cast<char>(der[last] ^ 0x01);
  BIO* out = BIO_new(BIO_s_mem());
  EXPECT_GT(PEM_write_bio(out, "X509 CRL", "", reinterpret_cast<unsigned char*>(der.data()),
                          static_cast<long>(der.size())),
            0);
  char* bytes = nullptr;
  long size = BIO_get_mem_data(out, &bytes);
  std::string result(bytes, static_cast<size_t>(size));
  BIO_free(out);
  return result;
}

std::string HexToBytes(const std::string& hex) {
  std::string padded = hex.size() % 2 == 1 ? "0" + hex : hex;
  std::string out;
  for (size_t i = 0; i < padded.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(padded.substr(i, 2), nullptr, 16)));
  }
  return out;
}

class RevocationListTest : public ::testing::TestWithParam<KeyType> {};

TEST_P(RevocationListTest, RoundTripKeepsEntriesNumberAndTimes) {
  CertificateAuthority ca = MakeCa(GetParam());
  Certificate berlin = IssueSite(ca, "berlin");
  const absl::Time revoked_at = kThisUpdate - absl::Hours(2);
  RevocationList list = IssueList(ca, {{berlin.SerialHex(), revoked_at, "keyCompromise"}}, 42);

  auto parsed = RevocationList::FromPem(list.ToPem(), ca.certificate());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->number(), 42u);
  EXPECT_EQ(parsed->this_update(), kThisUpdate);
  EXPECT_EQ(parsed->next_update(), kNextUpdate);
  ASSERT_EQ(parsed->entries().size(), 1u);
  EXPECT_EQ(parsed->entries()[0].serial_hex, berlin.SerialHex());
  EXPECT_EQ(parsed->entries()[0].revoked_at, revoked_at);
  EXPECT_EQ(parsed->entries()[0].reason, "keyCompromise");
  EXPECT_EQ(parsed->ToPem(), list.ToPem());
  EXPECT_THAT(list.ToPem(), HasSubstr("-----BEGIN X509 CRL-----"));
}

// The openssl command line accepts what Issue writes, with its issuer, number and reasons.
TEST_P(RevocationListTest, OpensslCommandLineVerifiesTheList) {
  CertificateAuthority ca = MakeCa(GetParam());
  Certificate berlin = IssueSite(ca, "berlin");
  RevocationList list = IssueList(ca, {{berlin.SerialHex(), kThisUpdate, "superseded"}}, 3);
  std::string dir = MakeTempDir();
  ASSERT_TRUE(WriteFileAtomically(dir + "/ca.pem", ca.certificate().ToPem()).ok());
  ASSERT_TRUE(WriteRevocationListFile(dir + "/crl.pem", list).ok());
  std::string command = "openssl crl -in " + dir + "/crl.pem -CAfile " + dir +
                        "/ca.pem -verify -noout -text > " + dir + "/out.txt 2>&1";
  int rc = std::system(command.c_str());
  auto out = ReadFile(dir + "/out.txt");
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << *out;
  EXPECT_THAT(*out, HasSubstr("verify OK"));
  EXPECT_THAT(*out, HasSubstr("Issuer: C = DE, O = Hansa Operators, CN = demo CA"));
  EXPECT_THAT(*out, HasSubstr("X509v3 CRL Number"));
  EXPECT_THAT(*out, HasSubstr("X509v3 Authority Key Identifier"));
  EXPECT_THAT(*out, HasSubstr("Superseded"));

  // And refuses it against another CA.
  CertificateAuthority other = MakeCa(GetParam());
  ASSERT_TRUE(WriteFileAtomically(dir + "/other.pem", other.certificate().ToPem()).ok());
  command = "openssl crl -in " + dir + "/crl.pem -CAfile " + dir + "/other.pem -verify -noout > " +
            dir + "/out2.txt 2>&1";
  std::system(command.c_str());  // OpenSSL 3.0's `crl` exits 0 even when verification fails
  auto refused = ReadFile(dir + "/out2.txt");
  ASSERT_TRUE(refused.ok());
  EXPECT_THAT(*refused, HasSubstr("verify failure"));
  EXPECT_THAT(*refused, Not(HasSubstr("verify OK")));
}

INSTANTIATE_TEST_SUITE_P(Types, RevocationListTest, testing::AllKeyTypes(),
                         testing::KeyTypeTestName);

TEST(RevocationListTest, FindWorksForSeveralEntries) {
  CertificateAuthority ca = MakeCa();
  Certificate a = IssueSite(ca, "a");
  Certificate b = IssueSite(ca, "b");
  Certificate c = IssueSite(ca, "c");
  Certificate d = IssueSite(ca, "d");
  RevocationList list = IssueList(ca, {{a.SerialHex(), kThisUpdate, "unspecified"},
                                       {b.SerialHex(), kThisUpdate, "affiliationChanged"},
                                       {c.SerialHex(), kThisUpdate, "cessationOfOperation"}});
  auto parsed = RevocationList::FromPem(list.ToPem(), ca.certificate());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->entries().size(), 3u);
  ASSERT_NE(parsed->Find(a.SerialHex()), nullptr);
  EXPECT_EQ(parsed->Find(a.SerialHex())->reason, "unspecified");
  ASSERT_NE(parsed->Find(b.SerialHex()), nullptr);
  EXPECT_EQ(parsed->Find(b.SerialHex())->reason, "affiliationChanged");
  ASSERT_NE(parsed->Find(c.SerialHex()), nullptr);
  EXPECT_EQ(parsed->Find(c.SerialHex())->reason, "cessationOfOperation");
  EXPECT_EQ(parsed->Find(d.SerialHex()), nullptr);
  // Case and leading zeros do not matter.
  std::string upper = c.SerialHex();
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  EXPECT_NE(parsed->Find("00" + upper), nullptr);
}

TEST(RevocationListTest, EmptyListRevokesNothing) {
  CertificateAuthority ca = MakeCa();
  RevocationList list = IssueList(ca, {}, 1);
  auto parsed = RevocationList::FromPem(list.ToPem(), ca.certificate());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->entries().empty());
  EXPECT_EQ(parsed->Find(IssueSite(ca, "x").SerialHex()), nullptr);
}

TEST(RevocationListTest, ListSignedByAnotherCaIsRefused) {
  CertificateAuthority ours = MakeCa();
  CertificateAuthority theirs = MakeCa();  // same name, different key
  RevocationList list = IssueList(theirs, {{"0abc", kThisUpdate, "unspecified"}});
  auto parsed = RevocationList::FromPem(list.ToPem(), ours.certificate());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(parsed.status().message()),
              HasSubstr("the revocation list was not signed by the federation CA 'demo CA'"));

  CaOptions options;
  options.federation = "elsewhere";
  options.country = "FR";
  auto named = CertificateAuthority::Create(options);
  ASSERT_TRUE(named.ok());
  RevocationList foreign = IssueList(*named, {});
  parsed = RevocationList::FromPem(foreign.ToPem(), ours.certificate());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(parsed.status().message()),
              HasSubstr("its issuer is 'elsewhere CA', not 'demo CA'"));
}

TEST(RevocationListTest, TamperedListIsRefused) {
  CertificateAuthority ca = MakeCa();
  Certificate berlin = IssueSite(ca, "berlin");
  RevocationList list = IssueList(ca, {{berlin.SerialHex(), kThisUpdate, "keyCompromise"}});
  // Changing the revoked serial (the site un-revoking itself) breaks the signature.
  std::string tampered = TamperedPem(list.ToPem(), HexToBytes(berlin.SerialHex()));
  auto parsed = RevocationList::FromPem(tampered, ca.certificate());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("changed after signing"));
}

TEST(RevocationListTest, GarbageIsInvalidArgument) {
  CertificateAuthority ca = MakeCa();
  for (std::string garbage :
       {std::string(), std::string("hello"), ca.certificate().ToPem(),
        std::string("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")}) {
    auto parsed = RevocationList::FromPem(garbage, ca.certificate());
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << garbage;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("no PEM revocation list"));
  }
}

TEST(RevocationListTest, FileErrorsNameTheFileAndWrittenFileIsPublic) {
  CertificateAuthority ca = MakeCa();
  std::string dir = MakeTempDir();
  auto missing = RevocationList::FromFile(dir + "/absent.pem", ca.certificate());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(dir + "/absent.pem"));

  ASSERT_TRUE(WriteFileAtomically(dir + "/bad.pem", "not a list").ok());
  auto bad = RevocationList::FromFile(dir + "/bad.pem", ca.certificate());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr(dir + "/bad.pem"));

  RevocationList list = IssueList(ca, {{"01", kThisUpdate, "superseded"}});
  ASSERT_TRUE(WriteRevocationListFile(dir + "/crl.pem", list).ok());
  struct stat st {};
  ASSERT_EQ(stat((dir + "/crl.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  auto read = RevocationList::FromFile(dir + "/crl.pem", ca.certificate());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_NE(read->Find("1"), nullptr);
}

TEST(RevocationListTest, IssueRefusesBadEntries) {
  CertificateAuthority ca = MakeCa();
  auto bad_reason =
      RevocationList::Issue(ca, {{"0a", kThisUpdate, "boredom"}}, 1, kThisUpdate, kNextUpdate);
  EXPECT_EQ(bad_reason.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_reason.status().message()),
              HasSubstr("revocation reason 'boredom' is not one of unspecified, keyCompromise"));
  auto bad_serial =
      RevocationList::Issue(ca, {{"xyz", kThisUpdate, "unspecified"}}, 1, kThisUpdate, kNextUpdate);
  EXPECT_EQ(bad_serial.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_serial.status().message()), HasSubstr("serial 'xyz'"));
  auto twice = RevocationList::Issue(
      ca, {{"0a", kThisUpdate, "unspecified"}, {"A", kThisUpdate, "superseded"}}, 1, kThisUpdate,
      kNextUpdate);
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(twice.status().message()), HasSubstr("listed twice"));
  auto backwards = RevocationList::Issue(ca, {}, 1, kNextUpdate, kThisUpdate);
  EXPECT_EQ(backwards.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(backwards.status().message()), HasSubstr("next update"));
}

TEST(ExpiryWarningTest, WarnsWithinThirtyDaysOnly) {
  CertificateAuthority ca = MakeCa();
  CertificateRequest request;
  request.subject = {"berlin", "Hospital", "DE"};
  request.client_auth = true;
  const absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  request.not_after = now + absl::Hours(24 * 12 + 3);
  auto key = PrivateKey::Generate(KeyType::kEd25519);
  ASSERT_TRUE(key.ok());
  auto cert = ca.Issue(request, key->GetPublicKey());
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ(ExpiryWarning(*cert, now), "certificate of 'berlin' expires on " +
                                           FormatCertificateTime(cert->NotAfter()) +
                                           " (in 12 days): renew it with `hansa ca renew`");
  EXPECT_THAT(ExpiryWarning(*cert, now, absl::Hours(24 * 30), "the CA certificate"),
              HasSubstr("the CA certificate expires on "));
  EXPECT_EQ(ExpiryWarning(*cert, now - absl::Hours(24 * 20)), "");  // 32 days before
  EXPECT_EQ(ExpiryWarning(*cert, now + absl::Hours(24 * 13)), "");  // already expired
  EXPECT_EQ(ExpiryWarning(ca.certificate(), now), "");              // ten years left
}

}  // namespace
}  // namespace hansa

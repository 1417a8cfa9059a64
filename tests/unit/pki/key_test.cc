#include "common/pki/key.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <string>

#include "common/fileio/fileio.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/key_types.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/pki_key_XXXXXX";
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr);
  return tmpl;
}

class KeyTest : public ::testing::TestWithParam<KeyType> {};

TEST_P(KeyTest, SignatureVerifiesAndDetectsChanges) {
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->type(), GetParam());
  auto sig = key->Sign("round 7 aggregate released");
  ASSERT_TRUE(sig.ok()) << sig.status();
  PublicKey pub = key->GetPublicKey();
  EXPECT_TRUE(pub.Verify("round 7 aggregate released", *sig).ok());
  Status bad = pub.Verify("round 8 aggregate released", *sig);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("does not verify"));
}

TEST_P(KeyTest, PemRoundTripKeepsTheKey) {
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_TRUE(key.ok());
  auto pem = key->ToPem();
  ASSERT_TRUE(pem.ok());
  EXPECT_THAT(*pem, HasSubstr("-----BEGIN PRIVATE KEY-----"));
  auto back = PrivateKey::FromPem(*pem);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->type(), GetParam());
  EXPECT_EQ(back->GetPublicKey().ToPem(), key->GetPublicKey().ToPem());
  auto pub = PublicKey::FromPem(key->GetPublicKey().ToPem());
  ASSERT_TRUE(pub.ok());
  auto sig = back->Sign("x");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(pub->Verify("x", *sig).ok());
}

TEST_P(KeyTest, KeyFileIsWrittenWithMode0600) {
  std::string dir = MakeTempDir();
  auto key = PrivateKey::Generate(GetParam());
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(WritePrivateKeyFile(dir + "/key.pem", *key).ok());
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto back = ReadPrivateKeyFile(dir + "/key.pem");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->GetPublicKey().ToPem(), key->GetPublicKey().ToPem());
}

INSTANTIATE_TEST_SUITE_P(Types, KeyTest, testing::AllKeyTypes(), testing::KeyTypeTestName);

// Found by pki_fuzz: a P-256 PKCS#8 key whose embedded public point had one bit flipped loaded
// fine and signed what its own public half (and so its certificate) never verifies.
TEST(KeyPemTest, KeyWhosePublicHalfIsNotItsOwnIsRefused) {
  constexpr char kDamaged[] = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgyboXAtPdKdX9e6MX
MHPb7Lt5bNz/igudtZ7khHrMLzmhRANCAARSBhw6+L29M5s41rz9DzKRyHSi01iU
9RMGTggt8CZRZNb6fki5XIAq/+tGNc1npCmNTdIQZT7wAc9k0rN2Ue0b
-----END PRIVATE KEY-----
)";
  auto key = PrivateKey::FromPem(kDamaged);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(key.status().message()), HasSubstr("public half does not belong"));
}

TEST(KeyFileTest, MissingFileIsNotFoundAndNamesThePath) {
  auto key = ReadPrivateKeyFile("/nonexistent/key.pem");
  EXPECT_EQ(key.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(key.status().message()), HasSubstr("/nonexistent/key.pem"));
}

TEST(KeyFileTest, CertificateInsteadOfKeyIsRejected) {
  std::string dir = MakeTempDir();
  ASSERT_TRUE(WriteFileAtomically(dir + "/key.pem",
                                  "-----BEGIN CERTIFICATE-----\nAAAA\n"
                                  "-----END CERTIFICATE-----\n")
                  .ok());
  auto key = ReadPrivateKeyFile(dir + "/key.pem");
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(key.status().message()), HasSubstr("not an unencrypted PEM private key"));
}

TEST(KeyTypeTest, NamesRoundTrip) {
  EXPECT_EQ(*ParseKeyType(KeyTypeName(KeyType::kEd25519)), KeyType::kEd25519);
  EXPECT_EQ(*ParseKeyType(KeyTypeName(KeyType::kEcdsaP256)), KeyType::kEcdsaP256);
  EXPECT_EQ(ParseKeyType("rsa").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hansa

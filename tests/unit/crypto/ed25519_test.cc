#include "common/crypto/ed25519.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/crypto/test_util.h"

namespace hansa {
namespace {

using testing_util::ArrayFromHex;
using testing_util::HexOf;
using testing_util::SecretFromHex;
using testing_util::Unhex;

struct Rfc8032Case {
  const char* secret;
  const char* pub;
  const char* message;
  const char* signature;
};

// RFC 8032 section 7.1, tests 1-3.
const Rfc8032Case kCases[] = {
    {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701c"
     "f9b46bd25bf5f0595bbe24655141438e7a100b"},
    {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0"
     "f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    {"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f76098"
     "4dc6594a7c15e9716ed28dc027beceea1ec40a"},
};

TEST(Ed25519Test, Rfc8032Tests1To3) {
  for (const auto& c : kCases) {
    auto key = Ed25519PrivateKey::FromSeed(SecretFromHex(c.secret));
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_EQ(HexOf(key->public_key()), c.pub);
    auto sig = key->Sign(Unhex(c.message));
    ASSERT_TRUE(sig.ok());
    EXPECT_EQ(HexOf(*sig), c.signature);
    EXPECT_TRUE(Ed25519Verify(ArrayFromHex<Ed25519PublicKey>(c.pub), Unhex(c.message),
                              ArrayFromHex<Ed25519Signature>(c.signature))
                    .ok());
  }
}

TEST(Ed25519Test, VerifyRejectsModifiedMessageOrSignature) {
  auto key = Ed25519PrivateKey::Generate();
  ASSERT_TRUE(key.ok());
  auto sig = key->Sign("survivors 1,2,3");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(Ed25519Verify(key->public_key(), "survivors 1,2,3", *sig).ok());
  auto st = Ed25519Verify(key->public_key(), "survivors 1,2", *sig);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("does not verify"));
  Ed25519Signature bad = *sig;
  bad[5] ^= 0x10;
  EXPECT_EQ(Ed25519Verify(key->public_key(), "survivors 1,2,3", bad).code(),
            absl::StatusCode::kPermissionDenied);
}

// A self-signed Ed25519 certificate made here with OpenSSL, standing in for a federation
// certificate: the key from its PEM must match the private key from its PEM.
TEST(Ed25519Test, LoadsPrivateKeyPemAndCertificatePublicKey) {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  ASSERT_NE(pkey, nullptr);
  X509* cert = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, pkey);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("site-a"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  ASSERT_GT(X509_sign(cert, pkey, nullptr), 0);
  BIO* kb = BIO_new(BIO_s_mem());
  BIO* cb = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(kb, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  PEM_write_bio_X509(cb, cert);
  char* p = nullptr;
  long key_len = BIO_get_mem_data(kb, &p);
  std::string key_pem(p, static_cast<size_t>(key_len));
  long cert_len = BIO_get_mem_data(cb, &p);
  std::string cert_pem(p, static_cast<size_t>(cert_len));
  BIO_free(kb);
  BIO_free(cb);
  X509_free(cert);
  EVP_PKEY_free(pkey);

  auto key = Ed25519PrivateKey::FromPem(key_pem);
  ASSERT_TRUE(key.ok()) << key.status();
  auto pub = Ed25519PublicKeyFromCertificatePem(cert_pem);
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_EQ(*pub, key->public_key());
  auto sig = key->Sign("hello");
  EXPECT_TRUE(Ed25519Verify(*pub, "hello", *sig).ok());

  EXPECT_EQ(Ed25519PrivateKey::FromPem("not a pem").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Ed25519PublicKeyFromCertificatePem(key_pem).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(Ed25519Test, RejectsNonEd25519PrivateKey) {
  EVP_PKEY* x = EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519");
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, x, nullptr, nullptr, 0, nullptr, nullptr);
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  std::string pem(p, n);
  BIO_free(b);
  EVP_PKEY_free(x);
  auto st = Ed25519PrivateKey::FromPem(pem).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("not an Ed25519"));
}

}  // namespace
}  // namespace hansa

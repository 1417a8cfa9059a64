#include "common/crypto/aes_gcm.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/crypto/test_util.h"

namespace hansa {
namespace {

using testing_util::ArrayFromHex;
using testing_util::Hex;
using testing_util::SecretFromHex;
using testing_util::Unhex;

// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16 (AES-256, AAD, 96-bit IV).
TEST(AesGcmTest, GcmSpecTestCase16) {
  SecretBytes key =
      SecretFromHex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  std::string pt = Unhex(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e24"
      "49a6b525b16aedf5aa0de657ba637b39");
  std::string aad = Unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  auto nonce = ArrayFromHex<AesGcmNonce>("cafebabefacedbaddecaf888");
  auto sealed = Aes256GcmSealWithNonce(key, nonce, pt, aad);
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(Hex(*sealed),
            "cafebabefacedbaddecaf888"
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b0"
            "8b1056828838c5f61e6393ba7a0abcc9f662"
            "76fc6ece0f4e1768cddf8853bb2d551b");
  auto opened = Aes256GcmOpen(key, *sealed, aad);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->view(), pt);
}

TEST(AesGcmTest, RandomNoncesDifferAndRoundTrip) {
  SecretBytes key(std::string(32, 'k'));
  auto a = Aes256GcmSeal(key, "share", "aad");
  auto b = Aes256GcmSeal(key, "share", "aad");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_EQ(a->size(), 12u + 5u + 16u);
  EXPECT_EQ(Aes256GcmOpen(key, *b, "aad")->view(), "share");
}

TEST(AesGcmTest, OpenFailsOnTamperingWrongAadOrWrongKey) {
  SecretBytes key(std::string(32, 'k'));
  auto sealed = Aes256GcmSeal(key, "payload", "session|round|1|2");
  ASSERT_TRUE(sealed.ok());
  std::string flipped = *sealed;
  flipped[14] ^= 1;
  for (const auto& st :
       {Aes256GcmOpen(key, flipped, "session|round|1|2").status(),
        Aes256GcmOpen(key, *sealed, "session|round|2|1").status(),
        Aes256GcmOpen(SecretBytes(std::string(32, 'q')), *sealed, "session|round|1|2").status()}) {
    EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("authentication failed"));
  }
  auto short_st = Aes256GcmOpen(key, "tiny", "").status();
  EXPECT_EQ(short_st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Aes256GcmSeal(SecretBytes(16), "x", "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hansa

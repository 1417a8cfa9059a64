#include "common/crypto/hkdf.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/crypto/test_util.h"

namespace hansa {
namespace {

using testing_util::HexOf;
using testing_util::Unhex;

std::string Range(int from, int to) {
  std::string s;
  for (int i = from; i < to; ++i) s.push_back(static_cast<char>(i));
  return s;
}

// RFC 5869 appendix A, test cases 1-3 (SHA-256).
TEST(HkdfTest, Rfc5869TestCase1) {
  auto okm = HkdfSha256(SecretBytes(std::string(22, '\x0b')), Range(0, 13), Range(0xf0, 0xfa), 42);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(HexOf(*okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(HkdfTest, Rfc5869TestCase2) {
  auto okm = HkdfSha256(SecretBytes(Range(0, 0x50)), Range(0x60, 0xb0), Range(0xb0, 0x100), 82);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(HexOf(*okm),
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb"
            "41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87");
}

TEST(HkdfTest, Rfc5869TestCase3EmptySaltAndInfo) {
  auto okm = HkdfSha256(SecretBytes(std::string(22, '\x0b')), "", "", 42);
  ASSERT_TRUE(okm.ok()) << okm.status();
  EXPECT_EQ(HexOf(*okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(HkdfTest, DistinctLabelsGiveDistinctKeys) {
  SecretBytes ikm(std::string(32, '\x42'));
  auto a = HkdfSha256(ikm, "salt", "label a", 32);
  auto b = HkdfSha256(ikm, "salt", "label b", 32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(a->Equals(*b));
}

TEST(HkdfTest, RejectsBadLengths) {
  auto st = HkdfSha256(SecretBytes(std::string(32, 'k')), "", "", 8161).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("1..8160"));
  EXPECT_EQ(HkdfSha256(SecretBytes(), "", "", 32).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hansa

#include "common/secagg/shamir.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/crypto/random.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

SecretBytes RandomSecret() {
  SecretBytes s(32);
  EXPECT_TRUE(RandBytes(s.data(), 32).ok());
  s[6] = 0xff;  // top byte of a 56-bit limb: exercises the limb boundary
  s[31] = 0xff;
  return s;
}

// Every t-subset of n = 6 shares (t = 4) reconstructs; every (t-1)-subset interpolated as if
// it were enough gives something else.
TEST(ShamirTest, EveryThresholdSubsetReconstructsAndSmallerOnesDoNot) {
  const int n = 6, t = 4;
  SecretBytes secret = RandomSecret();
  auto shares = ShamirSplit(secret, t, {1, 2, 3, 4, 5, 6});
  ASSERT_TRUE(shares.ok()) << shares.status();
  int full = 0, partial = 0;
  for (int mask = 0; mask < (1 << n); ++mask) {
    std::vector<ShamirShare> subset;
    for (int i = 0; i < n; ++i) {
      if (mask & (1 << i)) subset.push_back((*shares)[i]);
    }
    if (static_cast<int>(subset.size()) == t) {
      auto r = ShamirReconstruct(subset, t);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_TRUE(r->Equals(secret));
      ++full;
    } else if (static_cast<int>(subset.size()) == t - 1) {
      auto r = ShamirReconstruct(subset, t - 1);
      EXPECT_TRUE(!r.ok() || !r->Equals(secret));
      EXPECT_EQ(ShamirReconstruct(subset, t).status().code(),
                absl::StatusCode::kFailedPrecondition);
      ++partial;
    }
  }
  EXPECT_EQ(full, 15);
  EXPECT_EQ(partial, 20);
}

TEST(ShamirTest, ShareSerializationRoundTripsAndRejectsBadInput) {
  auto shares = ShamirSplit(RandomSecret(), 2, {7, 9, 11});
  ASSERT_TRUE(shares.ok());
  SecretBytes bytes = (*shares)[1].Serialize();
  EXPECT_EQ(bytes.size(), kShamirShareSize);
  auto parsed = ShamirShare::Parse(bytes);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->index, 9u);
  EXPECT_EQ(parsed->values, (*shares)[1].values);
  SecretBytes zero_index = bytes;
  for (int i = 0; i < 4; ++i) zero_index[i] = 0;
  EXPECT_EQ(ShamirShare::Parse(zero_index).status().code(), absl::StatusCode::kInvalidArgument);
  SecretBytes out_of_field = bytes;
  for (int i = 4; i < 12; ++i) out_of_field[i] = 0xff;
  EXPECT_EQ(ShamirShare::Parse(out_of_field).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShamirShare::Parse(SecretBytes(3)).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ShamirTest, RejectsDuplicateAndZeroIndicesAndBadThresholds) {
  SecretBytes secret = RandomSecret();
  auto dup = ShamirSplit(secret, 2, {1, 2, 2});
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(dup.status().message()), HasSubstr("duplicate Shamir share index 2"));
  auto zero = ShamirSplit(secret, 2, {0, 1, 2});
  EXPECT_THAT(std::string(zero.status().message()), HasSubstr("index 0"));
  EXPECT_EQ(ShamirSplit(secret, 4, {1, 2, 3}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShamirSplit(secret, 0, {1, 2, 3}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShamirSplit(SecretBytes(31), 2, {1, 2}).status().code(),
            absl::StatusCode::kInvalidArgument);

  auto shares = ShamirSplit(secret, 2, {1, 2, 3});
  ASSERT_TRUE(shares.ok());
  std::vector<ShamirShare> twice = {(*shares)[0], (*shares)[0]};
  auto r = ShamirReconstruct(twice, 2);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("duplicate"));
}

TEST(ShamirTest, TamperedShareIsDetectedOrGivesAnotherSecret) {
  SecretBytes secret = RandomSecret();
  auto shares = ShamirSplit(secret, 3, {1, 2, 3, 4});
  ASSERT_TRUE(shares.ok());
  (*shares)[0].values[2] ^= 1;
  auto r = ShamirReconstruct(*shares, 3);
  EXPECT_TRUE(!r.ok() || !r->Equals(secret));
}

}  // namespace
}  // namespace hansa

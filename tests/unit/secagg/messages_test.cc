#include "common/secagg/messages.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hansa {
namespace {

TEST(SecAggMessagesTest, RoundTripEveryMessage) {
  AdvertiseKeys a{7, 3, {1, 2}, {3, 4}, Ed25519Signature{9}};
  auto a2 = AdvertiseKeys::Parse(a.Serialize());
  ASSERT_TRUE(a2.ok()) << a2.status();
  EXPECT_EQ(a2->round, 7u);
  EXPECT_EQ(a2->sender, 3u);
  EXPECT_EQ(a2->mask_key, a.mask_key);
  EXPECT_EQ(*a2->signature, *a.signature);

  KeyDirectory d{7, {a, AdvertiseKeys{7, 4, {5}, {6}, std::nullopt}}};
  auto d2 = KeyDirectory::Parse(d.Serialize());
  ASSERT_TRUE(d2.ok()) << d2.status();
  ASSERT_EQ(d2->entries.size(), 2u);
  EXPECT_FALSE(d2->entries[1].signature.has_value());

  ShareKeys s{7, 3, {{4, "ct-a"}, {5, "ct-b"}}};
  auto s2 = ShareKeys::Parse(s.Serialize());
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s2->shares[1].peer, 5u);
  EXPECT_EQ(s2->shares[1].ciphertext, "ct-b");
  EXPECT_EQ(ShareDelivery::Parse(ShareDelivery{7, 4, {{3, "x"}}}.Serialize())->shares[0].peer, 3u);

  MaskedInputChunk c{7, 3, 100, RingVector::Zeros(RingWidth::k64, 3)};
  c.data.w64 = {1, 0xffffffffffffffffull, 42};
  auto c2 = MaskedInputChunk::Parse(c.Serialize());
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(c2->offset, 100u);
  EXPECT_EQ(c2->data, c.data);
  EXPECT_EQ(c.Serialize().size(), 2u + 8 + 4 + 8 + 1 + 4 + 24);

  EXPECT_EQ(SurvivorList::Parse(SurvivorList{7, {1, 3}}.Serialize())->survivors,
            (std::vector<SiteId>{1, 3}));
  UnmaskRequest u{7, {1, 3}, {ConsistencySignature{7, 1, {5}}}};
  auto u2 = UnmaskRequest::Parse(u.Serialize());
  ASSERT_TRUE(u2.ok());
  EXPECT_EQ(u2->signatures[0].signature[0], 5);

  UnmaskResponse r;
  r.round = 7;
  r.sender = 3;
  r.shares.push_back({1, ShareKind::kMaskKey, SecretBytes(std::string(44, 'q'))});
  auto r2 = UnmaskResponse::Parse(r.Serialize());
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->shares[0].kind, ShareKind::kMaskKey);
  EXPECT_TRUE(r2->shares[0].share.Equals(r.shares[0].share));
}

TEST(SecAggMessagesTest, RejectsTruncatedWrongTypeTrailingAndHugeCounts) {
  std::string bytes = ShareKeys{7, 3, {{4, "ciphertext"}}}.Serialize();
  auto trunc = ShareKeys::Parse(bytes.substr(0, bytes.size() - 1));
  EXPECT_EQ(trunc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(trunc.status().message()), ::testing::HasSubstr("truncated"));
  EXPECT_THAT(std::string(ShareKeys::Parse(bytes + "x").status().message()),
              ::testing::HasSubstr("trailing"));
  EXPECT_THAT(std::string(ShareDelivery::Parse(bytes).status().message()),
              ::testing::HasSubstr("wrong message type"));
  std::string huge = SurvivorList{7, {}}.Serialize();
  huge[10] = '\xff';
  huge[11] = '\xff';
  EXPECT_THAT(std::string(SurvivorList::Parse(huge).status().message()),
              ::testing::HasSubstr("does not fit"));
}

}  // namespace
}  // namespace hansa

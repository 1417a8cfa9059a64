#include "common/crypto/x25519.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/crypto/test_util.h"

namespace hansa {
namespace {

using testing_util::ArrayFromHex;
using testing_util::HexOf;
using testing_util::SecretFromHex;

// RFC 7748 section 5.2: scalar, input u-coordinate, output u-coordinate.
TEST(X25519Test, Rfc7748Section52Vectors) {
  struct Case {
    const char* scalar;
    const char* u;
    const char* out;
  } cases[] = {
      {"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
       "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
       "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
      {"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
       "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
       "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
  };
  for (const Case& c : cases) {
    auto out = X25519SharedSecret(SecretFromHex(c.scalar), ArrayFromHex<X25519PublicKey>(c.u));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(HexOf(*out), c.out);
  }
}

// RFC 7748 section 6.1: the Diffie-Hellman example.
TEST(X25519Test, Rfc7748Section61DiffieHellman) {
  SecretBytes alice =
      SecretFromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  SecretBytes bob =
      SecretFromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  auto alice_pub = X25519PublicFromPrivate(alice);
  auto bob_pub = X25519PublicFromPrivate(bob);
  ASSERT_TRUE(alice_pub.ok() && bob_pub.ok());
  EXPECT_EQ(HexOf(*alice_pub), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  EXPECT_EQ(HexOf(*bob_pub), "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  const char* kShared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
  EXPECT_EQ(HexOf(*X25519SharedSecret(alice, *bob_pub)), kShared);
  EXPECT_EQ(HexOf(*X25519SharedSecret(bob, *alice_pub)), kShared);
  // The same from whole pairs, whose public half OpenSSL takes as given.
  EXPECT_EQ(HexOf(*X25519SharedSecret(X25519KeyPair{alice, *alice_pub}, *bob_pub)), kShared);
  EXPECT_EQ(HexOf(*X25519SharedSecret(X25519KeyPair{bob, *bob_pub}, *alice_pub)), kShared);
}

TEST(X25519Test, GeneratedPairsAgree) {
  auto a = GenerateX25519KeyPair();
  auto b = GenerateX25519KeyPair();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->public_key, b->public_key);
  EXPECT_EQ(*X25519PublicFromPrivate(a->private_key), a->public_key);
  auto ab = X25519SharedSecret(a->private_key, b->public_key);
  auto ba = X25519SharedSecret(b->private_key, a->public_key);
  ASSERT_TRUE(ab.ok() && ba.ok());
  EXPECT_TRUE(ab->Equals(*ba));
  for (int i = 0; i < 50; ++i) {
    auto c = GenerateX25519KeyPair();
    ASSERT_TRUE(c.ok());
    auto from_pair = X25519SharedSecret(*c, a->public_key);
    auto from_private = X25519SharedSecret(c->private_key, a->public_key);
    ASSERT_TRUE(from_pair.ok() && from_private.ok());
    EXPECT_TRUE(from_pair->Equals(*from_private));
    EXPECT_TRUE(X25519SharedSecret(*a, c->public_key)->Equals(*from_pair));
  }
}

TEST(X25519Test, RejectsSmallOrderPeerAndBadKeySize) {
  auto a = GenerateX25519KeyPair();
  ASSERT_TRUE(a.ok());
  X25519PublicKey zero{};  // u = 0 has order 4: the shared secret would be all zeros
  auto st = X25519SharedSecret(a->private_key, zero).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("small-order"));
  st = X25519SharedSecret(*a, zero).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("small-order"));
  auto bad = X25519PublicFromPrivate(SecretBytes(31)).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), ::testing::HasSubstr("32 bytes, got 31"));
  bad = X25519SharedSecret(X25519KeyPair{SecretBytes(31), a->public_key}, a->public_key).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), ::testing::HasSubstr("32 bytes, got 31"));
}

}  // namespace
}  // namespace hansa

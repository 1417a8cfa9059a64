#include "common/crypto/secret.h"

#include <gtest/gtest.h>

namespace hansa {
namespace {

TEST(SecretBytesTest, ComparesContentInConstantTime) {
  SecretBytes a(std::string_view("abcdef"));
  SecretBytes b(std::string_view("abcdef"));
  SecretBytes c(std::string_view("abcdeg"));
  SecretBytes d(std::string_view("abc"));
  EXPECT_TRUE(a.Equals(b));
  EXPECT_FALSE(a.Equals(c));
  EXPECT_FALSE(a.Equals(d));
  EXPECT_TRUE(ConstantTimeEquals("xy", "xy", 2));
  EXPECT_FALSE(ConstantTimeEquals("xy", "xz", 2));
}

TEST(SecretBytesTest, WipeEmptiesAndMoveLeavesSourceEmpty) {
  SecretBytes a(std::string_view("secret"));
  SecretBytes b = std::move(a);
  EXPECT_EQ(b.view(), "secret");
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): documented state
  SecretBytes c(std::string_view("other"));
  c = b;
  EXPECT_EQ(c.view(), "secret");
  b.Wipe();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(c.view(), "secret");
}

}  // namespace
}  // namespace hansa

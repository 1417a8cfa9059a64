// RecordText: a peer's text cut to a byte budget at a character boundary, ill-formed UTF-8
// replaced, so that the record writer (which refuses ill-formed UTF-8) always accepts it.
#include "common/audit/record_text.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/audit/record.h"

namespace hansa {
namespace {

constexpr char kFffd[] = "\xEF\xBF\xBD";
constexpr char kE[] = "\xC3\xA9";             // é, 2 bytes
constexpr char kGrin[] = "\xF0\x9F\x98\x80";  // U+1F600, 4 bytes

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// What the audit log does with a string field: OK only for valid UTF-8.
Status Serializes(const std::string& text) {
  AuditRecord record;
  record.event = "site_declined";
  record.fields["reason"] = text;
  return CanonicalRecordBytes(record).status();
}

TEST(RecordTextTest, KeepsValidTextThatFits) {
  EXPECT_EQ(RecordText("no reason given", 15), "no reason given");
  EXPECT_EQ(RecordText("no reason given", 2), "no");
  const std::string mixed = std::string("caf") + kE + " " + kGrin;
  EXPECT_EQ(RecordText(mixed, mixed.size()), mixed);
  EXPECT_EQ(RecordText("", 10), "");
}

TEST(RecordTextTest, CutsBeforeATwoByteCharacterAtTheBoundary) {
  // "x" then é's: byte 2048 is the second half of an é, which must go whole.
  const std::string reason = "x" + Repeat(kE, 1499) + "x";
  ASSERT_EQ(reason.size(), 3000u);
  const std::string cut = RecordText(reason, 2048);
  EXPECT_EQ(cut, "x" + Repeat(kE, 1023));
  EXPECT_EQ(cut.size(), 2047u);
  EXPECT_TRUE(IsValidUtf8(cut));
  EXPECT_TRUE(Serializes(cut).ok());
  // The byte cut this replaces gives a record the writer refuses.
  Status raw = Serializes(reason.substr(0, 2048));
  EXPECT_EQ(raw.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(raw.message()), ::testing::HasSubstr("UTF-8"));
}

TEST(RecordTextTest, CutsBeforeAFourByteEmoji) {
  const std::string two = std::string(kGrin) + kGrin;
  EXPECT_EQ(RecordText(two, 8), two);
  for (size_t max = 4; max < 8; ++max) EXPECT_EQ(RecordText(two, max), kGrin) << max;
  for (size_t max = 0; max < 4; ++max) EXPECT_EQ(RecordText(two, max), "") << max;
  EXPECT_EQ(RecordText("a" + two, 6), std::string("a") + kGrin);
}

TEST(RecordTextTest, ReplacesEachMaximalIllFormedSubpart) {
  const std::string r = kFffd;
  struct Case {
    const char* what;
    std::string in, out;
  };
  // A hex escape runs on through hex digits, so the trailing letters are appended apart.
  const Case cases[] = {
      {"never a lead byte", std::string("a\xFF") + "b", "a" + r + "b"},
      {"stray continuation", std::string("\x80") + "z", r + "z"},
      {"truncated at the end", "ab\xC3", "ab" + r},
      {"truncated 3-byte form", std::string("\xE2\x82") + "z", r + "z"},
      {"truncated 4-byte form", std::string("\xF0\x9F\x98") + "z", r + "z"},
      {"overlong '/'", "\xC0\xAF", r + r},
      {"overlong 3-byte form", "\xE0\x80\xAF", r + r + r},
      {"surrogate U+D800", "\xED\xA0\x80", r + r + r},
      {"above U+10FFFF", "\xF4\x90\x80\x80", r + r + r + r},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(RecordText(c.in, 100), c.out) << c.what;
    EXPECT_FALSE(IsValidUtf8(c.in)) << c.what;
    EXPECT_FALSE(Serializes(c.in).ok()) << c.what << ": the writer accepts it after all";
    EXPECT_TRUE(Serializes(RecordText(c.in, 100)).ok()) << c.what;
  }
  EXPECT_TRUE(IsValidUtf8(std::string(kE) + kGrin + kFffd + "\xF4\x8F\xBF\xBF"));
}

TEST(RecordTextTest, AReplacementCountsTowardTheLimitAndIsNeverSplit) {
  EXPECT_EQ(RecordText("\xFF\xFF", 5), kFffd);
  EXPECT_EQ(RecordText("\xFF\xFF", 6), std::string(kFffd) + kFffd);
  EXPECT_EQ(RecordText("ab\xFF", 4), "ab");
}

}  // namespace
}  // namespace hansa

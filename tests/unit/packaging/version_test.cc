// The fields of --version (common/version/version.h) against what CMake configured.
#include "common/version/version.h"

#include <regex>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(VersionTest, BuildInfoIsWhatCMakeConfigured) {
  const BuildInfo& info = GetBuildInfo();
  EXPECT_STREQ(info.version, HANSA_EXPECTED_VERSION);
  EXPECT_STREQ(info.build_type, HANSA_EXPECTED_BUILD_TYPE);
  EXPECT_EQ(info.cuda, HANSA_EXPECTED_CUDA != 0);
}

TEST(VersionTest, CommitIsAnAbbreviatedHashOrUnknown) {
  const std::string commit = GetBuildInfo().commit;
  EXPECT_TRUE(std::regex_match(commit, std::regex("[0-9a-f]{12}(-dirty)?")) || commit == "unknown")
      << commit;
}

TEST(VersionTest, TextHasOneFieldALineInOrder) {
  const BuildInfo& info = GetBuildInfo();
  const std::string text = VersionText("hansa-client");
  EXPECT_THAT(text, StartsWith(std::string("hansa-client ") + HANSA_EXPECTED_VERSION + "\n"));
  EXPECT_THAT(text, HasSubstr(std::string("\ncommit: ") + info.commit + "\n"));
  EXPECT_THAT(text, HasSubstr(std::string("\nbuild: ") + HANSA_EXPECTED_BUILD_TYPE + "\n"));
  EXPECT_EQ(text.substr(text.rfind('\n') + 1), HANSA_EXPECTED_CUDA ? "cuda: yes" : "cuda: no");
}

}  // namespace
}  // namespace hansa

#include "common/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace hansa {
namespace {

using ::testing::HasSubstr;

StatusOr<ConfigReader> ParseText(const std::string& text) {
  return ConfigReader::Parse(text, "test.toml", "/etc/hansa");
}

TEST(ConfigTest, ReadsTypedValuesAndDefaults) {
  auto cfg = ParseText(R"(
[rounds]
total = 7
lr = 0.5
secure = true
sites = ["a", "b"]
[coordinator]
certificate = "cert.pem"
)");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->Int("rounds.total", 5, 1, 100), 7);
  EXPECT_DOUBLE_EQ(cfg->Double("rounds.lr", 0.1, 0, 10), 0.5);
  EXPECT_TRUE(cfg->Bool("rounds.secure", false));
  EXPECT_EQ(cfg->StringList("rounds.sites", {}), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(cfg->Path("coordinator.certificate", ""), "/etc/hansa/cert.pem");
  EXPECT_EQ(cfg->Int("rounds.absent", 42, 0, 100), 42);
  EXPECT_TRUE(cfg->Finish().ok());
}

// What a program writes as TOML reads back as the same string, whatever characters it holds:
// an experiment name with a form feed once resolved to TOML that did not (found by
// config_files_fuzz).
TEST(ConfigTest, TomlStringReadsBackAsTheSameString) {
  std::string every_ascii = "Z\xc3\xbcrich ";  // and UTF-8 passes through
  for (int c = 1; c < 128; ++c) every_ascii += static_cast<char>(c);
  for (const std::string& s : {std::string("plain"), std::string("a\"b\\c"),
                               std::string("form\ffeed\ttab\nline\rreturn\x7f"), every_ascii}) {
    auto cfg = ParseText("[k]\nv = " + TomlString(s) + "\n");
    ASSERT_TRUE(cfg.ok()) << cfg.status() << " for " << TomlString(s);
    EXPECT_EQ(cfg->String("k.v", "?"), s);
  }
}

TEST(ConfigTest, UnknownKeyIsAnErrorWithLineAndKnownKeys) {
  auto cfg = ParseText("[rounds]\ntotal = 3\ntotl = 4\n");
  ASSERT_TRUE(cfg.ok());
  cfg->Int("rounds.total", 5, 1, 100);
  Status st = cfg->Finish();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("test.toml:3: unknown key 'rounds.totl'"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("known keys here: total"));
}

TEST(ConfigTest, WrongTypeAndRangeAreErrors) {
  auto cfg = ParseText("[rounds]\ntotal = \"five\"\nmin_sites = 0\n");
  ASSERT_TRUE(cfg.ok());
  cfg->Int("rounds.total", 5, 1, 100);
  cfg->Int("rounds.min_sites", 1, 1, 100);
  EXPECT_THAT(std::string(cfg->Finish().message()), HasSubstr("'rounds.total' must be an integer"));

  auto cfg2 = ParseText("[rounds]\nmin_sites = 0\n");
  cfg2->Int("rounds.min_sites", 1, 1, 100);
  EXPECT_THAT(std::string(cfg2->Finish().message()), HasSubstr("must be between 1 and 100"));
}

TEST(ConfigTest, MissingRequiredKeyIsAnError) {
  auto cfg = ParseText("[site]\n");
  cfg->RequiredString("site.name");
  EXPECT_THAT(std::string(cfg->Finish().message()), HasSubstr("'site.name' is required"));
}

TEST(ConfigTest, BadTomlNamesLine) {
  auto cfg = ParseText("[rounds]\ntotal = = 3\n");
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("test.toml:2:"));
}

TEST(ConfigTest, MissingFileIsNotFound) {
  auto cfg = ConfigReader::Load("/nonexistent/hansa/site.toml");
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("/nonexistent/hansa/site.toml"));
}

}  // namespace
}  // namespace hansa

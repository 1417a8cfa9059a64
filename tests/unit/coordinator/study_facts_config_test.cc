// coordinator.toml's identifier and GDPR facts of the study ([federation] study, purpose,
// legal_basis, controllers, retention_days, dpia_reference): read into every plan's StudyFacts,
// each optional with a warning when the study, its purpose or legal basis is missing, and a bad
// value an error naming its key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "common/pki/startup_kit.h"
#include "coordinator/coordinator_config.h"

namespace hansa {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRest[] = R"(
[sites]
allowed = ["a"]
[aggregation]
mode = "plaintext"
)";

// One file per test and case: ctest runs the tests of this binary as parallel processes.
StatusOr<CoordinatorConfig> Load(const std::string& federation, int index = 0) {
  std::string path = ::testing::TempDir() + "study_facts_" +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
                     std::to_string(index) + ".toml";
  std::ofstream(path) << "[federation]\nname = \"demo\"\n" << federation << kRest;
  return LoadCoordinatorConfig(path);
}

TEST(StudyFactsConfigTest, ReadsEveryFact) {
  auto c = Load(R"(study = "xray-2027.01"
purpose = """
Train a classifier of chest X-rays
for pneumonia triage"""
legal_basis = "Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR"
controllers = ["Charité Berlin", "AP-HP"]
retention_days = 3650
dpia_reference = "DPIA-2026-017"
)");
  ASSERT_TRUE(c.ok()) << c.status();
  const v1::StudyFacts& s = c->engine.study;
  EXPECT_EQ(s.id(), "xray-2027.01");
  EXPECT_EQ(s.purpose(), "Train a classifier of chest X-rays\nfor pneumonia triage");
  EXPECT_EQ(s.legal_basis(), "Art. 6(1)(e) GDPR with Art. 9(2)(j) GDPR");
  EXPECT_THAT(s.controllers(), ElementsAre("Charité Berlin", "AP-HP"));
  EXPECT_EQ(s.retention_days(), 3650u);
  EXPECT_EQ(s.dpia_reference(), "DPIA-2026-017");
  EXPECT_EQ(StudyFactsWarning(*c), "");
}

TEST(StudyFactsConfigTest, EachIsOptionalButAMissingPurposeOrLegalBasisIsWarnedOf) {
  auto none = Load("");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->engine.study.ByteSizeLong(), 0u);  // plans carry nothing
  EXPECT_THAT(StudyFactsWarning(*none), HasSubstr("states no purpose and legal_basis"));
  EXPECT_THAT(StudyFactsWarning(*none), HasSubstr("require_legal_basis refuse them"));
  EXPECT_THAT(StudyFactsWarning(*none),
              HasSubstr("names no study: its plans carry no study identifier, and sites whose "
                        "policy pins one (policy.study) refuse them"));
  auto purpose = Load("purpose = \"Triage\"\nstudy = \"triage\"\n", 1);
  ASSERT_TRUE(purpose.ok()) << purpose.status();
  EXPECT_THAT(StudyFactsWarning(*purpose), HasSubstr("states no legal_basis of the study"));
  EXPECT_THAT(StudyFactsWarning(*purpose), Not(HasSubstr("names no study")));
  // Purpose and legal basis stated, no study named: the warning says only that.
  auto unnamed = Load("purpose = \"Triage\"\nlegal_basis = \"Art. 6(1)(e) GDPR\"\n", 2);
  ASSERT_TRUE(unnamed.ok()) << unnamed.status();
  EXPECT_EQ(unnamed->engine.study.id(), "");
  EXPECT_THAT(StudyFactsWarning(*unnamed),
              AllOf(HasSubstr("coordinator.toml [federation] names no study"),
                    HasSubstr("Set federation.study (e.g. \"fmnist-2027-01\")"),
                    Not(HasSubstr("legal_basis"))));
}

TEST(StudyFactsConfigTest, ABadValueIsAnErrorNamingItsKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"purpose = 7\n", "'federation.purpose' must be a string"},
      {"legal_basis = [\"Art. 6\"]\n", "'federation.legal_basis' must be a string"},
      {"controllers = \"Charité\"\n", "'federation.controllers' must be a list of strings"},
      {"controllers = [\"Charité\", 3]\n", "'federation.controllers' must be a list of strings"},
      {"retention_days = \"ten years\"\n", "'federation.retention_days' must be an integer"},
      {"retention_days = 0\n", "'federation.retention_days' is 0 but must be between 1 and"},
      {"retention_days = 36501\n", "'federation.retention_days' is 36501"},
      {"dpia_reference = true\n", "'federation.dpia_reference' must be a string"},
      {"purpose = \"  \"\n", "'federation.purpose' is empty"},
      {"legal_basis = \"\"\n", "'federation.legal_basis' is empty"},
      {"purpose = \"" + std::string(4097, 'p') + "\"\n",
       "'federation.purpose' has 4097 bytes; at most 4096"},
      {"legal_basis = \"Art. 6\\u0007\"\n", "'federation.legal_basis' contains a control"},
      {"dpia_reference = \"a\\nb\"\n", "'federation.dpia_reference' contains a control"},
      {"controllers = [\"AP-HP\", \"AP-HP\"]\n", "'federation.controllers' lists 'AP-HP' twice"},
      {"controllers = [\"\"]\n", "'federation.controllers' is empty"},
      {"purpos = \"typo\"\n", "unknown key 'federation.purpos'"},
      {"study = 2027\n", "'federation.study' must be a string"},
      {"study = \"\"\n", "'federation.study' is empty: name the study, or leave the key out"},
      {"study = \"fmnist 2027\"\n", "'federation.study' is 'fmnist 2027', which holds ' '"},
      {"study = \"fmnist/2027\"\n", "'federation.study' is 'fmnist/2027', which holds '/'"},
      {"study = \"" + std::string(65, 's') + "\"\n",
       "'federation.study' has 65 characters, more than 64; a study's identifier is 1 to 64"},
  };
  int index = 0;
  for (const auto& [text, error] : cases) {
    auto c = Load(text, ++index);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(error)) << text;
  }
  std::string many = "controllers = [";
  for (int i = 0; i < 33; ++i) many += "\"c" + std::to_string(i) + "\", ";
  auto c = Load(many + "]\n", ++index);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("'federation.controllers' lists 33 controllers; at most 32"));
}

// hansa provision and hansa enroll accept write demo facts that read back and say so.
TEST(StudyFactsConfigTest, TheStartupKitsConfigStatesDemoFacts) {
  CoordinatorConfigTemplate t;
  t.federation = "demo";
  t.listen = "127.0.0.1:50051";
  t.allowed_sites = {"a", "b", "c"};
  const std::string path = ::testing::TempDir() + "study_facts_kit.toml";
  std::ofstream(path) << RenderCoordinatorConfig(t);
  auto c = LoadCoordinatorConfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(StudyFactsWarning(*c), "");
  EXPECT_EQ(c->engine.study.id(), "demo");
  EXPECT_THAT(c->engine.study.purpose(), HasSubstr("DEMO"));
  EXPECT_THAT(c->engine.study.legal_basis(), HasSubstr("DEMO"));
  EXPECT_EQ(c->engine.study.retention_days(), 30u);
  EXPECT_EQ(c->engine.study.controllers_size(), 1);
}

}  // namespace
}  // namespace hansa

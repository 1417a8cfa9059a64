// site.toml's [data] (client/site_config.h): a site's own images in class folders, decoded and
// labelled in the study's class order, and clear refusals of what the site cannot read.
#include "client/site_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/image_folder.h"
#include "common/pki/startup_kit.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "site_config_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// `data` written as PNG class folders under `root` (class i in folder names[i]).
void WriteFolders(const Dataset& data, const std::string& root,
                  const std::vector<std::string>& names) {
  for (int64_t i = 0; i < data.size(); ++i) {
    const std::string dir = root + "/" + names[data.labels[i]];
    std::filesystem::create_directories(dir);
    const auto* p = data.images.data() + i * 784;
    ASSERT_TRUE(WriteGreyPng(absl::StrFormat("%s/%05d.png", dir, i),
                             std::vector<uint8_t>(p, p + 784), 28, 28)
                    .ok());
  }
}

std::string WriteToml(const std::string& dir, const std::string& data) {
  const std::string path = dir + "/site.toml";
  std::ofstream(path) << "[site]\nname = \"berlin\"\n\n[data]\n" << data;
  return path;
}

TEST(SiteConfigTest, ASiteTrainsOnItsOwnImageFoldersInTheStudysClassOrder) {
  auto mnist = LoadMnistStyle(kFashionMnistDir, Split::kTest);  // dataset-fashion-mnist
  ASSERT_TRUE(mnist.ok()) << mnist.status();
  const std::string dir = FreshDir("images");
  // Class names whose alphabetical order is not the label order: the study fixes the order.
  const std::vector<std::string> names = {"top",    "trouser", "pullover", "dress", "coat",
                                          "sandal", "shirt",   "sneaker",  "bag",   "boot"};
  const Dataset train = Head(*mnist, 120);
  auto test_subset = Subset(*mnist, {500, 501, 502, 503, 504});
  ASSERT_TRUE(test_subset.ok()) << test_subset.status();
  const Dataset test = *test_subset;
  WriteFolders(train, dir + "/train", names);
  WriteFolders(test, dir + "/test", names);
  std::string list;
  for (const std::string& n : names)
    absl::StrAppend(&list, list.empty() ? "" : ", ", "\"", n, "\"");
  auto config = LoadSiteConfig(WriteToml(dir, absl::StrCat("format = \"image_folder\"\n"
                                                           "train_dir = \"train\"\n"
                                                           "test_dir = \"test\"\n"
                                                           "classes = [",
                                                           list, "]\n")));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->shard_count, 1);  // the site's own data: all of it
  Dataset got_train, got_test;
  ASSERT_TRUE(LoadSiteData(*config, &got_train, &got_test).ok());
  ASSERT_EQ(got_train.size(), train.size());
  ASSERT_EQ(got_test.size(), test.size());
  // Per class, the same number of examples and the same pixels in total.
  for (int c = 0; c < 10; ++c) {
    int64_t want = 0, got = 0, want_sum = 0, got_sum = 0;
    for (int64_t i = 0; i < train.size(); ++i) {
      if (train.labels[i] != c) continue;
      ++want;
      for (int k = 0; k < 784; ++k) want_sum += train.images[i * 784 + k];
    }
    for (int64_t i = 0; i < got_train.size(); ++i) {
      if (got_train.labels[i] != c) continue;
      ++got;
      for (int k = 0; k < 784; ++k) got_sum += got_train.images[i * 784 + k];
    }
    EXPECT_EQ(got, want) << c;
    EXPECT_EQ(got_sum, want_sum) << c;
  }
}

TEST(SiteConfigTest, UnknownFormatsAndMissingFoldersAreRefusedClearly) {
  const std::string dir = FreshDir("bad");
  auto csv = LoadSiteConfig(WriteToml(dir, "format = \"parquet\"\n"));
  EXPECT_EQ(csv.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(csv.status().message()),
              HasSubstr("data.format is 'parquet'; it must be \"idx\", \"image_folder\", "
                        "\"dicom_folder\" or \"csv\""));
  auto no_dirs = LoadSiteConfig(WriteToml(dir, "format = \"image_folder\"\n"));
  EXPECT_THAT(std::string(no_dirs.status().message()),
              HasSubstr("needs data.train_dir and data.test_dir"));
  auto absent = LoadSiteConfig(WriteToml(
      dir, "format = \"image_folder\"\ntrain_dir = \"nowhere\"\ntest_dir = \"nowhere\"\n"));
  ASSERT_TRUE(absent.ok()) << absent.status();
  Dataset train, test;
  EXPECT_EQ(LoadSiteData(*absent, &train, &test).code(), absl::StatusCode::kNotFound);
}

TEST(SiteConfigTest, ASiteTrainsOnAllOfItsOwnCsvFileWithItsCategoriesAndAHeldOutPart) {
  const std::string dir = FreshDir("csv");
  std::ofstream(dir + "/records.csv") << "id,age,ward,outcome\n"
                                      << "1,60,icu,1\n2,45,general,0\n3,71,icu,1\n"
                                      << "4,38,general,0\n5,52,,0\n6,80,icu,1\n"
                                      << "7,49,general,0\n8,66,general,1\n9,59,icu,0\n"
                                      << "10,41,general,0\n";
  const std::string path =
      WriteToml(dir,
                "format = \"csv\"\ntrain = \"records.csv\"\ntest_fraction = 0.3\nsplit_seed = 4\n"
                "[data.csv]\nlabel = \"outcome\"\nignore = [\"id\"]\n"
                "[data.csv.categorical]\nward = [\"general\", \"icu\", \"\"]\n"
                "[model]\nfiles = [\"model.pt\"]\n");
  auto config = LoadSiteConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model_files, std::vector<std::string>{dir + "/model.pt"});
  Dataset train, test;
  ASSERT_TRUE(LoadSiteData(*config, &train, &test).ok());
  EXPECT_TRUE(train.tabular);
  EXPECT_EQ(train.size() + test.size(), 10);  // no shard: every row of the site's own file
  EXPECT_EQ(test.size(), 3);
  EXPECT_EQ(train.cols, 4);  // age and ward's three categories
  ASSERT_EQ(train.labels.size(), train.targets.size());

  // A bad row is an error naming the file and line, and the site loads nothing.
  std::ofstream(dir + "/records.csv", std::ios::app) << "11,abc,icu,1\n";
  Dataset none, none_test;
  Status bad = LoadSiteData(*config, &none, &none_test);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("records.csv:12"));
  EXPECT_EQ(none.size(), 0);

  auto no_test = LoadSiteConfig(WriteToml(dir,
                                          "format = \"csv\"\ntrain = \"records.csv\"\n"
                                          "[data.csv]\nlabel = \"outcome\"\n"));
  EXPECT_THAT(std::string(no_test.status().message()),
              HasSubstr("either data.test or data.test_fraction"));
  auto unknown_model = LoadSiteConfig(
      WriteToml(dir,
                "format = \"csv\"\ntrain = \"records.csv\"\ntest = \"records.csv\"\n"
                "[data.csv]\nlabel = \"outcome\"\n[policy]\nallowed_models = [\"sha256:12\"]\n"));
  EXPECT_THAT(std::string(unknown_model.status().message()),
              HasSubstr("neither a built-in model nor \"sha256:<64 hex digits>\""));
}

// [policy] require_legal_basis and purpose_sha256 (the study's GDPR facts): read, the pin in
// lowercase whatever the case written; a pin that is not a SHA-256 is an error naming the key.
TEST(SiteConfigTest, ThePolicyCanRequireALegalBasisAndPinTheStudysPurpose) {
  const std::string dir = FreshDir("gdpr");
  const std::string pin(64, 'a');
  std::ofstream(dir + "/site.toml") << "[site]\nname = \"berlin\"\n[policy]\n"
                                       "require_legal_basis = true\npurpose_sha256 = \""
                                    << std::string(64, 'A') << "\"\n";
  auto c = LoadSiteConfig(dir + "/site.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->policy.require_legal_basis);
  EXPECT_EQ(c->policy.purpose_sha256, pin);
  for (const std::string& bad : {std::string(63, 'a'), std::string(63, 'a') + "g"}) {
    std::ofstream(dir + "/site.toml", std::ios::trunc)
        << "[site]\nname = \"berlin\"\n[policy]\npurpose_sha256 = \"" << bad << "\"\n";
    auto wrong = LoadSiteConfig(dir + "/site.toml");
    EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(wrong.status().message()),
                HasSubstr("policy.purpose_sha256 is '" + bad + "'; it must be 64 hex digits"));
  }
  std::ofstream(dir + "/site.toml", std::ios::trunc)
      << "[site]\nname = \"berlin\"\n[policy]\nrequire_legal_basis = \"yes\"\n";
  EXPECT_THAT(std::string(LoadSiteConfig(dir + "/site.toml").status().message()),
              HasSubstr("'policy.require_legal_basis' must be"));
}

// [policy] study: read as written; a value that is not a study's identifier (empty, other
// characters, longer than 64) is an error naming the key. Unset, the site takes part in any
// study, as the kit's site.toml leaves it (it shows the key, commented out, beside the
// coordinator's demo study).
TEST(SiteConfigTest, ThePolicyCanPinTheStudy) {
  const std::string dir = FreshDir("study");
  std::ofstream(dir + "/site.toml")
      << "[site]\nname = \"berlin\"\n[policy]\nstudy = \"fmnist-2027-01\"\n";
  auto c = LoadSiteConfig(dir + "/site.toml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->policy.study, "fmnist-2027-01");
  for (const auto& [value, why] : std::vector<std::pair<std::string, std::string>>{
           {"\"\"", "'policy.study' is empty: name the study, or leave the key out"},
           {"\"fmnist 2027\"", "'policy.study' is 'fmnist 2027', which holds ' '"},
           {"\"fmnist:2027\"", "'policy.study' is 'fmnist:2027', which holds ':'"},
           {"\"" + std::string(65, 's') + "\"", "'policy.study' has 65 characters, more than 64"},
           {"[\"a\", \"b\"]", "'policy.study' must be a string"}}) {
    std::ofstream(dir + "/site.toml", std::ios::trunc)
        << "[site]\nname = \"berlin\"\n[policy]\nstudy = " << value << "\n";
    auto wrong = LoadSiteConfig(dir + "/site.toml");
    EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument) << value;
    EXPECT_THAT(std::string(wrong.status().message()), HasSubstr(why)) << value;
    EXPECT_THAT(std::string(wrong.status().message()), HasSubstr(dir + "/site.toml")) << value;
  }
  SiteConfigTemplate kit;
  kit.site = "berlin";
  kit.federation = "demo";
  kit.coordinator_address = "127.0.0.1:50051";
  kit.coordinator_fingerprint = std::string(64, 'a');
  const std::string toml = RenderSiteConfig(kit);
  EXPECT_THAT(toml, HasSubstr("\n# study = \"demo\"\n"));
  std::ofstream(dir + "/site.toml", std::ios::trunc) << toml;
  auto rendered = LoadSiteConfig(dir + "/site.toml");
  ASSERT_TRUE(rendered.ok()) << rendered.status();
  EXPECT_EQ(rendered->policy.study, "");
  EXPECT_EQ(rendered->policy.coordinator_fingerprint, std::string(64, 'a'));
}

}  // namespace
}  // namespace hansa

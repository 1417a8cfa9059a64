// A study's TorchScript model (client/train/torchscript.h): built in C++ with torch::jit as a
// study would save one from Python, then inspected as `hansa model inspect` shows it.
#include "client/train/torchscript.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "ts_" + name; }

TEST(TorchScriptTest, InspectNamesEveryParameterWithShapeAndTheFilesHash) {
  const std::string path = TempPath("mlp.pt");
  ASSERT_TRUE(SaveTorchScriptMlp(path, 30, 16, 2, 7).ok());
  auto info = InspectTorchScript(path);
  ASSERT_TRUE(info.ok()) << info.status();
  auto bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(info->sha256, ToHex(Sha256(*bytes)));
  EXPECT_EQ(info->file_bytes, bytes->size());
  ASSERT_EQ(info->tensors.size(), 4u);
  EXPECT_EQ(info->tensors[0].name, "fc1.weight");
  EXPECT_THAT(info->tensors[0].shape, ElementsAre(16, 30));
  EXPECT_EQ(info->tensors[0].dtype, "float32");
  EXPECT_TRUE(info->tensors[0].parameter);
  EXPECT_EQ(info->tensors[3].name, "fc2.bias");
  EXPECT_THAT(info->tensors[3].shape, ElementsAre(2));
  EXPECT_EQ(info->parameter_count, 30 * 16 + 16 + 16 * 2 + 2);
  EXPECT_EQ(info->update_bytes, info->parameter_count * 4);
  // The same architecture from another seed is another model: another hash.
  const std::string other = TempPath("mlp2.pt");
  ASSERT_TRUE(SaveTorchScriptMlp(other, 30, 16, 2, 8).ok());
  auto second = InspectTorchScript(other);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(second->sha256, info->sha256);
  EXPECT_EQ(second->parameter_count, info->parameter_count);
}

TEST(TorchScriptTest, AFileThatIsNoTorchScriptIsRefusedClearly) {
  const std::string path = TempPath("garbage.pt");
  std::ofstream(path) << "not a zip archive";
  auto info = InspectTorchScript(path);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(info.status().message()),
              HasSubstr("is not a TorchScript model LibTorch can load"));
  EXPECT_EQ(InspectTorchScript(TempPath("absent.pt")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace hansa

// Checkpoints::Encode consuming its model: the same payload as encoding a kept model, while the
// consumed values' pages go back block by block. Write and Load: the published payload is then
// the checkpoint file's mapping, with the same bytes and values.
#include "coordinator/checkpoints.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"

namespace hansa {
namespace {

Model Counting(const ModelLayout& layout) {
  Model m;
  m.layout = layout;
  m.values.resize(static_cast<size_t>(layout.TotalElements()));
  for (size_t i = 0; i < m.values.size(); ++i) m.values[i] = static_cast<float>(i % 1000003) / 7;
  return m;
}

TEST(CheckpointsTest, ConsumingEncodeGivesTheSamePayload) {
  const Checkpoints checkpoints(::testing::TempDir(), "mlp");
  // Empty, a few values, and 40 MiB + 12 bytes: several copy blocks and a partial last one.
  for (const ModelLayout& layout :
       {ModelLayout(), ModelLayout({{"w", DType::kF32, {3}}}),
        ModelLayout({{"w", DType::kF32, {2560, 4096}}, {"b", DType::kF32, {3}}})}) {
    SCOPED_TRACE(layout.TotalElements());
    const Model kept = Counting(layout);
    PublishedModel expected = checkpoints.Encode(12, kept);
    Model consumed = Counting(layout);
    PublishedModel published = checkpoints.Encode(12, std::move(consumed));
    ASSERT_TRUE(published.payload.has_value());
    EXPECT_EQ(published.payload.view(), expected.payload.view());
    EXPECT_EQ(published.sha256, expected.sha256);
    EXPECT_TRUE(published.layout.CheckSameAs(layout).ok());
    EXPECT_TRUE(consumed.values.empty());
    if (!kept.values.empty()) {
      EXPECT_EQ(published.values()[kept.values.size() - 1], kept.values.back());
    }
  }
}

TEST(CheckpointsTest, AWrittenOrLoadedModelIsServedFromItsFile) {
  const std::string dir =
      ::testing::TempDir() + "/checkpoints_mapped_" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(MakeDirs(dir + "/checkpoints").ok());
  const ModelLayout layout({{"w", DType::kF32, {1000, 1000}}, {"b", DType::kF32, {7}}});
  auto strategy = Strategy::Create(StrategyOptions{}, layout);
  ASSERT_TRUE(strategy.ok()) << strategy.status();
  const Checkpoints checkpoints(dir, "mlp");
  const Model model = Counting(layout);
  PublishedModel published = checkpoints.Encode(3, model);
  const std::string bytes(published.payload.view());
  EXPECT_FALSE(published.payload.mapped());

  ASSERT_TRUE(checkpoints.Write(3, &published, **strategy).ok());
  EXPECT_TRUE(published.payload.mapped());
  EXPECT_EQ(published.payload.view(), bytes);
  EXPECT_EQ(
      std::memcmp(published.values(), model.values.data(), model.values.size() * sizeof(float)), 0);

  RoundRecord last;
  last.round = 3;
  last.checkpoint = checkpoints.ModelPath(3);
  last.model_sha256 = published.sha256;
  EXPECT_EQ(ToHex(Sha256(bytes)), published.sha256);
  StatusOr<PublishedModel> loaded = checkpoints.Load(last);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->payload.mapped());
  EXPECT_EQ(loaded->payload.view(), bytes);
  EXPECT_EQ(loaded->sha256, published.sha256);
  Model back = loaded->ToModel();
  EXPECT_TRUE(back.layout.CheckSameAs(layout).ok());
  EXPECT_EQ(back.values, model.values);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hansa

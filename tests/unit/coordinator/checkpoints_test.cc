// Checkpoints::Encode consuming its model: the same payload as encoding a kept model, while the
// consumed values' pages go back block by block.
#include "coordinator/checkpoints.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

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
    ASSERT_NE(published.payload, nullptr);
    EXPECT_EQ(*published.payload, *expected.payload);
    EXPECT_EQ(published.sha256, expected.sha256);
    EXPECT_TRUE(published.layout.CheckSameAs(layout).ok());
    EXPECT_TRUE(consumed.values.empty());
    if (!kept.values.empty()) {
      EXPECT_EQ(published.values()[kept.values.size() - 1], kept.values.back());
    }
  }
}

}  // namespace
}  // namespace hansa

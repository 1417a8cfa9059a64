#include "common/tensor/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace hansa {
namespace {

TEST(ZeroedDoublesTest, StartsAtZeroAndHoldsWhatIsWritten) {
  for (size_t count : {size_t{0}, size_t{1}, size_t{1000}, size_t{3} << 20}) {  // 0 B to 24 MiB
    ZeroedDoubles sum(count);
    ASSERT_EQ(sum.size(), count);
    ASSERT_NE(sum.data(), nullptr);
    for (size_t i = 0; i < count; i += 4093) ASSERT_EQ(sum[i], 0.0) << i;
    if (count < 2) continue;
    sum.data()[count - 1] = 2.5;
    sum.data()[0] += 1.0;
    EXPECT_EQ(sum[count - 1], 2.5);
    EXPECT_EQ(sum[0], 1.0);
  }
}

// Advice on any range, aligned or not, large or small, leaves the bytes as they were.
TEST(AdviseHugePagesTest, LeavesTheBufferAsItWas) {
  std::vector<uint8_t> buffer((size_t{9} << 20) + 123);
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<uint8_t>(i * 7);
  AdviseHugePages(buffer.data() + 1, buffer.size() - 1);
  AdviseHugePages(buffer.data(), 100);
  for (size_t i = 0; i < buffer.size(); i += 997) ASSERT_EQ(buffer[i], static_cast<uint8_t>(i * 7));
}

}  // namespace
}  // namespace hansa

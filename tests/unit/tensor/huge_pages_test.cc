#include "common/tensor/huge_pages.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

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

// Whole pages inside the range read back as zeros; no byte outside them changes.
TEST(ReleaseConsumedPagesTest, GivesBackOnlyWholePagesInTheRange) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<uint8_t> buffer((size_t{1} << 20) + 123);
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<uint8_t>(i * 7 + 1);
  EXPECT_EQ(ReleaseConsumedPages(buffer.data(), 10, 10), 0u);
  EXPECT_EQ(ReleaseConsumedPages(buffer.data(), 0, 1), 0u);  // no whole page below byte 1
  const size_t begin = 5000, end = 300001;
  const size_t released = ReleaseConsumedPages(buffer.data(), begin, end);
  EXPECT_GT(released, end - begin - 3 * page);
  EXPECT_EQ(released % page, 0u);
  const auto base = reinterpret_cast<uintptr_t>(buffer.data());
  size_t zeros = 0;
  for (size_t i = 0; i < buffer.size(); ++i) {
    const uintptr_t at = base + i;
    const bool inside = at >= ((base + begin) & ~(page - 1)) && at < ((base + end) & ~(page - 1)) &&
                        at >= ((base + page - 1) & ~(page - 1));
    if (inside) {
      zeros += buffer[i] == 0;
    } else {
      ASSERT_EQ(buffer[i], static_cast<uint8_t>(i * 7 + 1)) << i;
    }
  }
  EXPECT_EQ(zeros, released);
}

// A fresh private mapping of `bytes`, unmapped when it goes.
struct Mapping {
  explicit Mapping(size_t n)
      : bytes(n),
        data(static_cast<uint8_t*>(
            ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))) {}
  ~Mapping() { ::munmap(data, bytes); }
  // How many of the pages of [begin, end) are resident.
  size_t Resident(size_t begin, size_t end) const {
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> in((bytes + page - 1) / page);
    EXPECT_EQ(::mincore(data, bytes, in.data()), 0);
    size_t n = 0;
    for (size_t p = begin / page; p < (end + page - 1) / page; ++p) n += in[p] & 1;
    return n;
  }
  size_t bytes;
  uint8_t* data;
};

// Every whole page of the range becomes resident and no byte changes: what was written stays,
// the rest reads zero. The partial pages at either end are left to their owners.
TEST(PrefaultTest, MakesEveryWholePageOfTheRangeResidentAndChangesNoByte) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  Mapping m(size_t{16} << 20);
  ASSERT_NE(m.data, MAP_FAILED);
  ASSERT_EQ(::madvise(m.data, m.bytes, MADV_NOHUGEPAGE), 0);  // residency page by page
  constexpr size_t kWritten = size_t{1} << 20;
  for (size_t i = 0; i < kWritten; i += 3 * page + 5) m.data[i] = static_cast<uint8_t>(i % 251 + 1);
  EXPECT_LE(m.Resident(0, m.bytes), kWritten / page + 1);
  const size_t begin = 100, end = m.bytes - page - 7;  // neither on a page boundary
  {
    Prefault prefault(m.data + begin, end - begin);
    prefault.Wait();
  }
  EXPECT_EQ(m.Resident(page, end - end % page), (end - end % page) / page - 1);
  EXPECT_EQ(m.Resident(end - end % page + page, m.bytes), 0u);  // past the range: untouched
  for (size_t i = 0; i < m.bytes; ++i) {
    const bool written = i < kWritten && i % (3 * page + 5) == 0;
    const uint8_t want = written ? static_cast<uint8_t>(i % 251 + 1) : 0;
    ASSERT_EQ(m.data[i], want) << i;
  }
}

// Under 4 MiB nothing is faulted in; a Prefault dropped at once stops, leaving the bytes alone.
TEST(PrefaultTest, LeavesSmallBuffersAloneAndStopsWhenDropped) {
  Mapping small(size_t{3} << 20);
  ASSERT_NE(small.data, MAP_FAILED);
  { Prefault prefault(small.data, small.bytes); }
  EXPECT_EQ(small.Resident(0, small.bytes), 0u);

  Mapping large(size_t{64} << 20);
  ASSERT_NE(large.data, MAP_FAILED);
  large.data[12345] = 7;
  { Prefault dropped(large.data, large.bytes); }
  Prefault moved(large.data, large.bytes);
  Prefault target;
  target = std::move(moved);
  target.Wait();
  EXPECT_EQ(large.data[12345], 7);
  EXPECT_EQ(large.data[large.bytes - 1], 0);
}

}  // namespace
}  // namespace hansa

#include "common/tensor/huge_pages.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
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

long MinorFaultsOfThisThread() {
  rusage usage{};
  ::getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}

// Fresh anonymous memory of `count` doubles on 4 KiB pages (huge pages turned off), as a
// large calloc gets it in a fresh process. Not from malloc: after an earlier test freed many
// small blocks, a calloc of this size came from the heap, its pages already faulted in.
class FreshSmallPages {
 public:
  explicit FreshSmallPages(size_t count) : bytes_(count * sizeof(double)) {
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<double*>(p);
    if (data_ != nullptr) ::madvise(data_, bytes_, MADV_NOHUGEPAGE);
  }
  ~FreshSmallPages() {
    if (data_ != nullptr) ::munmap(data_, bytes_);
  }
  FreshSmallPages(const FreshSmallPages&) = delete;
  FreshSmallPages& operator=(const FreshSmallPages&) = delete;
  double* data() const { return data_; }
  size_t size() const { return bytes_ / sizeof(double); }

 private:
  size_t bytes_;
  double* data_;
};

// After PopulateForWriting a fresh buffer's read-modify-write pass faults at least one page
// fewer per page than without it (the read of the zero page and then the write), and values
// written before keep their place.
TEST(PopulateForWritingTest, FaultsThePagesInOnceForWritingAndKeepsWhatWasThere) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  constexpr size_t kCount = size_t{1} << 20;  // 8 MiB of doubles
  const size_t pages = kCount * sizeof(double) / page;
  auto read_modify_write = [](const FreshSmallPages& sum) {
    const long before = MinorFaultsOfThisThread();
    for (size_t i = 0; i < sum.size(); ++i) sum.data()[i] += 1.0;
    return MinorFaultsOfThisThread() - before;
  };
  FreshSmallPages unprepared(kCount);
  ASSERT_NE(unprepared.data(), nullptr);
  const long faults_unprepared = read_modify_write(unprepared);

  FreshSmallPages sum(kCount);
  ASSERT_NE(sum.data(), nullptr);
  sum.data()[3] = 7.0;
  sum.data()[kCount / 2 + 1] = -2.0;
  ASSERT_TRUE(PopulateForWriting(sum.data(), 0, 0));  // an empty range is nothing to do
  ASSERT_TRUE(PopulateForWriting(sum.data(), 8, kCount * sizeof(double) / 2 + 9));  // unaligned
  ASSERT_TRUE(PopulateForWriting(sum.data(), kCount * sizeof(double) / 2, kCount * sizeof(double)));
  const long faults_prepared = read_modify_write(sum);
  EXPECT_GT(faults_unprepared - faults_prepared, static_cast<long>(pages))
      << faults_unprepared << " faults without, " << faults_prepared << " with";
  EXPECT_EQ(sum.data()[3], 8.0);
  EXPECT_EQ(sum.data()[kCount / 2 + 1], -1.0);
  EXPECT_EQ(sum.data()[0], 1.0);
  EXPECT_EQ(sum.data()[kCount - 1], 1.0);
}

TEST(FreePagesGoToTheHostTest, ReadsTheBalloonsReportingBit) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "hansa_virtio_balloon";
  std::filesystem::remove_all(dir);
  EXPECT_FALSE(FreePagesGoToTheHost(dir.string()));  // no balloon driver: no reporting
  std::filesystem::create_directories(dir / "virtio0");
  std::filesystem::create_directories(dir / "module");  // not a device
  auto features = [&](const std::string& bits) {
    std::ofstream(dir / "virtio0" / "features") << bits << "\n";
  };
  // A Firecracker balloon: statistics, deflate on OOM and free page reporting (bit 5).
  features("0110010100000000000000000000000010000000");
  EXPECT_TRUE(FreePagesGoToTheHost(dir.string()));
  features("0110000100000000000000000000000010000000");  // the same without reporting
  EXPECT_FALSE(FreePagesGoToTheHost(dir.string()));
  features("0110");  // too short to say
  EXPECT_FALSE(FreePagesGoToTheHost(dir.string()));
  std::filesystem::remove_all(dir);
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

}  // namespace
}  // namespace hansa

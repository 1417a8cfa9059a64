// SharedBytes: bytes in memory or a read-only mapping of a file, whose pages Evict takes out of
// the process's resident memory while the bytes read as before.
#include "common/fileio/shared_bytes.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/fileio/fileio.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string Pattern(size_t n) {
  std::string out(n, '\0');
  uint32_t x = 12345;
  for (char& c : out) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return out;
}

// This process's resident pages, in bytes (/proc/self/statm's second field).
size_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  size_t total = 0, resident = 0;
  statm >> total >> resident;
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

class SharedBytesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("shared_bytes_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

TEST_F(SharedBytesTest, AStringIsOwnedAndSharedByCopies) {
  const SharedBytes none;
  EXPECT_FALSE(none.has_value());
  EXPECT_TRUE(none.empty());
  const std::string text = Pattern(5000);
  SharedBytes copy;
  {
    const SharedBytes bytes{std::string(text)};
    EXPECT_TRUE(bytes.has_value());
    EXPECT_FALSE(bytes.mapped());
    copy = bytes;
    bytes.Evict(0, bytes.size());  // nothing for memory: the bytes are the only copy
    EXPECT_EQ(bytes.view(), text);
  }
  EXPECT_EQ(copy.view(), text);  // the last copy keeps them
  EXPECT_EQ(copy.data(), copy.view().data());
}

TEST_F(SharedBytesTest, AMappedFileReadsAsTheFileAndEvictedPagesLeaveResidentMemory) {
  const std::string text = Pattern((size_t{48} << 20) + 123);  // a partial last page
  ASSERT_TRUE(WriteFileAtomically(Path("model"), text).ok());
  StatusOr<SharedBytes> mapped = SharedBytes::MapFile(Path("model"), text.size());
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_TRUE(mapped->mapped());
  ASSERT_EQ(mapped->size(), text.size());

  const size_t before = ResidentBytes();
  EXPECT_EQ(mapped->view(), text);  // every page read: resident now
  const size_t read = ResidentBytes();
  EXPECT_GE(read, before + (size_t{40} << 20)) << before << " -> " << read;
  mapped->EvictAll();
  const size_t evicted = ResidentBytes();
  EXPECT_LE(evicted + (size_t{40} << 20), read) << read << " -> " << evicted;
  EXPECT_EQ(mapped->view(), text);  // read from the file again

  // A range: its pages go, the rest stay resident, and all of it reads as before.
  mapped->EvictAll();
  const size_t prefix = size_t{32} << 20;
  EXPECT_EQ(mapped->view().substr(0, prefix), std::string_view(text).substr(0, prefix));
  const size_t half = ResidentBytes();
  mapped->Evict(1000, (size_t{16} << 20) + 1);
  const size_t quarter = ResidentBytes();
  EXPECT_LE(quarter + (size_t{15} << 20), half) << half << " -> " << quarter;
  EXPECT_GE(quarter + (size_t{24} << 20), half) << half << " -> " << quarter;  // not all 32
  EXPECT_EQ(mapped->view(), text);
}

TEST_F(SharedBytesTest, AMappingKeepsItsBytesWhenTheFileIsReplacedOrRemoved) {
  const std::string old_text = Pattern(100000);
  ASSERT_TRUE(WriteFileAtomically(Path("model"), old_text).ok());
  StatusOr<SharedBytes> mapped = SharedBytes::MapFile(Path("model"), old_text.size());
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  // As checkpoints are written: a temporary file renamed over the old one.
  ASSERT_TRUE(WriteFileAtomically(Path("model"), std::string(100000, 'x')).ok());
  mapped->EvictAll();
  EXPECT_EQ(mapped->view(), old_text);
  ASSERT_TRUE(fs::remove(Path("model")));
  mapped->EvictAll();
  EXPECT_EQ(mapped->view(), old_text);
}

TEST_F(SharedBytesTest, MappingRefusesAnAbsentOrOversizedFileAndMapsAnEmptyOne) {
  StatusOr<SharedBytes> absent = SharedBytes::MapFile(Path("absent"), 100);
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(absent.status().message()), HasSubstr(Path("absent")));

  ASSERT_TRUE(WriteFileAtomically(Path("big"), std::string(101, 'b')).ok());
  StatusOr<SharedBytes> big = SharedBytes::MapFile(Path("big"), 100);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(big.status().message()),
              HasSubstr(Path("big") + " is 101 bytes, more than the limit of 100"));

  ASSERT_TRUE(WriteFileAtomically(Path("empty"), "").ok());
  StatusOr<SharedBytes> empty = SharedBytes::MapFile(Path("empty"), 100);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->has_value());
  EXPECT_TRUE(empty->empty());
  EXPECT_TRUE(empty->view().empty());
  empty->EvictAll();

  StatusOr<SharedBytes> directory = SharedBytes::MapFile(dir_.string(), size_t{1} << 30);
  EXPECT_FALSE(directory.ok());
}

}  // namespace
}  // namespace hansa

#include "common/tensor/huge_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <new>

namespace hansa {

bool FreePagesGoToTheHost(const std::string& driver_dir) {
  constexpr size_t kReportingBit = 5;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(driver_dir, ec)) {
    if (entry.path().filename().string().rfind("virtio", 0) != 0) continue;
    std::ifstream in(entry.path() / "features");
    std::string bits;
    if (in >> bits && bits.size() > kReportingBit && bits[kReportingBit] == '1') return true;
  }
  return false;
}

void AdviseHugePages(void* data, size_t bytes) {
  static const bool host_takes_free_pages = FreePagesGoToTheHost();
  if (host_takes_free_pages) return;
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (bytes < 2 * kHuge) return;
  const uintptr_t start = reinterpret_cast<uintptr_t>(data);
  const uintptr_t begin = (start + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (start + bytes) & ~(kHuge - 1);
  if (end > begin)
    ::madvise(static_cast<char*>(data) + (begin - start), end - begin, MADV_HUGEPAGE);
#endif
}

size_t ReleaseConsumedPages(void* data, size_t begin, size_t end) {
  if (begin >= end) return 0;
  const auto base = reinterpret_cast<uintptr_t>(data);
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (base + page - 1) & ~(page - 1);  // the buffer's first whole page
  const uintptr_t from = std::max(first, (base + begin) & ~(page - 1));
  const uintptr_t to = (base + end) & ~(page - 1);
  if (to <= from) return 0;
  // Private anonymous memory (the heap's, or a large block's own mapping): the pages are
  // dropped now and read as zeros if touched again, as the allocator may when freeing.
  if (::madvise(static_cast<char*>(data) + (from - base), to - from, MADV_DONTNEED) != 0) return 0;
  return to - from;
}

bool PopulateForWriting(void* data, size_t begin, size_t end) {
  if (begin >= end) return true;
#ifdef MADV_POPULATE_WRITE
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  // Every page touched holds a byte of the buffer, so it is mapped, and populating a page
  // that is already present leaves it as it is.
  const uintptr_t first = reinterpret_cast<uintptr_t>(data) + begin;
  char* from = static_cast<char*>(data) + begin - (first & (page - 1));
  const size_t length = ((first + (end - begin) + page - 1) & ~(page - 1)) - (first & ~(page - 1));
  return ::madvise(from, length, MADV_POPULATE_WRITE) == 0;
#else
  return false;
#endif
}

ZeroedDoubles::ZeroedDoubles(size_t count)
    // calloc, not new: the kernel's fresh pages are the zeros, with no pass over them here.
    : data_(static_cast<double*>(std::calloc(count ? count : 1, sizeof(double)))),  // NOLINT
      size_(count) {
  if (!data_) throw std::bad_alloc();
  AdviseHugePages(data_.get(), count * sizeof(double));
}

}  // namespace hansa

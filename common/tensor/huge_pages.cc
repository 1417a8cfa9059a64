#include "common/tensor/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <new>

namespace hansa {

void AdviseHugePages(void* data, size_t bytes) {
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (bytes < 2 * kHuge) return;
  const uintptr_t start = reinterpret_cast<uintptr_t>(data);
  const uintptr_t begin = (start + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (start + bytes) & ~(kHuge - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

ZeroedDoubles::ZeroedDoubles(size_t count)
    : data_(static_cast<double*>(std::calloc(count ? count : 1, sizeof(double)))), size_(count) {
  if (!data_) throw std::bad_alloc();
  AdviseHugePages(data_.get(), count * sizeof(double));
}

}  // namespace hansa

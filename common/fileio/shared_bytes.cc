#include "common/fileio/shared_bytes.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/fileio/fileio.h"

namespace hansa {
namespace {

// A read-only shared mapping, unmapped with its last reference.
struct Mapping {
  void* address = nullptr;
  size_t bytes = 0;
  ~Mapping() {
    if (address != nullptr) ::munmap(address, bytes);
  }
};

}  // namespace

SharedBytes::SharedBytes(std::string bytes) {
  auto owned = std::make_shared<const std::string>(std::move(bytes));
  data_ = owned->data();
  size_ = owned->size();
  owner_ = std::move(owned);
}

StatusOr<SharedBytes> SharedBytes::MapFile(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("opening", path);
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  const int stat_errno = errno;
  auto mapping = std::make_shared<Mapping>();
  if (stat_ok && st.st_size > 0 && static_cast<uint64_t>(st.st_size) <= max_bytes) {
    mapping->bytes = static_cast<size_t>(st.st_size);
    void* address = ::mmap(nullptr, mapping->bytes, PROT_READ, MAP_SHARED, fd, 0);
    const int map_errno = errno;
    ::close(fd);  // the mapping keeps the file
    if (address == MAP_FAILED) {
      errno = map_errno;
      return ErrnoStatus("mapping", path);
    }
    mapping->address = address;
  } else {
    ::close(fd);
  }
  if (!stat_ok) {
    errno = stat_errno;
    return ErrnoStatus("stat of", path);
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is ", st.st_size, " bytes, more than the limit of ", max_bytes));
  }
  SharedBytes out;
  out.data_ = static_cast<const char*>(mapping->address);
  out.size_ = mapping->bytes;
  out.mapped_ = true;
  out.owner_ = std::move(mapping);
  return out;
}

void SharedBytes::Evict(size_t begin, size_t end) const {
  if (!mapped_ || begin >= end) return;
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  // The mapping starts on a page: every page holding a byte of [begin, end), which past the
  // file's last byte is still the mapping's own.
  const size_t from = begin & ~(page - 1);
  const size_t to = (end + page - 1) & ~(page - 1);
  // Advice on a shared file mapping: the contents stay the file's. A refusal leaves the pages
  // resident, which costs memory and nothing else.
  ::madvise(const_cast<char*>(data_) + from, to - from, MADV_DONTNEED);
}

}  // namespace hansa

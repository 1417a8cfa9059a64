#include "coordinator/spill_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace hansa {

StatusOr<std::unique_ptr<SpillFile>> SpillFile::Create(const std::string& dir,
                                                       const std::string& stem) {
  // mkostemp opens with O_CREAT | O_EXCL and mode 0600.
  std::string path = absl::StrCat(dir, "/", stem, "-XXXXXX");
  int fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) {
    return MarkStorageError(absl::InternalError(
        absl::StrCat("creating a spill file for ", stem, " in ", dir, ": ", std::strerror(errno))));
  }
  return std::unique_ptr<SpillFile>(new SpillFile(fd, path));
}

SpillFile::~SpillFile() {
  ::close(fd_);
  ::unlink(path_.c_str());
}

Status SpillFile::Append(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  size_t left = size;
  while (left > 0) {
    ssize_t n = ::pwrite(fd_, p, left, static_cast<off_t>(size_ + (size - left)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return MarkStorageError(absl::InternalError(
          absl::StrCat("writing spill file ", path_, ": ", std::strerror(errno))));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  size_ += size;
  return absl::OkStatus();
}

Status SpillFile::ReadAt(uint64_t offset, void* out, size_t size) const {
  char* p = static_cast<char*>(out);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd_, p + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::InternalError(absl::StrCat("reading spill file ", path_, " at ", offset + done,
                                              ": ", n < 0 ? std::strerror(errno) : "short read"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace hansa

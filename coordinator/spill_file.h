// An append-only scratch file that holds what an upload in progress has already folded into
// a running sum, so that the fold can be undone if the upload fails. Removed on destruction.
// Single owner; not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status/status.h"

namespace hansa {

class SpillFile {
 public:
  // A new file in `dir` whose name starts with `stem` (a site's name, say) and ends in a random
  // suffix, created exclusively (O_EXCL): two uploads never share a file, and a file left
  // behind by another upload is never truncated or reused.
  static StatusOr<std::unique_ptr<SpillFile>> Create(const std::string& dir,
                                                     const std::string& stem);
  ~SpillFile();
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;

  Status Append(const void* data, size_t size);
  // Reads [offset, offset + size); Internal error on a short read.
  Status ReadAt(uint64_t offset, void* out, size_t size) const;
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  SpillFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
  uint64_t size_ = 0;
};

}  // namespace hansa

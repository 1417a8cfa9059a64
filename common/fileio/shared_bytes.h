// Immutable bytes shared by reference: a string moved in, or a read-only mapping of a file.
// The coordinator serves its global model to every site from one SharedBytes (gRPC slices hold
// references to it while they are sent), and between rounds that is a mapping of the checkpoint
// file it wrote, so the model's bytes are held by the page cache rather than by the process: a
// mapping's pages count as the coordinator's resident memory only while they are touched, and
// Evict gives them back (they are read from the file again if touched later).
//
// A mapped file must not be truncated or rewritten in place while it is mapped (reading a page
// past its new end raises SIGBUS, as for any mapping). The coordinator maps only checkpoints,
// which it writes to a temporary file and renames and never changes afterwards; deleting or
// replacing the file by rename leaves the mapping as it was.
//
// Threading: const methods from any thread; copies share the bytes and may be used and
// destroyed on different threads. Evict may run while another thread reads the same range.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "common/status/status.h"

namespace hansa {

class SharedBytes {
 public:
  // No bytes: empty() and !has_value().
  SharedBytes() = default;
  // Owns `bytes` (moved, not copied).
  explicit SharedBytes(std::string bytes);
  // Maps the whole of the file at `path` read-only. NotFound when it is absent, InvalidArgument
  // when it is larger than `max_bytes`, the system's error otherwise (naming the file). An empty
  // file gives has_value() with no bytes.
  static StatusOr<SharedBytes> MapFile(const std::string& path, size_t max_bytes);

  bool has_value() const { return owner_ != nullptr; }
  const char* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {data_, size_}; }
  // True when the bytes are a mapping of a file.
  bool mapped() const { return mapped_; }

  // For a mapping: takes every page holding a byte of [begin, end) out of this process's
  // resident memory, including the partial pages at either end (nothing is lost: the bytes stay
  // as they were and are read from the file, its page cache, when touched again). Nothing for
  // bytes in memory. REQUIRES: begin <= end <= size().
  void Evict(size_t begin, size_t end) const;
  void EvictAll() const { Evict(0, size_); }

 private:
  std::shared_ptr<const void> owner_;  // the string or the mapping
  const char* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
};

}  // namespace hansa

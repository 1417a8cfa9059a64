// Large flat buffers (a model's payload, the coordinator's running sum) backed by 2 MiB pages
// where Linux's transparent huge pages allow it: a fresh gigabyte then costs 512 page faults
// instead of 262144, each a trap on the thread that first touches the page (in the transfer
// profiles, one of the largest items). Advice only: where it is not followed nothing changes.
// Not on a virtual machine that hands freed memory back to its host (virtio-balloon free page
// reporting, as Firecracker and many clouds do): the host takes back free 2 MiB blocks, so a
// fresh huge page is one the host must back again, page by page, and large transfers ran at
// half the speed with the advice than without it (transfer_bench, 1 GB).
// Faulting a fresh buffer's pages in for writing ahead of a pass that reads before it writes.
// And the other way: giving a consumed buffer's pages back before the buffer is freed.
//
// Threading: free functions; a ZeroedDoubles belongs to its owner.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <string>

namespace hansa {

// Advises MADV_HUGEPAGE for the 2 MiB-aligned interior of [data, data + bytes); does nothing
// for buffers under 4 MiB, off Linux, or where free pages go back to the host (below).
void AdviseHugePages(void* data, size_t bytes);

// True when a virtio-balloon device under `driver_dir` (sysfs: the driver's folder, whose
// virtio* entries are its devices) offers free page reporting (feature bit 5,
// VIRTIO_BALLOON_F_REPORTING, in the device's `features`: one '0' or '1' per bit).
bool FreePagesGoToTheHost(const std::string& driver_dir = "/sys/bus/virtio/drivers/virtio_balloon");

// Gives back to the system the whole memory pages of the buffer starting at `data` that lie
// in [data + begin, data + end) or start before `data + begin` on the page holding it, and
// hold no byte at or past `data + end` nor before `data`: their contents are lost (read as
// zeros if touched again). For a buffer of private anonymous memory (a vector's storage)
// being consumed in order, so that its resident memory shrinks as the consumer goes. Returns
// the bytes given back; 0 when the system refuses. REQUIRES: begin <= end, both
// within the buffer.
size_t ReleaseConsumedPages(void* data, size_t begin, size_t end);

// Faults in, writable, the memory pages holding bytes [begin, end) of the buffer at `data`
// (private anonymous memory, some of it perhaps never touched), ahead of a pass that reads
// each value and then writes it (a running sum: sum[i] += x). Without it a fresh page is
// faulted twice: the read maps the kernel's shared zero page, and the write replaces that,
// which flushes the address from every CPU's TLB by interrupting them (in the profile of a
// 1-site upload, 14 % of all time). Pages already present keep their contents. Advice only:
// false where the kernel does not offer it (Linux before 5.14) or refuses.
// REQUIRES: begin <= end, both within the buffer.
bool PopulateForWriting(void* data, size_t begin, size_t end);

// `count` doubles, all 0.0, whose pages the kernel zeroes when first touched (calloc: no pass
// over them now), advised as huge pages. Throws std::bad_alloc like std::vector when memory
// runs out.
class ZeroedDoubles {
 public:
  explicit ZeroedDoubles(size_t count);
  double* data() { return data_.get(); }
  const double* data() const { return data_.get(); }
  size_t size() const { return size_; }
  double operator[](size_t i) const { return data_[i]; }

 private:
  struct Free {
    void operator()(double* p) const { std::free(p); }  // NOLINT(cppcoreguidelines-no-malloc)
  };
  std::unique_ptr<double[], Free> data_;
  size_t size_;
};

}  // namespace hansa

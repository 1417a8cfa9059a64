// CUDA device discovery and RAII owners of CUDA resources (streams, events, device memory,
// pinned host memory), torch-free. Every CUDA call is checked and failures become a Status
// that names the call. When Hansa is built without CUDA (HANSA_HAVE_CUDA undefined) the same
// API exists and every operation returns Unavailable("no CUDA device ..."), so callers compile
// either way and choose the GPU or the CPU path at run time with CudaDeviceAvailable().
//
// Threading: the free functions are thread-safe. Each owner object belongs to one thread at a
// time (like std::vector); work queued on a CudaStream is ordered on that stream only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "common/status/status.h"

// Opaque CUDA handle types, compatible with cuda_runtime.h's cudaStream_t / cudaEvent_t.
struct CUstream_st;
struct CUevent_st;

namespace hansa {

// True when the CUDA runtime sees at least one device (false in a build without CUDA).
// The answer is computed once per process.
bool CudaDeviceAvailable();

struct CudaDeviceInfo {
  int ordinal = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  int multiprocessors = 0;
  int64_t sm_clock_khz = 0;      // peak SM clock
  int64_t memory_clock_khz = 0;  // peak memory clock
  int memory_bus_bits = 0;
  uint64_t global_memory_bytes = 0;
  // 2 * memory clock * bus width (double data rate), the datasheet-style peak in GB/s.
  double PeakMemoryGBps() const;
};

// Properties of device `ordinal`; Unavailable without a device.
StatusOr<CudaDeviceInfo> GetCudaDeviceInfo(int ordinal = 0);

// Makes device `ordinal` the calling thread's current device (where streams, memory and
// kernels of that thread go); Unavailable without a device.
Status UseCudaDevice(int ordinal);

// A CUDA stream (non-blocking with respect to the legacy default stream).
class CudaStream {
 public:
  static StatusOr<CudaStream> Create();
  CudaStream() = default;  // no stream; only to be assigned
  CudaStream(CudaStream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)) {}
  CudaStream& operator=(CudaStream&& o) noexcept;
  ~CudaStream();
  CUstream_st* get() const { return stream_; }
  // Waits for all work queued so far; reports an asynchronous kernel failure.
  Status Synchronize();

 private:
  explicit CudaStream(CUstream_st* s) : stream_(s) {}
  CUstream_st* stream_ = nullptr;
};

// A CUDA event with timing enabled.
class CudaEvent {
 public:
  static StatusOr<CudaEvent> Create();
  CudaEvent() = default;  // no event; only to be assigned
  CudaEvent(CudaEvent&& o) noexcept : event_(std::exchange(o.event_, nullptr)) {}
  CudaEvent& operator=(CudaEvent&& o) noexcept;
  ~CudaEvent();
  Status Record(CudaStream& stream);
  Status Synchronize();
  // Milliseconds between two recorded, completed events.
  static StatusOr<float> ElapsedMs(const CudaEvent& start, const CudaEvent& end);

 private:
  explicit CudaEvent(CUevent_st* e) : event_(e) {}
  CUevent_st* event_ = nullptr;
};

// `bytes` of device memory (cudaMalloc), freed on destruction. Untyped core of DeviceBuffer.
class DeviceMemory {
 public:
  static StatusOr<DeviceMemory> Allocate(size_t bytes);
  DeviceMemory() = default;
  DeviceMemory(DeviceMemory&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceMemory& operator=(DeviceMemory&& o) noexcept;
  ~DeviceMemory();
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  // Asynchronous copies on `stream`; `host` must stay valid until the stream reaches them
  // (pageable memory makes them synchronous).
  Status CopyFromHost(const void* host, size_t bytes, CudaStream& stream, size_t offset = 0);
  Status CopyToHost(void* host, size_t bytes, CudaStream& stream, size_t offset = 0) const;
  Status Zero(CudaStream& stream);

 private:
  DeviceMemory(void* p, size_t n) : ptr_(p), bytes_(n) {}
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// `count` elements of T on the device.
template <typename T>
class DeviceBuffer {
 public:
  static StatusOr<DeviceBuffer> Allocate(size_t count) {
    ASSIGN_OR_RETURN(DeviceMemory m, DeviceMemory::Allocate(count * sizeof(T)));
    return DeviceBuffer(std::move(m), count);
  }
  DeviceBuffer() = default;
  T* data() const { return static_cast<T*>(memory_.get()); }
  size_t size() const { return count_; }
  Status CopyFromHost(const T* host, size_t count, CudaStream& s, size_t offset = 0) {
    return memory_.CopyFromHost(host, count * sizeof(T), s, offset * sizeof(T));
  }
  Status CopyToHost(T* host, size_t count, CudaStream& s, size_t offset = 0) const {
    return memory_.CopyToHost(host, count * sizeof(T), s, offset * sizeof(T));
  }
  Status Zero(CudaStream& s) { return memory_.Zero(s); }

 private:
  DeviceBuffer(DeviceMemory m, size_t n) : memory_(std::move(m)), count_(n) {}
  DeviceMemory memory_;
  size_t count_ = 0;
};

// `bytes` of page-locked host memory (cudaHostAlloc), for copies that overlap with work.
class PinnedMemory {
 public:
  static StatusOr<PinnedMemory> Allocate(size_t bytes);
  PinnedMemory() = default;
  PinnedMemory(PinnedMemory&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  PinnedMemory& operator=(PinnedMemory&& o) noexcept;
  ~PinnedMemory();
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  PinnedMemory(void* p, size_t n) : ptr_(p), bytes_(n) {}
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

template <typename T>
class PinnedHostBuffer {
 public:
  static StatusOr<PinnedHostBuffer> Allocate(size_t count) {
    ASSIGN_OR_RETURN(PinnedMemory m, PinnedMemory::Allocate(count * sizeof(T)));
    return PinnedHostBuffer(std::move(m), count);
  }
  PinnedHostBuffer() = default;
  T* data() const { return static_cast<T*>(memory_.get()); }
  size_t size() const { return count_; }
  T& operator[](size_t i) const { return data()[i]; }

 private:
  PinnedHostBuffer(PinnedMemory m, size_t n) : memory_(std::move(m)), count_(n) {}
  PinnedMemory memory_;
  size_t count_ = 0;
};

// Device-to-device copy on `stream` (the bandwidth ceiling the kernel benchmark reports).
Status CopyDeviceToDevice(void* dst, const void* src, size_t bytes, CudaStream& stream);

}  // namespace hansa

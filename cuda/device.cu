#include <cuda_runtime.h>

#include "cuda/device.h"
#include "cuda/internal/cuda_check.h"

namespace hansa {

namespace cuda_internal {
Status NoDeviceError() {
  return absl::UnavailableError(
      "no CUDA device: the CUDA runtime sees no GPU (check the driver and "
      "CUDA_VISIBLE_DEVICES); the CPU path is used");
}
}  // namespace cuda_internal

using cuda_internal::NoDeviceError;

bool CudaDeviceAvailable() {
  static const bool available = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  }();
  return available;
}

double CudaDeviceInfo::PeakMemoryGBps() const {
  return 2.0 * static_cast<double>(memory_clock_khz) * 1e3 * (memory_bus_bits / 8.0) / 1e9;
}

StatusOr<CudaDeviceInfo> GetCudaDeviceInfo(int ordinal) {
  if (!CudaDeviceAvailable()) return NoDeviceError();
  cudaDeviceProp prop;
  HANSA_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, ordinal));
  CudaDeviceInfo info;
  info.ordinal = ordinal;
  info.name = prop.name;
  info.compute_major = prop.major;
  info.compute_minor = prop.minor;
  info.multiprocessors = prop.multiProcessorCount;
  info.global_memory_bytes = prop.totalGlobalMem;
  int value = 0;
  HANSA_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&value, cudaDevAttrClockRate, ordinal));
  info.sm_clock_khz = value;
  HANSA_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&value, cudaDevAttrMemoryClockRate, ordinal));
  info.memory_clock_khz = value;
  HANSA_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&value, cudaDevAttrGlobalMemoryBusWidth, ordinal));
  info.memory_bus_bits = value;
  return info;
}

Status UseCudaDevice(int ordinal) {
  if (!CudaDeviceAvailable()) return NoDeviceError();
  HANSA_CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal));
  return absl::OkStatus();
}

StatusOr<CudaStream> CudaStream::Create() {
  if (!CudaDeviceAvailable()) return NoDeviceError();
  cudaStream_t s = nullptr;
  HANSA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return CudaStream(s);
}

CudaStream& CudaStream::operator=(CudaStream&& o) noexcept {
  if (this != &o) {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    stream_ = std::exchange(o.stream_, nullptr);
  }
  return *this;
}

CudaStream::~CudaStream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

Status CudaStream::Synchronize() {
  HANSA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

StatusOr<CudaEvent> CudaEvent::Create() {
  if (!CudaDeviceAvailable()) return NoDeviceError();
  cudaEvent_t e = nullptr;
  HANSA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
  return CudaEvent(e);
}

CudaEvent& CudaEvent::operator=(CudaEvent&& o) noexcept {
  if (this != &o) {
    if (event_ != nullptr) cudaEventDestroy(event_);
    event_ = std::exchange(o.event_, nullptr);
  }
  return *this;
}

CudaEvent::~CudaEvent() {
  if (event_ != nullptr) cudaEventDestroy(event_);
}

Status CudaEvent::Record(CudaStream& stream) {
  HANSA_CUDA_RETURN_IF_ERROR(cudaEventRecord(event_, stream.get()));
  return absl::OkStatus();
}

Status CudaEvent::Synchronize() {
  HANSA_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(event_));
  return absl::OkStatus();
}

StatusOr<float> CudaEvent::ElapsedMs(const CudaEvent& start, const CudaEvent& end) {
  float ms = 0;
  HANSA_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start.event_, end.event_));
  return ms;
}

StatusOr<DeviceMemory> DeviceMemory::Allocate(size_t bytes) {
  if (!CudaDeviceAvailable()) return NoDeviceError();
  void* p = nullptr;
  if (bytes > 0) {
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
      return Annotate(cuda_internal::CudaError(err, "cudaMalloc"),
                      absl::StrCat("allocating ", bytes, " bytes of device memory"));
    }
  }
  return DeviceMemory(p, bytes);
}

DeviceMemory& DeviceMemory::operator=(DeviceMemory&& o) noexcept {
  if (this != &o) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

DeviceMemory::~DeviceMemory() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

namespace {
Status CheckSpan(size_t offset, size_t bytes, size_t size) {
  if (offset > size || bytes > size - offset) {
    return absl::OutOfRangeError(absl::StrCat("copy of ", bytes, " bytes at offset ", offset,
                                              " passes the end of a ", size,
                                              "-byte device buffer"));
  }
  return absl::OkStatus();
}
}  // namespace

Status DeviceMemory::CopyFromHost(const void* host, size_t bytes, CudaStream& stream,
                                  size_t offset) {
  RETURN_IF_ERROR(CheckSpan(offset, bytes, bytes_));
  if (bytes == 0) return absl::OkStatus();
  HANSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(static_cast<char*>(ptr_) + offset, host, bytes,
                                             cudaMemcpyHostToDevice, stream.get()));
  return absl::OkStatus();
}

Status DeviceMemory::CopyToHost(void* host, size_t bytes, CudaStream& stream, size_t offset) const {
  RETURN_IF_ERROR(CheckSpan(offset, bytes, bytes_));
  if (bytes == 0) return absl::OkStatus();
  HANSA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host, static_cast<const char*>(ptr_) + offset, bytes,
                                             cudaMemcpyDeviceToHost, stream.get()));
  return absl::OkStatus();
}

Status DeviceMemory::Zero(CudaStream& stream) {
  if (bytes_ == 0) return absl::OkStatus();
  HANSA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(ptr_, 0, bytes_, stream.get()));
  return absl::OkStatus();
}

StatusOr<PinnedMemory> PinnedMemory::Allocate(size_t bytes) {
  if (!CudaDeviceAvailable()) return NoDeviceError();
  void* p = nullptr;
  if (bytes > 0) {
    cudaError_t err = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
    if (err != cudaSuccess) {
      return Annotate(cuda_internal::CudaError(err, "cudaHostAlloc"),
                      absl::StrCat("allocating ", bytes, " bytes of pinned host memory"));
    }
  }
  return PinnedMemory(p, bytes);
}

PinnedMemory& PinnedMemory::operator=(PinnedMemory&& o) noexcept {
  if (this != &o) {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

PinnedMemory::~PinnedMemory() {
  if (ptr_ != nullptr) cudaFreeHost(ptr_);
}

Status CopyDeviceToDevice(void* dst, const void* src, size_t bytes, CudaStream& stream) {
  if (bytes == 0) return absl::OkStatus();
  HANSA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream.get()));
  return absl::OkStatus();
}

}  // namespace hansa

// The API of cuda/device.h and cuda/mask_kernels.h in a build without CUDA: nothing is
// available, every operation says so, and callers take the CPU path.
#include "cuda/device.h"
#include "cuda/mask_kernels.h"
#include "cuda/reference.h"

namespace hansa {

namespace {
Status NoDevice() {
  return absl::UnavailableError(
      "no CUDA device: Hansa was built without CUDA (nvcc was not found when configuring); "
      "the CPU path is used");
}
}  // namespace

bool CudaDeviceAvailable() { return false; }
double CudaDeviceInfo::PeakMemoryGBps() const {
  return 2.0 * static_cast<double>(memory_clock_khz) * 1e3 * (memory_bus_bits / 8.0) / 1e9;
}
StatusOr<CudaDeviceInfo> GetCudaDeviceInfo(int) { return NoDevice(); }
Status UseCudaDevice(int) { return NoDevice(); }

StatusOr<CudaStream> CudaStream::Create() { return NoDevice(); }
CudaStream& CudaStream::operator=(CudaStream&& o) noexcept {
  stream_ = std::exchange(o.stream_, nullptr);
  return *this;
}
CudaStream::~CudaStream() = default;
Status CudaStream::Synchronize() { return NoDevice(); }

StatusOr<CudaEvent> CudaEvent::Create() { return NoDevice(); }
CudaEvent& CudaEvent::operator=(CudaEvent&& o) noexcept {
  event_ = std::exchange(o.event_, nullptr);
  return *this;
}
CudaEvent::~CudaEvent() = default;
Status CudaEvent::Record(CudaStream&) { return NoDevice(); }
Status CudaEvent::Synchronize() { return NoDevice(); }
StatusOr<float> CudaEvent::ElapsedMs(const CudaEvent&, const CudaEvent&) { return NoDevice(); }

StatusOr<DeviceMemory> DeviceMemory::Allocate(size_t) { return NoDevice(); }
DeviceMemory& DeviceMemory::operator=(DeviceMemory&& o) noexcept {
  ptr_ = std::exchange(o.ptr_, nullptr);
  bytes_ = std::exchange(o.bytes_, 0);
  return *this;
}
DeviceMemory::~DeviceMemory() = default;
Status DeviceMemory::CopyFromHost(const void*, size_t, CudaStream&, size_t) { return NoDevice(); }
Status DeviceMemory::CopyToHost(void*, size_t, CudaStream&, size_t) const { return NoDevice(); }
Status DeviceMemory::Zero(CudaStream&) { return NoDevice(); }

StatusOr<PinnedMemory> PinnedMemory::Allocate(size_t) { return NoDevice(); }
PinnedMemory& PinnedMemory::operator=(PinnedMemory&& o) noexcept {
  ptr_ = std::exchange(o.ptr_, nullptr);
  bytes_ = std::exchange(o.bytes_, 0);
  return *this;
}
PinnedMemory::~PinnedMemory() = default;

Status CopyDeviceToDevice(void*, const void*, size_t, CudaStream&) { return NoDevice(); }

Status ApplyMasks(const std::vector<MaskStream>&, uint64_t element_offset, uint32_t*, size_t count,
                  CudaStream&) {
  RETURN_IF_ERROR(CheckMaskRange(element_offset, count, 4));
  return NoDevice();
}
Status ApplyMasks(const std::vector<MaskStream>&, uint64_t element_offset, uint64_t*, size_t count,
                  CudaStream&) {
  RETURN_IF_ERROR(CheckMaskRange(element_offset, count, 8));
  return NoDevice();
}
Status SumInto(uint32_t*, const std::vector<const uint32_t*>&, size_t, CudaStream&) {
  return NoDevice();
}
Status SumInto(uint64_t*, const std::vector<const uint64_t*>&, size_t, CudaStream&) {
  return NoDevice();
}
Status Quantize(const float*, size_t, const QuantizeParams& params, uint32_t*, CudaStream&) {
  RETURN_IF_ERROR(MakeQuantizeConstants(params).status());
  return NoDevice();
}
Status Quantize(const float*, size_t, const QuantizeParams& params, uint64_t*, CudaStream&) {
  RETURN_IF_ERROR(MakeQuantizeConstants(params).status());
  return NoDevice();
}
StatusOr<double> L2Norm(const float*, size_t, CudaStream&) { return NoDevice(); }

}  // namespace hansa

// Converts CUDA runtime errors into Status naming the call. Only for .cu files of cuda/.
#pragma once

#include <cuda_runtime.h>

#include "common/status/status.h"

namespace hansa {
namespace cuda_internal {

inline Status CudaError(cudaError_t err, const char* call) {
  return absl::InternalError(
      absl::StrCat(call, " failed: ", cudaGetErrorString(err), " (", cudaGetErrorName(err), ")"));
}

// Unavailable, for every entry point when the process sees no device.
Status NoDeviceError();

}  // namespace cuda_internal
}  // namespace hansa

// Returns a Status naming `call` when the CUDA runtime call fails.
#define HANSA_CUDA_RETURN_IF_ERROR(call)                                \
  do {                                                                  \
    cudaError_t hansa_cuda_err_ = (call);                               \
    if (hansa_cuda_err_ != cudaSuccess) {                               \
      return ::hansa::cuda_internal::CudaError(hansa_cuda_err_, #call); \
    }                                                                   \
  } while (0)

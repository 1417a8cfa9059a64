// Kernels of cuda/mask_kernels.h. Each CUDA block owns tiles of kTileBlocks consecutive ChaCha20
// blocks: every thread computes one 64-byte block into shared memory, then the threads read
// the tile back in element order so that global loads and stores are coalesced.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "cuda/internal/cuda_check.h"
#include "cuda/mask_kernels.h"
#include "cuda/mask_math.h"
#include "cuda/reference.h"

namespace hansa {

using cuda_internal::NoDeviceError;
using namespace cuda_math;  // NOLINT: the kernels' vocabulary

namespace {

constexpr int kMaxStreamsPerLaunch = 16;
constexpr uint64_t kMaxGrid = 65535;
constexpr int kSumThreads = 256;

struct KeyPack {
  ChaChaKey keys[kMaxStreamsPerLaunch];
  uint32_t subtract_bits;  // bit s set: stream s is subtracted
  int count;
};

template <typename W>
struct InputPack {
  const W* inputs[kMaxStreamsPerLaunch];
  int count;
};

// Fills the tile's shared keystream: thread t writes block `first_block + t`.
__device__ __forceinline__ void FillTile(const ChaChaKey& key, uint64_t first_block,
                                         uint32_t* tile) {
  uint32_t block[kBlockWords];
  ChaCha20Block(key, static_cast<uint32_t>(first_block + threadIdx.x), block);
#pragma unroll
  for (int k = 0; k < kBlockWords; ++k) tile[threadIdx.x * (kBlockWords + 1) + k] = block[k];
}

template <typename W>
__global__ void __launch_bounds__(kTileBlocks)
    MaskKernel(W* data, uint64_t count, uint64_t element_offset, uint64_t first_block,
               uint64_t num_tiles, KeyPack pack) {
  __shared__ uint32_t tile[kTileBlocks * (kBlockWords + 1)];
  constexpr int kWordsPerElement = sizeof(W) / 4;
  constexpr int kElementsPerThread = kTileWords / kWordsPerElement / kTileBlocks;
  const int t = threadIdx.x;
  for (uint64_t i = blockIdx.x; i < num_tiles; i += gridDim.x) {
    const uint64_t tile_block = first_block + i * kTileBlocks;
    const uint64_t tile_element = tile_block * (kBlockWords / kWordsPerElement);
    W acc[kElementsPerThread];
#pragma unroll
    for (int r = 0; r < kElementsPerThread; ++r) acc[r] = 0;
    for (int s = 0; s < pack.count; ++s) {
      __syncthreads();  // the previous stream's readers are done with the tile
      FillTile(pack.keys[s], tile_block, tile);
      __syncthreads();
      const bool subtract = (pack.subtract_bits >> s) & 1u;
#pragma unroll
      for (int r = 0; r < kElementsPerThread; ++r) {
        const int e = t + r * kTileBlocks;
        const uint32_t lo = tile[TileSlot(e * kWordsPerElement)];
        const uint32_t hi = kWordsPerElement == 2 ? tile[TileSlot(e * kWordsPerElement + 1)] : 0;
        const W m = MaskWord<W>(lo, hi);
        acc[r] = subtract ? W(acc[r] - m) : W(acc[r] + m);
      }
    }
#pragma unroll
    for (int r = 0; r < kElementsPerThread; ++r) {
      const uint64_t g = tile_element + t + r * kTileBlocks;
      if (g >= element_offset && g - element_offset < count) data[g - element_offset] += acc[r];
    }
  }
}

template <typename W>
__global__ void SumKernel(W* acc, uint64_t count, InputPack<W> pack) {
  for (uint64_t i = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x; i < count;
       i += uint64_t{gridDim.x} * blockDim.x) {
    W s = acc[i];
    for (int k = 0; k < pack.count; ++k) s += pack.inputs[k][i];
    acc[i] = s;
  }
}

template <typename W>
__global__ void __launch_bounds__(kTileBlocks)
    QuantizeKernel(const float* values, uint64_t count, W* out, QuantizeConstants q, ChaChaKey key,
                   uint64_t word_offset, uint64_t num_tiles, unsigned long long* first_nan) {
  __shared__ uint32_t tile[kTileBlocks * (kBlockWords + 1)];
  const uint64_t first_block = word_offset / kBlockWords;
  const int t = threadIdx.x;
  for (uint64_t i = blockIdx.x; i < num_tiles; i += gridDim.x) {
    const uint64_t tile_block = first_block + i * kTileBlocks;
    __syncthreads();
    FillTile(key, tile_block, tile);
    __syncthreads();
#pragma unroll 4
    for (int r = 0; r < kBlockWords; ++r) {
      const int w = t + r * kTileBlocks;
      const uint64_t g = tile_block * kBlockWords + w;
      if (g < word_offset || g - word_offset >= count) continue;
      const uint64_t idx = g - word_offset;
      const float v = values[idx];
      if (isnan(v)) {
        atomicMin(first_nan, static_cast<unsigned long long>(idx));
        continue;
      }
      out[idx] = static_cast<W>(QuantizeValue(v, q, tile[TileSlot(w)]));
    }
  }
}

// One reduction pass: block b reduces tile b of kNormTile inputs (squared when kSquare).
template <typename T, bool kSquare>
__global__ void __launch_bounds__(kNormThreads)
    ReduceKernel(const T* in, uint64_t count, double* out, uint64_t num_tiles) {
  __shared__ double lanes[kNormThreads];
  const int j = threadIdx.x;
  for (uint64_t b = blockIdx.x; b < num_tiles; b += gridDim.x) {
    const uint64_t base = b * kNormTile;
    double acc = 0.0;
#pragma unroll
    for (int r = 0; r < kNormItems; ++r) {
      const uint64_t idx = base + j + uint64_t{kNormThreads} * r;
      if (idx < count) {
        double v;
        if constexpr (kSquare) {
          v = Square(in[idx]);
        } else {
          v = in[idx];
        }
        acc = AddRn(acc, v);
      }
    }
    __syncthreads();
    lanes[j] = acc;
    __syncthreads();
    for (int s = kNormThreads / 2; s > 0; s /= 2) {
      if (j < s) lanes[j] = AddRn(lanes[j], lanes[j + s]);
      __syncthreads();
    }
    if (j == 0) out[b] = lanes[0];
  }
}

unsigned GridFor(uint64_t tiles) { return static_cast<unsigned>(std::min(tiles, kMaxGrid)); }

Status LaunchStatus(const char* kernel) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return cuda_internal::CudaError(err, kernel);
  return absl::OkStatus();
}

template <typename W>
Status ApplyImpl(const std::vector<MaskStream>& streams, uint64_t element_offset, W* data,
                 size_t count, CudaStream& stream) {
  RETURN_IF_ERROR(CheckMaskRange(element_offset, count, sizeof(W)));
  for (const MaskStream& s : streams) {
    if (s.key == nullptr) return absl::InvalidArgumentError("mask stream has no key");
    if (s.key->size() != kChaCha20KeySize) RETURN_IF_ERROR(ToChaChaKey(*s.key, s.nonce).status());
  }
  if (!CudaDeviceAvailable()) return NoDeviceError();
  if (count == 0 || streams.empty()) return absl::OkStatus();
  const uint64_t first_block = element_offset * sizeof(W) / kChaCha20BlockSize;
  const uint64_t last_block = ((element_offset + count) * sizeof(W) - 1) / kChaCha20BlockSize;
  const uint64_t tiles = (last_block - first_block) / kTileBlocks + 1;
  for (size_t start = 0; start < streams.size(); start += kMaxStreamsPerLaunch) {
    KeyPack pack{};
    pack.count = static_cast<int>(std::min<size_t>(kMaxStreamsPerLaunch, streams.size() - start));
    for (int s = 0; s < pack.count; ++s) {
      const MaskStream& m = streams[start + s];
      ASSIGN_OR_RETURN(pack.keys[s], ToChaChaKey(*m.key, m.nonce));
      if (m.op == MaskOp::kSubtract) pack.subtract_bits |= 1u << s;
    }
    MaskKernel<W><<<GridFor(tiles), kTileBlocks, 0, stream.get()>>>(data, count, element_offset,
                                                                    first_block, tiles, pack);
    SecureWipe(&pack, sizeof(pack));  // launch parameters are copied at the launch
    RETURN_IF_ERROR(LaunchStatus("MaskKernel launch"));
  }
  return absl::OkStatus();
}

template <typename W>
Status SumImpl(W* acc, const std::vector<const W*>& inputs, size_t count, CudaStream& stream) {
  if (!CudaDeviceAvailable()) return NoDeviceError();
  if (count == 0) return absl::OkStatus();
  const uint64_t blocks = (count + kSumThreads - 1) / kSumThreads;
  for (size_t start = 0; start < inputs.size(); start += kMaxStreamsPerLaunch) {
    InputPack<W> pack{};
    pack.count = static_cast<int>(std::min<size_t>(kMaxStreamsPerLaunch, inputs.size() - start));
    for (int k = 0; k < pack.count; ++k) pack.inputs[k] = inputs[start + k];
    SumKernel<W><<<GridFor(blocks), kSumThreads, 0, stream.get()>>>(acc, count, pack);
    RETURN_IF_ERROR(LaunchStatus("SumKernel launch"));
  }
  return absl::OkStatus();
}

template <typename W>
Status QuantizeImpl(const float* values, size_t count, const QuantizeParams& params, W* out,
                    CudaStream& stream) {
  ASSIGN_OR_RETURN(QuantizeConstants q, MakeQuantizeConstants(params));
  RETURN_IF_ERROR(CheckMaskRange(params.random_word_offset, count, 4));
  if (!CudaDeviceAvailable()) return NoDeviceError();
  if (count == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(DeviceBuffer<unsigned long long> first_nan,
                   DeviceBuffer<unsigned long long>::Allocate(1));
  const unsigned long long none = ~0ull;
  RETURN_IF_ERROR(first_nan.CopyFromHost(&none, 1, stream));
  ASSIGN_OR_RETURN(ChaChaKey key, ToChaChaKey(*params.seed, ChaCha20Nonce{}));
  const uint64_t first_block = params.random_word_offset / kBlockWords;
  const uint64_t last_block = (params.random_word_offset + count - 1) / kBlockWords;
  const uint64_t tiles = (last_block - first_block) / kTileBlocks + 1;
  QuantizeKernel<W><<<GridFor(tiles), kTileBlocks, 0, stream.get()>>>(
      values, count, out, q, key, params.random_word_offset, tiles, first_nan.data());
  SecureWipe(&key, sizeof(key));
  RETURN_IF_ERROR(LaunchStatus("QuantizeKernel launch"));
  unsigned long long nan_index = none;
  RETURN_IF_ERROR(first_nan.CopyToHost(&nan_index, 1, stream));
  RETURN_IF_ERROR(stream.Synchronize());
  if (nan_index != none) {
    return absl::InvalidArgumentError(
        absl::StrCat("update value ", nan_index, " is NaN; training diverged"));
  }
  return absl::OkStatus();
}

uint64_t NormTiles(uint64_t n) { return (n + kNormTile - 1) / kNormTile; }

}  // namespace

Status ApplyMasks(const std::vector<MaskStream>& streams, uint64_t element_offset,
                  uint32_t* device_data, size_t count, CudaStream& stream) {
  return ApplyImpl(streams, element_offset, device_data, count, stream);
}

Status ApplyMasks(const std::vector<MaskStream>& streams, uint64_t element_offset,
                  uint64_t* device_data, size_t count, CudaStream& stream) {
  return ApplyImpl(streams, element_offset, device_data, count, stream);
}

Status SumInto(uint32_t* device_acc, const std::vector<const uint32_t*>& device_inputs,
               size_t count, CudaStream& stream) {
  return SumImpl(device_acc, device_inputs, count, stream);
}

Status SumInto(uint64_t* device_acc, const std::vector<const uint64_t*>& device_inputs,
               size_t count, CudaStream& stream) {
  return SumImpl(device_acc, device_inputs, count, stream);
}

Status Quantize(const float* device_values, size_t count, const QuantizeParams& params,
                uint32_t* device_out, CudaStream& stream) {
  return QuantizeImpl(device_values, count, params, device_out, stream);
}

Status Quantize(const float* device_values, size_t count, const QuantizeParams& params,
                uint64_t* device_out, CudaStream& stream) {
  return QuantizeImpl(device_values, count, params, device_out, stream);
}

StatusOr<double> L2Norm(const float* device_values, size_t count, CudaStream& stream) {
  if (!CudaDeviceAvailable()) return NoDeviceError();
  if (count == 0) return 0.0;
  uint64_t n = NormTiles(count);
  ASSIGN_OR_RETURN(DeviceBuffer<double> a, DeviceBuffer<double>::Allocate(n));
  ASSIGN_OR_RETURN(DeviceBuffer<double> b, DeviceBuffer<double>::Allocate(NormTiles(n)));
  ReduceKernel<float, true>
      <<<GridFor(n), kNormThreads, 0, stream.get()>>>(device_values, count, a.data(), n);
  RETURN_IF_ERROR(LaunchStatus("ReduceKernel<float> launch"));
  double* in = a.data();
  double* out = b.data();
  while (n > 1) {
    const uint64_t tiles = NormTiles(n);
    ReduceKernel<double, false>
        <<<GridFor(tiles), kNormThreads, 0, stream.get()>>>(in, n, out, tiles);
    RETURN_IF_ERROR(LaunchStatus("ReduceKernel<double> launch"));
    std::swap(in, out);
    n = tiles;
  }
  double sum = 0;
  HANSA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(&sum, in, sizeof(sum), cudaMemcpyDeviceToHost, stream.get()));
  RETURN_IF_ERROR(stream.Synchronize());
  return std::sqrt(sum);
}

}  // namespace hansa

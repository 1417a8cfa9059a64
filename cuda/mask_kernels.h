// GPU kernels of secure aggregation, torch-free: ChaCha20 mask expansion fused with the masking
// add (site) or unmasking subtract (coordinator), the modular sum of many masked vectors,
// stochastic-rounding quantization into the ring, and an L2 norm with a deterministic reduction.
//
// Each function is bit-identical to the CPU path: ApplyMasks to ChaCha20Prg::ApplyMask
// (common/crypto/chacha20.h), Quantize to Encoder::EncodeValues (common/secagg/encoding.h) given
// the same rounding seed and random-word offset, L2Norm to ReferenceL2Norm (cuda/reference.h).
// Callers pick this path when CudaDeviceAvailable() and the CPU path otherwise.
//
// Pointers named device_* are device memory. Functions enqueue on `stream` and return without
// waiting, except where a result must be read back (Quantize's NaN check, L2Norm). Launch
// errors are reported at once; faults during execution at the next stream synchronisation.
// Without CUDA every function returns Unavailable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/crypto/chacha20.h"
#include "common/crypto/secret.h"
#include "common/status/status.h"
#include "cuda/device.h"

namespace hansa {

// device_data[i] = device_data[i] +/- sum over streams of word(element_offset + i), for
// i < count, mod 2^32 or 2^64. One read and write of the data per 16 streams. InvalidArgument
// for a key that is not 32 bytes or a range past the 2^32 blocks of a stream (as the CPU path).
Status ApplyMasks(const std::vector<MaskStream>& streams, uint64_t element_offset,
                  uint32_t* device_data, size_t count, CudaStream& stream);
Status ApplyMasks(const std::vector<MaskStream>& streams, uint64_t element_offset,
                  uint64_t* device_data, size_t count, CudaStream& stream);

// device_acc[i] += sum_k device_inputs[k][i] (mod 2^32 / 2^64) for i < count.
Status SumInto(uint32_t* device_acc, const std::vector<const uint32_t*>& device_inputs,
               size_t count, CudaStream& stream);
Status SumInto(uint64_t* device_acc, const std::vector<const uint64_t*>& device_inputs,
               size_t count, CudaStream& stream);

// Stochastic-rounding quantization of Encoder (values, not the weight element).
struct QuantizeParams {
  double clip = 1.0;                  // c > 0
  int bits = 16;                      // b in 1..62
  double weight = 1.0;                // w in [0, 1]
  const SecretBytes* seed = nullptr;  // the encoder's 32-byte rounding seed; not owned
  // Index of the first 32-bit rounding word: the number of words the encoder has consumed
  // before these values (0 for the first chunk of Encoder::Encode; prior chunks' counts after).
  uint64_t random_word_offset = 0;
};

// device_out[i] = quantized device_values[i] for i < count. Waits for the stream to check for
// NaN: InvalidArgument "update value <i> is NaN; training diverged" for the first one, as the
// CPU encoder. InvalidArgument for bad parameters.
Status Quantize(const float* device_values, size_t count, const QuantizeParams& params,
                uint32_t* device_out, CudaStream& stream);
Status Quantize(const float* device_values, size_t count, const QuantizeParams& params,
                uint64_t* device_out, CudaStream& stream);

// sqrt(sum of squares) of device_values[0..count), summed in double in the fixed order of
// ReferenceL2Norm. Waits for the stream.
StatusOr<double> L2Norm(const float* device_values, size_t count, CudaStream& stream);

}  // namespace hansa

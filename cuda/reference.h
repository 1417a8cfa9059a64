// The kernels' arithmetic run on the CPU: the same functions of cuda/mask_math.h compiled for
// the host. Always built (with or without CUDA). Tests check these against common/crypto and
// common/secagg, and the GPU results against these, so the GPU path equals the CPU path.
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/status/status.h"
#include "cuda/mask_kernels.h"
#include "cuda/mask_math.h"

namespace hansa {

// Key words of a 32-byte key and nonce; InvalidArgument for another key size.
StatusOr<cuda_math::ChaChaKey> ToChaChaKey(const SecretBytes& key, const ChaCha20Nonce& nonce);

// InvalidArgument when [element_offset, +count) of `word_size`-byte elements passes the end of
// one ChaCha20 stream (2^38 bytes), with the CPU path's message.
Status CheckMaskRange(uint64_t element_offset, size_t count, size_t word_size);

// As ApplyMasks, on host memory.
Status ReferenceApplyMasks(const std::vector<MaskStream>& streams, uint64_t element_offset,
                           uint32_t* data, size_t count);
Status ReferenceApplyMasks(const std::vector<MaskStream>& streams, uint64_t element_offset,
                           uint64_t* data, size_t count);

// InvalidArgument for parameters the encoder would refuse; fills the kernel constants.
StatusOr<cuda_math::QuantizeConstants> MakeQuantizeConstants(const QuantizeParams& params);

// As Quantize, on host memory.
Status ReferenceQuantize(const float* values, size_t count, const QuantizeParams& params,
                         uint32_t* out);
Status ReferenceQuantize(const float* values, size_t count, const QuantizeParams& params,
                         uint64_t* out);

// The L2 norm in the kernels' order: values are squared in double (exact), each tile of
// kNormTile values is reduced by kNormThreads lanes (lane j adds values j, j + 256, ... in
// order, then TreeSum), and the tile sums are reduced the same way until one remains.
double ReferenceL2Norm(const float* values, size_t count);

// One reduction pass over doubles (the kernels' second and later stages); exposed for tests.
std::vector<double> ReferenceReducePass(const double* values, size_t count);

}  // namespace hansa

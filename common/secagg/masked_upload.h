// A site's masked input as it goes on the wire: the update encoded into the ring (clipped,
// stochastically rounded, the example weight appended as the last element) and masked by the
// site's ClientSession, cut into serialized MaskedInputChunks. Shared by hansa-client and the
// benchmarks, so both upload exactly what a deployment uploads.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "common/secagg/client.h"
#include "common/secagg/encoding.h"
#include "common/status/status.h"

namespace hansa {

// What serialization adds to a MaskedInputChunk's ring words, at most: a wire chunk of
// (chunk_bytes - kMaskedChunkOverhead) / word_size words stays within chunk_bytes.
inline constexpr size_t kMaskedChunkOverhead = 64;

// The chunks of `values` (n floats) with `weight` in [0, 1], at most `values_per_chunk` ring
// elements each, in order. `session` must be past OnShareDelivery; `encoder` must use the
// session's ring. The upload header carries the digest of all chunks, so they are made before
// the first is sent (O(model) memory, as a plaintext payload is). `consumed`, when set, is
// told after each chunk how many values are encoded so far (in order: the caller may give
// their memory back).
StatusOr<std::vector<std::string>> MaskUpdate(
    ClientSession& session, Encoder& encoder, RingWidth ring, const float* values, size_t n,
    double weight, size_t values_per_chunk,
    const std::function<void(size_t values_done)>& consumed = nullptr);

}  // namespace hansa

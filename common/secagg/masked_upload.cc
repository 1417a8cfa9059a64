#include "common/secagg/masked_upload.h"

#include <algorithm>

namespace hansa {

StatusOr<std::vector<std::string>> MaskUpdate(ClientSession& session, Encoder& encoder,
                                              RingWidth ring, const float* values, size_t n,
                                              double weight, size_t values_per_chunk,
                                              const std::function<void(size_t)>& consumed) {
  if (values_per_chunk == 0) return absl::InvalidArgumentError("chunks of 0 values");
  std::vector<std::string> chunks;
  for (size_t off = 0; off <= n; off += values_per_chunk) {
    const size_t count = std::min(values_per_chunk, n + 1 - off);
    const size_t value_count = off + count > n ? n - off : count;
    RingVector words = RingVector::Zeros(ring, count);
    if (ring == RingWidth::k32) {
      RETURN_IF_ERROR(encoder.EncodeValues(values + off, value_count, weight, words.w32.data()));
    } else {
      RETURN_IF_ERROR(encoder.EncodeValues(values + off, value_count, weight, words.w64.data()));
    }
    if (value_count < count) {  // the weight element closes the vector
      ASSIGN_OR_RETURN(uint64_t w, encoder.EncodeWeight(weight));
      if (ring == RingWidth::k32) {
        words.w32[value_count] = static_cast<uint32_t>(w);
      } else {
        words.w64[value_count] = w;
      }
    }
    ASSIGN_OR_RETURN(MaskedInputChunk masked, session.MaskChunk(off, std::move(words)));
    chunks.push_back(masked.Serialize());
    if (consumed) consumed(off + value_count);
  }
  return chunks;
}

}  // namespace hansa

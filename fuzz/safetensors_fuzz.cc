// A model file or upload (common/tensor/safetensors.h): whole, and streamed in pieces whose
// sizes the input's first byte chooses. Both decoders agree on what they accept.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/tensor/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t piece = 1 + data[0] % 64;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  hansa::SafetensorsLimits limits;
  limits.max_data_bytes = uint64_t{1} << 20;
  auto whole = hansa::DecodeSafetensors(bytes, nullptr, limits);
  int64_t elements = 0;
  hansa::SafetensorsStreamDecoder stream(
      [](const hansa::ModelLayout&, const hansa::TensorMetadata&) { return absl::OkStatus(); },
      [&](int64_t first, const uint8_t*, size_t count) {
        if (first != elements) abort();  // whole elements, in order
        elements += static_cast<int64_t>(count);
        return absl::OkStatus();
      },
      limits);
  absl::Status fed = absl::OkStatus();
  for (size_t at = 0; at < bytes.size() && fed.ok(); at += piece) {
    fed = stream.Feed(bytes.substr(at, piece));
  }
  const bool streamed = fed.ok() && stream.Finish().ok();
  if (whole.ok() && !streamed) abort();
  if (whole.ok() && elements != static_cast<int64_t>(whole->values.size())) abort();
  return 0;
}

// ParseIdx (client/data.h) on any bytes, raw or gzip: an error or an array whose size is the
// product of its dimensions, within a small cap.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "client/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto idx = hansa::ParseIdx(std::string_view(reinterpret_cast<const char*>(data), size),
                             "fuzz.idx", size_t{1} << 20);
  if (!idx.ok()) return 0;
  size_t n = 1;
  for (int64_t d : idx->dims) n *= static_cast<size_t>(d);
  if (n != idx->data.size()) abort();
  return 0;
}

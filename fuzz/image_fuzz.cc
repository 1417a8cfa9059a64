// DecodeGreyImage (client/image_folder.h): PNG or JPEG bytes through libpng/libjpeg-turbo and
// the resizer: an error or exactly rows x cols pixels.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "client/image_folder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto pixels = hansa::DecodeGreyImage(bytes, "fuzz.img", 28, 28);
  if (pixels.ok() && pixels->size() != 28 * 28) abort();
  return 0;
}

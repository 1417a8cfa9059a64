#include "common/crypto/random.h"

#include <openssl/err.h>
#include <openssl/rand.h>

#include <climits>

#include "common/status/check.h"

namespace hansa {

Status RandBytes(void* out, size_t size) {
  auto* p = static_cast<unsigned char*>(out);
  while (size > 0) {
    int n = size > INT_MAX ? INT_MAX : static_cast<int>(size);
    if (RAND_bytes(p, n) != 1) {
      return absl::InternalError(absl::StrCat("RAND_bytes failed: ", ERR_get_error()));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

uint64_t RandUint64() {
  uint64_t v = 0;
  HANSA_CHECK(RandBytes(&v, sizeof(v)).ok());
  return v;
}

}  // namespace hansa

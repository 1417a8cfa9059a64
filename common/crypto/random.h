// Cryptographic randomness (OpenSSL RAND_bytes). All keys, nonces, masks seeds, Shamir
// coefficients and privacy noise come from here.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/status/status.h"

namespace hansa {

// Fills `out` with `size` random bytes; Internal error if the OpenSSL DRBG fails.
Status RandBytes(void* out, size_t size);

// A uniformly random 64-bit value; HANSA_CHECKs that the DRBG works (it cannot fail once
// seeded on Linux).
uint64_t RandUint64();

}  // namespace hansa

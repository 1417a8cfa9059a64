// HKDF-SHA256 (RFC 5869), extract-then-expand, through OpenSSL EVP_KDF.
// Stateless; any thread may call it.
#pragma once

#include <string_view>

#include "common/crypto/secret.h"
#include "common/status/status.h"

namespace hansa {

// Derives `length` bytes (1..8160) from the input keying material. `salt` may be empty (RFC
// 5869 then uses a zero salt); `info` is the context label that separates derived keys.
StatusOr<SecretBytes> HkdfSha256(const SecretBytes& ikm, std::string_view salt,
                                 std::string_view info, size_t length);

}  // namespace hansa

// AES-256-GCM authenticated encryption with associated data, through OpenSSL EVP.
// Sealed format: nonce (12 bytes) || ciphertext || tag (16 bytes). Stateless; any thread.
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "common/crypto/secret.h"
#include "common/status/status.h"

namespace hansa {

constexpr size_t kAes256KeySize = 32;
constexpr size_t kAesGcmNonceSize = 12;
constexpr size_t kAesGcmTagSize = 16;
using AesGcmNonce = std::array<uint8_t, kAesGcmNonceSize>;

// Encrypts under a fresh random 96-bit nonce (RandBytes). `key` must be 32 bytes.
StatusOr<std::string> Aes256GcmSeal(const SecretBytes& key, std::string_view plaintext,
                                    std::string_view aad);

// The same with a caller-chosen nonce, for known-answer tests. REQUIRES: a nonce is never
// used twice with one key (that breaks GCM completely); production code calls Aes256GcmSeal.
StatusOr<std::string> Aes256GcmSealWithNonce(const SecretBytes& key, const AesGcmNonce& nonce,
                                             std::string_view plaintext, std::string_view aad);

// Decrypts and authenticates. InvalidArgument when `sealed` is too short, and
// PermissionDenied "authentication failed" when the tag does not match (wrong key, wrong AAD,
// or modified ciphertext); no plaintext is returned then.
StatusOr<SecretBytes> Aes256GcmOpen(const SecretBytes& key, std::string_view sealed,
                                    std::string_view aad);

}  // namespace hansa

// Ed25519 signatures (RFC 8032, pure) with raw 32-byte public keys and 64-byte signatures,
// through OpenSSL EVP. A site's signing key is the private key of its federation certificate.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>

#include "common/crypto/secret.h"
#include "common/status/status.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace hansa {

using Ed25519PublicKey = std::array<uint8_t, 32>;
using Ed25519Signature = std::array<uint8_t, 64>;

// An Ed25519 private key. Immutable after creation: any thread may Sign concurrently.
// Move-only; OpenSSL wipes the key material when it is freed.
class Ed25519PrivateKey {
 public:
  static StatusOr<Ed25519PrivateKey> Generate();
  // From the 32-byte RFC 8032 seed.
  static StatusOr<Ed25519PrivateKey> FromSeed(const SecretBytes& seed);
  // From an unencrypted PEM private key (PKCS#8 "PRIVATE KEY", as `hansa provision` writes).
  // InvalidArgument when it does not parse or is not Ed25519.
  static StatusOr<Ed25519PrivateKey> FromPem(std::string_view pem);

  Ed25519PrivateKey(Ed25519PrivateKey&&) noexcept;
  Ed25519PrivateKey& operator=(Ed25519PrivateKey&&) noexcept;
  ~Ed25519PrivateKey();

  const Ed25519PublicKey& public_key() const { return public_key_; }
  StatusOr<Ed25519Signature> Sign(std::string_view message) const;

 private:
  struct Free {
    void operator()(EVP_PKEY* p) const;
  };
  Ed25519PrivateKey(std::unique_ptr<EVP_PKEY, Free> key, const Ed25519PublicKey& pub)
      : key_(std::move(key)), public_key_(pub) {}
  static StatusOr<Ed25519PrivateKey> Wrap(EVP_PKEY* key);
  std::unique_ptr<EVP_PKEY, Free> key_;
  Ed25519PublicKey public_key_;
};

// OK when `signature` is valid for `message` under `key`; PermissionDenied otherwise.
Status Ed25519Verify(const Ed25519PublicKey& key, std::string_view message,
                     const Ed25519Signature& signature);

// The Ed25519 subject key of the first certificate in `pem`; InvalidArgument when there is
// none or its key is not Ed25519. (Whether the certificate is trusted is for common/pki.)
StatusOr<Ed25519PublicKey> Ed25519PublicKeyFromCertificatePem(std::string_view pem);

}  // namespace hansa

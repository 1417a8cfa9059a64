// X25519 key agreement (RFC 7748) with raw 32-byte keys, through OpenSSL EVP.
// Stateless functions; any thread may call them.
#pragma once

#include <array>
#include <cstdint>

#include "common/crypto/secret.h"
#include "common/status/status.h"

namespace hansa {

constexpr size_t kX25519KeySize = 32;
using X25519PublicKey = std::array<uint8_t, kX25519KeySize>;

struct X25519KeyPair {
  SecretBytes private_key;  // 32 bytes (RFC 7748 scalar, unclamped as stored)
  X25519PublicKey public_key;
};

// A fresh key pair from the OpenSSL DRBG.
StatusOr<X25519KeyPair> GenerateX25519KeyPair();

// The public key that belongs to `private_key` (32 bytes; InvalidArgument otherwise).
StatusOr<X25519PublicKey> X25519PublicFromPrivate(const SecretBytes& private_key);

// The 32-byte shared secret X25519(private_key, peer_public). InvalidArgument when the peer key
// is of small order (the result would be all zeros), which an honest peer never sends.
StatusOr<SecretBytes> X25519SharedSecret(const SecretBytes& private_key,
                                         const X25519PublicKey& peer_public);
// The same from a whole pair: `own.public_key` must belong to `own.private_key` (a pair from
// GenerateX25519KeyPair, or one checked against X25519PublicFromPrivate). The result depends
// on the private key alone; the public key spares OpenSSL deriving it again (about half the
// cost of an agreement).
StatusOr<SecretBytes> X25519SharedSecret(const X25519KeyPair& own,
                                         const X25519PublicKey& peer_public);

}  // namespace hansa

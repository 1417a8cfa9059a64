#include "common/crypto/x25519.h"

#include "common/crypto/internal/openssl_ptr.h"

namespace hansa {

using crypto_internal::EvpPkeyCtxPtr;
using crypto_internal::EvpPkeyPtr;
using crypto_internal::InternalOpenSslError;

namespace {

StatusOr<EvpPkeyPtr> PrivateKeyFromRaw(const SecretBytes& private_key) {
  if (private_key.size() != kX25519KeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("X25519 private key must be 32 bytes, got ", private_key.size()));
  }
  EvpPkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                              private_key.size()));
  if (!key) return InternalOpenSslError("loading X25519 private key");
  return key;
}

StatusOr<X25519PublicKey> RawPublic(EVP_PKEY* key) {
  X25519PublicKey pub{};
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key, pub.data(), &len) != 1 || len != pub.size()) {
    return InternalOpenSslError("extracting X25519 public key");
  }
  return pub;
}

}  // namespace

StatusOr<X25519KeyPair> GenerateX25519KeyPair() {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return InternalOpenSslError("generating X25519 key pair");
  }
  EvpPkeyPtr key(raw);
  X25519KeyPair pair;
  pair.private_key = SecretBytes(kX25519KeySize);
  size_t len = kX25519KeySize;
  if (EVP_PKEY_get_raw_private_key(key.get(), pair.private_key.data(), &len) != 1 ||
      len != kX25519KeySize) {
    return InternalOpenSslError("extracting X25519 private key");
  }
  ASSIGN_OR_RETURN(pair.public_key, RawPublic(key.get()));
  return pair;
}

StatusOr<X25519PublicKey> X25519PublicFromPrivate(const SecretBytes& private_key) {
  ASSIGN_OR_RETURN(EvpPkeyPtr key, PrivateKeyFromRaw(private_key));
  return RawPublic(key.get());
}

StatusOr<SecretBytes> X25519SharedSecret(const SecretBytes& private_key,
                                         const X25519PublicKey& peer_public) {
  ASSIGN_OR_RETURN(EvpPkeyPtr key, PrivateKeyFromRaw(private_key));
  EvpPkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(),
                                              peer_public.size()));
  if (!peer) return InternalOpenSslError("loading X25519 peer public key");
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1) {
    return InternalOpenSslError("setting up X25519 derivation");
  }
  SecretBytes secret(kX25519KeySize);
  size_t len = secret.size();
  if (EVP_PKEY_derive(ctx.get(), secret.data(), &len) != 1 || len != kX25519KeySize) {
    // OpenSSL refuses an all-zero result, i.e. a small-order peer point.
    return crypto_internal::OpenSslError(
        absl::StatusCode::kInvalidArgument,
        "X25519 with the peer's public key failed (small-order or malformed key; the peer is "
        "misbehaving)");
  }
  return secret;
}

}  // namespace hansa

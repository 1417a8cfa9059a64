#include "common/crypto/x25519.h"

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "common/crypto/internal/openssl_ptr.h"

namespace hansa {

using crypto_internal::EvpPkeyCtxPtr;
using crypto_internal::EvpPkeyPtr;
using crypto_internal::InternalOpenSslError;

namespace {

Status CheckPrivateKeySize(const SecretBytes& private_key) {
  if (private_key.size() == kX25519KeySize) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("X25519 private key must be 32 bytes, got ", private_key.size()));
}

StatusOr<EvpPkeyPtr> PrivateKeyFromRaw(const SecretBytes& private_key) {
  RETURN_IF_ERROR(CheckPrivateKeySize(private_key));
  EvpPkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                              private_key.size()));
  if (!key) return InternalOpenSslError("loading X25519 private key");
  return key;
}

// Both halves given: OpenSSL takes the public key as it is rather than deriving it.
StatusOr<EvpPkeyPtr> KeyPairFromRaw(const X25519KeyPair& pair) {
  RETURN_IF_ERROR(CheckPrivateKeySize(pair.private_key));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "X25519", nullptr));
  X25519PublicKey pub = pair.public_key;
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY,
                                        const_cast<uint8_t*>(pair.private_key.data()),
                                        pair.private_key.size()),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub.data(), pub.size()),
      OSSL_PARAM_construct_end()};
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_KEYPAIR, const_cast<OSSL_PARAM*>(params)) != 1) {
    return InternalOpenSslError("loading X25519 key pair");
  }
  return EvpPkeyPtr(raw);
}

// X25519 of `key`'s private half with `peer_public`.
StatusOr<SecretBytes> Derive(EVP_PKEY* key, const X25519PublicKey& peer_public) {
  EvpPkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(),
                                              peer_public.size()));
  if (!peer) return InternalOpenSslError("loading X25519 peer public key");
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(key, nullptr));
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
  return Derive(key.get(), peer_public);
}

StatusOr<SecretBytes> X25519SharedSecret(const X25519KeyPair& own,
                                         const X25519PublicKey& peer_public) {
  ASSIGN_OR_RETURN(EvpPkeyPtr key, KeyPairFromRaw(own));
  return Derive(key.get(), peer_public);
}

}  // namespace hansa

#include "common/crypto/ed25519.h"

#include <openssl/pem.h>

#include "common/crypto/internal/openssl_ptr.h"

namespace hansa {

using crypto_internal::BioPtr;
using crypto_internal::EvpMdCtxPtr;
using crypto_internal::EvpPkeyPtr;
using crypto_internal::InternalOpenSslError;
using crypto_internal::X509Ptr;

void Ed25519PrivateKey::Free::operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }

Ed25519PrivateKey::Ed25519PrivateKey(Ed25519PrivateKey&&) noexcept = default;
Ed25519PrivateKey& Ed25519PrivateKey::operator=(Ed25519PrivateKey&&) noexcept = default;
Ed25519PrivateKey::~Ed25519PrivateKey() = default;

namespace {

StatusOr<Ed25519PublicKey> RawPublic(EVP_PKEY* key) {
  Ed25519PublicKey pub{};
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key, pub.data(), &len) != 1 || len != pub.size()) {
    return InternalOpenSslError("extracting Ed25519 public key");
  }
  return pub;
}

BioPtr MemBio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

}  // namespace

StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::Wrap(EVP_PKEY* raw) {
  std::unique_ptr<EVP_PKEY, Free> key(raw);
  if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError("private key is not an Ed25519 key");
  }
  ASSIGN_OR_RETURN(Ed25519PublicKey pub, RawPublic(key.get()));
  return Ed25519PrivateKey(std::move(key), pub);
}

StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::Generate() {
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (raw == nullptr) return InternalOpenSslError("generating Ed25519 key");
  return Wrap(raw);
}

StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromSeed(const SecretBytes& seed) {
  if (seed.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("Ed25519 seed must be 32 bytes, got ", seed.size()));
  }
  EVP_PKEY* raw = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size());
  if (raw == nullptr) return InternalOpenSslError("loading Ed25519 seed");
  return Wrap(raw);
}

StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromPem(std::string_view pem) {
  BioPtr bio = MemBio(pem);
  EVP_PKEY* raw = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (raw == nullptr) {
    return crypto_internal::OpenSslError(absl::StatusCode::kInvalidArgument,
                                         "parsing PEM private key (expected unencrypted PKCS#8)");
  }
  return Wrap(raw);
}

StatusOr<Ed25519Signature> Ed25519PrivateKey::Sign(std::string_view message) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  Ed25519Signature sig{};
  size_t len = sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig.data(), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
      len != sig.size()) {
    return InternalOpenSslError("Ed25519 signing");
  }
  return sig;
}

Status Ed25519Verify(const Ed25519PublicKey& key, std::string_view message,
                     const Ed25519Signature& signature) {
  EvpPkeyPtr pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key.data(), key.size()));
  if (!pkey) {
    return crypto_internal::OpenSslError(absl::StatusCode::kInvalidArgument,
                                         "loading Ed25519 public key");
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1) {
    return InternalOpenSslError("Ed25519 verification setup");
  }
  int ok = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(),
                            reinterpret_cast<const unsigned char*>(message.data()), message.size());
  ERR_clear_error();
  if (ok != 1) return absl::PermissionDeniedError("Ed25519 signature does not verify");
  return absl::OkStatus();
}

StatusOr<Ed25519PublicKey> Ed25519PublicKeyFromCertificatePem(std::string_view pem) {
  BioPtr bio = MemBio(pem);
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) {
    return crypto_internal::OpenSslError(absl::StatusCode::kInvalidArgument,
                                         "parsing PEM certificate");
  }
  EVP_PKEY* key = X509_get0_pubkey(cert.get());
  if (key == nullptr || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "certificate's subject key is not Ed25519; secure aggregation signatures need Ed25519 "
        "site certificates");
  }
  return RawPublic(key);
}

}  // namespace hansa

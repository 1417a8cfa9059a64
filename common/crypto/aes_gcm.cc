#include "common/crypto/aes_gcm.h"

#include <climits>

#include "common/crypto/internal/openssl_ptr.h"
#include "common/crypto/random.h"

namespace hansa {

using crypto_internal::EvpCipherCtxPtr;
using crypto_internal::InternalOpenSslError;

namespace {

Status CheckKey(const SecretBytes& key) {
  if (key.size() != kAes256KeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("AES-256-GCM key must be 32 bytes, got ", key.size()));
  }
  return absl::OkStatus();
}

Status CheckLength(size_t size, const char* what) {
  if (size > static_cast<size_t>(INT_MAX) - 64) {
    return absl::InvalidArgumentError(absl::StrCat("AES-256-GCM ", what, " too large: ", size));
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<std::string> Aes256GcmSeal(const SecretBytes& key, std::string_view plaintext,
                                    std::string_view aad) {
  AesGcmNonce nonce{};
  RETURN_IF_ERROR(RandBytes(nonce.data(), nonce.size()));
  return Aes256GcmSealWithNonce(key, nonce, plaintext, aad);
}

StatusOr<std::string> Aes256GcmSealWithNonce(const SecretBytes& key, const AesGcmNonce& nonce,
                                             std::string_view plaintext, std::string_view aad) {
  RETURN_IF_ERROR(CheckKey(key));
  RETURN_IF_ERROR(CheckLength(plaintext.size(), "plaintext"));
  RETURN_IF_ERROR(CheckLength(aad.size(), "associated data"));
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce.data()) != 1) {
    return InternalOpenSslError("AES-256-GCM encryption setup");
  }
  std::string out(kAesGcmNonceSize + plaintext.size() + kAesGcmTagSize, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  std::copy(nonce.begin(), nonce.end(), o);
  int len = 0;
  if (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &len,
                                        reinterpret_cast<const unsigned char*>(aad.data()),
                                        static_cast<int>(aad.size())) != 1) {
    return InternalOpenSslError("AES-256-GCM associated data");
  }
  unsigned char* ct = o + kAesGcmNonceSize;
  if (!plaintext.empty() &&
      EVP_EncryptUpdate(ctx.get(), ct, &len,
                        reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) != 1) {
    return InternalOpenSslError("AES-256-GCM encryption");
  }
  int fin = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), ct + plaintext.size(), &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kAesGcmTagSize, ct + plaintext.size()) !=
          1) {
    return InternalOpenSslError("AES-256-GCM finalisation");
  }
  return out;
}

StatusOr<SecretBytes> Aes256GcmOpen(const SecretBytes& key, std::string_view sealed,
                                    std::string_view aad) {
  RETURN_IF_ERROR(CheckKey(key));
  if (sealed.size() < kAesGcmNonceSize + kAesGcmTagSize) {
    return absl::InvalidArgumentError(absl::StrCat("AES-256-GCM ciphertext of ", sealed.size(),
                                                   " bytes is shorter than nonce and tag (28)"));
  }
  RETURN_IF_ERROR(CheckLength(sealed.size(), "ciphertext"));
  RETURN_IF_ERROR(CheckLength(aad.size(), "associated data"));
  const auto* in = reinterpret_cast<const unsigned char*>(sealed.data());
  size_t ct_len = sealed.size() - kAesGcmNonceSize - kAesGcmTagSize;
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), in) != 1) {
    return InternalOpenSslError("AES-256-GCM decryption setup");
  }
  int len = 0;
  if (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &len,
                                        reinterpret_cast<const unsigned char*>(aad.data()),
                                        static_cast<int>(aad.size())) != 1) {
    return InternalOpenSslError("AES-256-GCM associated data");
  }
  SecretBytes plain(ct_len);
  if (ct_len > 0 && EVP_DecryptUpdate(ctx.get(), plain.data(), &len, in + kAesGcmNonceSize,
                                      static_cast<int>(ct_len)) != 1) {
    return InternalOpenSslError("AES-256-GCM decryption");
  }
  unsigned char tag[kAesGcmTagSize];
  std::copy(in + kAesGcmNonceSize + ct_len, in + sealed.size(), tag);
  int fin = 0;
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kAesGcmTagSize, tag) != 1) {
    return InternalOpenSslError("AES-256-GCM tag setup");
  }
  unsigned char dummy[16];
  if (EVP_DecryptFinal_ex(ctx.get(), dummy, &fin) != 1) {
    ERR_clear_error();
    return absl::PermissionDeniedError(
        "AES-256-GCM authentication failed: wrong key or associated data, or the ciphertext was "
        "modified");
  }
  return plain;
}

}  // namespace hansa

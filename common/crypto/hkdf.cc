#include "common/crypto/hkdf.h"

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "common/crypto/internal/openssl_ptr.h"

namespace hansa {

using crypto_internal::EvpKdfCtxPtr;
using crypto_internal::EvpKdfPtr;
using crypto_internal::InternalOpenSslError;

StatusOr<SecretBytes> HkdfSha256(const SecretBytes& ikm, std::string_view salt,
                                 std::string_view info, size_t length) {
  if (length == 0 || length > 255 * 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("HKDF-SHA256 output length must be 1..8160 bytes, got ", length));
  }
  if (ikm.empty()) return absl::InvalidArgumentError("HKDF-SHA256 needs non-empty key material");
  EvpKdfPtr kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (!kdf) return InternalOpenSslError("fetching HKDF");
  EvpKdfCtxPtr ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) return InternalOpenSslError("creating HKDF context");
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  int n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                  const_cast<uint8_t*>(ikm.data()), ikm.size());
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                    const_cast<char*>(salt.data()), salt.size());
  }
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                  const_cast<char*>(info.data()), info.size());
  params[n] = OSSL_PARAM_construct_end();
  SecretBytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return InternalOpenSslError("HKDF-SHA256 derivation");
  }
  return out;
}

}  // namespace hansa

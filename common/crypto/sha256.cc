#include "common/crypto/sha256.h"

#include <openssl/evp.h>

#include "common/status/check.h"

namespace hansa {

struct Sha256Hasher::Ctx {
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> md{EVP_MD_CTX_new()};
};

Sha256Hasher::Sha256Hasher() : ctx_(std::make_unique<Ctx>()) {
  HANSA_CHECK(ctx_->md != nullptr);
  HANSA_CHECK(EVP_DigestInit_ex(ctx_->md.get(), EVP_sha256(), nullptr) == 1);
}

Sha256Hasher::~Sha256Hasher() = default;

void Sha256Hasher::Update(const void* data, size_t size) {
  if (size == 0) return;
  HANSA_CHECK(EVP_DigestUpdate(ctx_->md.get(), data, size) == 1);
}

Sha256Digest Sha256Hasher::Finish() {
  Sha256Digest out{};
  unsigned int len = 0;
  HANSA_CHECK(EVP_DigestFinal_ex(ctx_->md.get(), out.data(), &len) == 1);
  HANSA_CHECK(EVP_DigestInit_ex(ctx_->md.get(), EVP_sha256(), nullptr) == 1);
  return out;
}

Sha256Digest Sha256(std::string_view data) {
  Sha256Hasher h;
  h.Update(data);
  return h.Finish();
}

std::string ToHex(const uint8_t* data, size_t size) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 15];
  }
  return out;
}

StatusOr<Sha256Digest> Sha256FromHex(std::string_view hex) {
  if (hex.size() != 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("SHA-256 digest must be 64 hex characters, got ", hex.size()));
  }
  Sha256Digest out{};
  for (size_t i = 0; i < 32; ++i) {
    int v = 0;
    for (int j = 0; j < 2; ++j) {
      char c = hex[2 * i + j];
      int d = (c >= '0' && c <= '9')   ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                       : -1;
      if (d < 0) return absl::InvalidArgumentError("SHA-256 digest contains a non-hex character");
      v = v * 16 + d;
    }
    out[i] = static_cast<uint8_t>(v);
  }
  return out;
}

}  // namespace hansa

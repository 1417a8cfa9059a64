#include "common/crypto/secret.h"

#include <openssl/crypto.h>

namespace hansa {

bool ConstantTimeEquals(const void* a, const void* b, size_t size) {
  return size == 0 || CRYPTO_memcmp(a, b, size) == 0;
}

void SecureWipe(void* p, size_t size) {
  if (size > 0) OPENSSL_cleanse(p, size);
}

void SecretBytes::Wipe() {
  SecureWipe(bytes_.data(), bytes_.size());
  bytes_.clear();
  bytes_.shrink_to_fit();
}

SecretBytes& SecretBytes::operator=(const SecretBytes& other) {
  if (this != &other) {
    Wipe();
    bytes_ = other.bytes_;
  }
  return *this;
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = std::move(other.bytes_);
    other.bytes_.clear();
  }
  return *this;
}

}  // namespace hansa

#include "common/privacy/uniform_source.h"

#include <openssl/crypto.h>

#include <cstring>

#include "common/crypto/random.h"
#include "common/crypto/sha256.h"
#include "common/status/check.h"

namespace hansa {

uint64_t UniformBelow(UniformSource& source, uint64_t n) {
  HANSA_CHECK(n > 0);
  // Accept values below the largest multiple of n that fits in 2^64.
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  for (;;) {
    uint64_t v = source.NextUint64();
    if (v < limit || limit == 0) return v % n;
  }
}

Uint128 UniformBelow(UniformSource& source, Uint128 n) {
  HANSA_CHECK(n > 0);
  if (n <= UINT64_MAX) return UniformBelow(source, static_cast<uint64_t>(n));
  // Mask to n's bit length, then reject: at most 2 draws expected.
  int bits = 128 - __builtin_clzll(static_cast<uint64_t>(n >> 64));
  Uint128 mask = bits == 128 ? ~Uint128{0} : ((Uint128{1} << bits) - 1);
  for (;;) {
    Uint128 v = (Uint128{source.NextUint64()} << 64) | source.NextUint64();
    v &= mask;
    if (v < n) return v;
  }
}

CryptoUniformSource::~CryptoUniformSource() { OPENSSL_cleanse(buffer_.data(), sizeof(buffer_)); }

uint64_t CryptoUniformSource::NextUint64() {
  if (next_ == buffer_.size()) {
    HANSA_CHECK(RandBytes(buffer_.data(), sizeof(buffer_)).ok());
    next_ = 0;
  }
  uint64_t v = buffer_[next_];
  buffer_[next_++] = 0;
  return v;
}

uint64_t SeededUniformSource::NextUint64() {
  if (next_ == block_.size()) {
    hasher_.Update(seed_);
    uint8_t counter[8];
    for (int i = 0; i < 8; ++i) counter[i] = static_cast<uint8_t>(counter_ >> (8 * i));
    hasher_.Update(counter, sizeof(counter));
    ++counter_;
    Sha256Digest digest = hasher_.Finish();
    for (size_t i = 0; i < block_.size(); ++i) {
      uint64_t v = 0;
      for (int b = 0; b < 8; ++b) v |= uint64_t{digest[8 * i + b]} << (8 * b);
      block_[i] = v;
    }
    next_ = 0;
  }
  return block_[next_++];
}

}  // namespace hansa

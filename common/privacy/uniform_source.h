// Uniform random bits for the privacy mechanisms, behind one seam so tests can inject a
// deterministic source (a fake, not a mock). Sources are not thread-safe: one owner each.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/crypto/sha256.h"

namespace hansa {

using Uint128 = unsigned __int128;

class UniformSource {
 public:
  virtual ~UniformSource() = default;
  // 64 independent uniform bits.
  virtual uint64_t NextUint64() = 0;
};

// Uniform in [0, n) by rejection (no modulo bias). REQUIRES: n > 0.
uint64_t UniformBelow(UniformSource& source, uint64_t n);
Uint128 UniformBelow(UniformSource& source, Uint128 n);

// Noise for real use: OpenSSL RAND_bytes through common/crypto/random.h, read in blocks; the
// unused buffer is wiped on destruction (the noise is secret: knowing it unmasks the update).
class CryptoUniformSource final : public UniformSource {
 public:
  CryptoUniformSource() = default;
  ~CryptoUniformSource() override;
  CryptoUniformSource(const CryptoUniformSource&) = delete;
  CryptoUniformSource& operator=(const CryptoUniformSource&) = delete;

  // HANSA_CHECKs that the DRBG works, as RandUint64 does.
  uint64_t NextUint64() override;

 private:
  std::array<uint64_t, 64> buffer_{};
  size_t next_ = buffer_.size();
};

// Deterministic stream from a seed: block i is SHA-256(seed || le64(i)). Used for public
// randomness both sides must reproduce (the rotation's signs, derived from the round's public
// seed) and for reproducible tests. Never for noise in production.
class SeededUniformSource final : public UniformSource {
 public:
  explicit SeededUniformSource(std::string_view seed) : seed_(seed) {}
  uint64_t NextUint64() override;

 private:
  std::string seed_;
  Sha256Hasher hasher_;
  uint64_t counter_ = 0;
  std::array<uint64_t, 4> block_{};
  size_t next_ = block_.size();
};

}  // namespace hansa

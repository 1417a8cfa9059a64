// t-of-n Shamir secret sharing of 32-byte secrets over the prime field GF(2^61 - 1).
//
// A secret is split into five limbs (four of 56 bits, one of 32 bits), each shared with its
// own random polynomial of degree t-1 whose coefficients come from RandBytes; a share holds the
// five polynomial values at the holder's index. Any t shares determine the secret; t-1 shares
// are independent of it. Stateless functions; any thread may call them.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "common/crypto/secret.h"
#include "common/status/status.h"

namespace hansa {

constexpr size_t kShamirSecretSize = 32;
constexpr size_t kShamirLimbs = 5;
constexpr uint64_t kShamirPrime = (uint64_t{1} << 61) - 1;
// Serialized share: index (4 bytes LE) then the limbs (8 bytes LE each).
constexpr size_t kShamirShareSize = 4 + 8 * kShamirLimbs;

// One share. Its values are secret: wiped on destruction.
struct ShamirShare {
  uint32_t index = 0;  // the evaluation point: 1.. (0 would be the secret itself)
  std::array<uint64_t, kShamirLimbs> values{};

  ShamirShare() = default;
  ShamirShare(const ShamirShare&) = default;
  ShamirShare& operator=(const ShamirShare&) = default;
  ~ShamirShare() { SecureWipe(values.data(), sizeof(values)); }

  SecretBytes Serialize() const;
  // InvalidArgument unless `bytes` is kShamirShareSize long with index != 0 and values < p.
  static StatusOr<ShamirShare> Parse(const SecretBytes& bytes);
};

// Shares `secret` (kShamirSecretSize bytes) among `indices` (distinct, nonzero) so that any
// `threshold` of them reconstruct it. REQUIRES 1 <= threshold <= indices.size().
StatusOr<std::vector<ShamirShare>> ShamirSplit(const SecretBytes& secret, int threshold,
                                               const std::vector<uint32_t>& indices);

// Reconstructs from the first `threshold` of `shares` by Lagrange interpolation at 0.
// FailedPrecondition when fewer than `threshold` shares are given; InvalidArgument for
// duplicate or zero indices, or when the interpolated limbs are out of range (the shares do
// not come from one sharing; this catches most wrong or tampered shares).
StatusOr<SecretBytes> ShamirReconstruct(const std::vector<ShamirShare>& shares, int threshold);

}  // namespace hansa

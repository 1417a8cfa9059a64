#include "common/secagg/shamir.h"

#include <set>

#include "common/crypto/random.h"

namespace hansa {

namespace {

constexpr uint64_t kP = kShamirPrime;
// Bytes of the secret held by each limb (7*4 + 4 = 32).
constexpr size_t kLimbBytes[kShamirLimbs] = {7, 7, 7, 7, 4};

inline uint64_t Reduce(uint64_t x) {  // x < 2^64 -> x mod p
  x = (x & kP) + (x >> 61);
  return x >= kP ? x - kP : x;
}
inline uint64_t Add(uint64_t a, uint64_t b) { return Reduce(a + b); }
inline uint64_t Sub(uint64_t a, uint64_t b) { return a >= b ? a - b : a + kP - b; }
inline uint64_t Mul(uint64_t a, uint64_t b) {
  unsigned __int128 prod = static_cast<unsigned __int128>(a) * b;
  uint64_t lo = static_cast<uint64_t>(prod) & kP;
  uint64_t hi = static_cast<uint64_t>(prod >> 61);
  return Reduce(lo + hi);
}
uint64_t Pow(uint64_t base, uint64_t exp) {
  uint64_t r = 1;
  while (exp > 0) {
    if (exp & 1) r = Mul(r, base);
    base = Mul(base, base);
    exp >>= 1;
  }
  return r;
}
inline uint64_t Inverse(uint64_t a) { return Pow(a, kP - 2); }

// Uniform field elements by rejection sampling of 61-bit values.
Status RandomElements(uint64_t* out, size_t count) {
  for (size_t i = 0; i < count;) {
    uint64_t v = 0;
    RETURN_IF_ERROR(RandBytes(&v, sizeof(v)));
    v &= kP;
    if (v != kP) out[i++] = v;
  }
  return absl::OkStatus();
}

Status CheckIndices(const std::vector<uint32_t>& indices) {
  std::set<uint32_t> seen;
  for (uint32_t i : indices) {
    if (i == 0) return absl::InvalidArgumentError("Shamir share index 0 is not allowed");
    if (!seen.insert(i).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate Shamir share index ", i));
    }
  }
  return absl::OkStatus();
}

}  // namespace

SecretBytes ShamirShare::Serialize() const {
  SecretBytes out(kShamirShareSize);
  for (int b = 0; b < 4; ++b) out[b] = static_cast<uint8_t>(index >> (8 * b));
  for (size_t l = 0; l < kShamirLimbs; ++l) {
    for (int b = 0; b < 8; ++b) out[4 + 8 * l + b] = static_cast<uint8_t>(values[l] >> (8 * b));
  }
  return out;
}

StatusOr<ShamirShare> ShamirShare::Parse(const SecretBytes& bytes) {
  if (bytes.size() != kShamirShareSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("Shamir share must be ", kShamirShareSize, " bytes, got ", bytes.size()));
  }
  ShamirShare share;
  for (int b = 0; b < 4; ++b) share.index |= uint32_t{bytes[b]} << (8 * b);
  for (size_t l = 0; l < kShamirLimbs; ++l) {
    uint64_t v = 0;
    for (int b = 0; b < 8; ++b) v |= uint64_t{bytes[4 + 8 * l + b]} << (8 * b);
    if (v >= kP) return absl::InvalidArgumentError("Shamir share value outside the field");
    share.values[l] = v;
  }
  if (share.index == 0) return absl::InvalidArgumentError("Shamir share index 0 is not allowed");
  return share;
}

StatusOr<std::vector<ShamirShare>> ShamirSplit(const SecretBytes& secret, int threshold,
                                               const std::vector<uint32_t>& indices) {
  if (secret.size() != kShamirSecretSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("Shamir secret must be 32 bytes, got ", secret.size()));
  }
  if (threshold < 1 || static_cast<size_t>(threshold) > indices.size()) {
    return absl::InvalidArgumentError(absl::StrCat("Shamir threshold ", threshold,
                                                   " must be in 1..", indices.size(),
                                                   " (the number of share holders)"));
  }
  RETURN_IF_ERROR(CheckIndices(indices));
  std::vector<ShamirShare> shares(indices.size());
  for (size_t s = 0; s < indices.size(); ++s) shares[s].index = indices[s];
  std::vector<uint64_t> coeffs(static_cast<size_t>(threshold));
  size_t offset = 0;
  for (size_t l = 0; l < kShamirLimbs; ++l) {
    uint64_t limb = 0;
    for (size_t b = 0; b < kLimbBytes[l]; ++b) limb |= uint64_t{secret[offset + b]} << (8 * b);
    offset += kLimbBytes[l];
    coeffs[0] = limb;
    RETURN_IF_ERROR(RandomElements(coeffs.data() + 1, coeffs.size() - 1));
    for (ShamirShare& share : shares) {  // Horner
      uint64_t y = 0;
      for (size_t c = coeffs.size(); c-- > 0;) y = Add(Mul(y, share.index), coeffs[c]);
      share.values[l] = y;
    }
  }
  SecureWipe(coeffs.data(), coeffs.size() * sizeof(uint64_t));
  return shares;
}

StatusOr<SecretBytes> ShamirReconstruct(const std::vector<ShamirShare>& shares, int threshold) {
  if (threshold < 1) {
    return absl::InvalidArgumentError(absl::StrCat("Shamir threshold ", threshold, " < 1"));
  }
  if (shares.size() < static_cast<size_t>(threshold)) {
    return absl::FailedPreconditionError(
        absl::StrCat("Shamir reconstruction needs ", threshold, " shares, got ", shares.size()));
  }
  const size_t t = static_cast<size_t>(threshold);
  std::vector<uint32_t> xs(t);
  for (size_t i = 0; i < t; ++i) xs[i] = shares[i].index;
  RETURN_IF_ERROR(CheckIndices(xs));
  // Lagrange basis at 0: L_i = prod_{j != i} x_j / (x_j - x_i).
  std::vector<uint64_t> lagrange(t);
  for (size_t i = 0; i < t; ++i) {
    uint64_t num = 1, den = 1;
    for (size_t j = 0; j < t; ++j) {
      if (j == i) continue;
      num = Mul(num, xs[j]);
      den = Mul(den, Sub(xs[j], xs[i]));
    }
    lagrange[i] = Mul(num, Inverse(den));
  }
  SecretBytes secret(kShamirSecretSize);
  size_t offset = 0;
  for (size_t l = 0; l < kShamirLimbs; ++l) {
    uint64_t limb = 0;
    for (size_t i = 0; i < t; ++i) limb = Add(limb, Mul(lagrange[i], shares[i].values[l]));
    if (limb >> (8 * kLimbBytes[l]) != 0) {
      return absl::InvalidArgumentError(
          "Shamir shares are inconsistent (not from one sharing, or tampered with)");
    }
    for (size_t b = 0; b < kLimbBytes[l]; ++b)
      secret[offset + b] = static_cast<uint8_t>(limb >> (8 * b));
    offset += kLimbBytes[l];
  }
  return secret;
}

}  // namespace hansa

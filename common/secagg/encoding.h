// Fixed-point encoding of model updates into the ring, and decoding of the unmasked sum.
//
// Each value is clipped to [-c, c], scaled by the site's weight w in [0, 1], mapped to
// [0, L] with L = 2^b - 1 and rounded stochastically (unbiased). One extra element, the last,
// carries w itself (as w*L, also rounded stochastically), so the sum yields both
// sum_i w_i x_i and sum_i w_i, and weighted FedAvg needs no site's example count in the clear.
// Sites pass w = examples / max_examples (a plan parameter), or 1 for unweighted averaging.
//
// The ring is Z_2^32 when cohort_size * L fits in 32 bits and Z_2^64 otherwise, so the sum
// never wraps.
#pragma once

#include <cstdint>
#include <vector>

#include "common/crypto/chacha20.h"
#include "common/secagg/ring.h"
#include "common/status/status.h"

namespace hansa {

// The finest quantization: a double's 53-bit significand, in which the levels are computed.
inline constexpr int kMaxQuantizationBits = 53;

struct EncodingParams {
  double clip = 1.0;    // c > 0
  int bits = 16;        // b in 1..kMaxQuantizationBits
  int cohort_size = 1;  // the most inputs that will ever be summed
};

// The quantization bits a federation gets when it does not choose: the most (at most 30, at
// least 20) with which a sum over `cohort_size` inputs still fits the 32-bit ring, so precision
// costs no bandwidth (30 bits up to 4 sites, 27 up to 32, 20 up to 4096; 20 bits in the 64-bit
// ring beyond). At least 1 site.
int DefaultQuantizationBits(int cohort_size);

// The ring for `params`; InvalidArgument for c <= 0 (or not finite), b outside
// 1..kMaxQuantizationBits, a cohort
// below 1, or cohort_size * (2^b - 1) beyond 64 bits.
StatusOr<RingWidth> ChooseRing(const EncodingParams& params);

// Encodes one site's update, chunk by chunk. Holds its own rounding PRG (ChaCha20 seeded from
// RandBytes, or from a test seed). Not thread-safe: one owner.
class Encoder {
 public:
  static StatusOr<Encoder> Create(const EncodingParams& params);
  // Deterministic rounding for tests and reproducible simulations.
  static StatusOr<Encoder> CreateWithSeed(const EncodingParams& params, const SecretBytes& seed);

  RingWidth ring() const { return ring_; }
  // A model of n values encodes to n + 1 ring elements (the weight last).
  static size_t EncodedSize(size_t num_values) { return num_values + 1; }

  // Encodes values[0..count) with weight `weight` into out[0..count). InvalidArgument for a
  // NaN value (naming its index), or a weight outside [0, 1]. REQUIRES the right width.
  Status EncodeValues(const float* values, size_t count, double weight, uint32_t* out);
  Status EncodeValues(const float* values, size_t count, double weight, uint64_t* out);
  // The weight element.
  StatusOr<uint64_t> EncodeWeight(double weight);
  // Passes over the rounding words of `count` values encoded elsewhere from the same seed (a
  // GPU quantizing with cuda/'s Quantize), so that what follows matches a whole-vector Encode.
  void SkipValues(uint64_t count) { prg_offset_ += count; }
  // The whole vector (values then weight) in one call.
  StatusOr<RingVector> Encode(const std::vector<float>& values, double weight);

 private:
  Encoder(const EncodingParams& p, RingWidth ring, ChaCha20Prg prg)
      : params_(p), ring_(ring), prg_(std::move(prg)) {}
  template <typename W>
  Status EncodeImpl(const float* values, size_t count, double weight, W* out);
  Status Uniforms(size_t count);  // fills uniforms_ with count values in [0, 1)

  EncodingParams params_;
  RingWidth ring_;
  ChaCha20Prg prg_;
  uint64_t prg_offset_ = 0;  // 32-bit words consumed
  std::vector<uint32_t> random_words_;
};

// Decodes the ring sum of `num_summands` encoded vectors into their weighted mean, block by
// block: weighted_sum[i] = sum[i] * 2c / L - num_summands * c and total_weight = sum[n] / L
// (in double precision), mean[i] = float(weighted_sum[i] / total_weight) (zeros when the total
// weight is 0). The double-precision sum is kept only with keep_sum. `sum` is consumed: each
// decoded block's pages go back to the system (ReleaseRingPages), so in the 32-bit ring the
// sum and the mean together hold about one vector's bytes. InvalidArgument when an element is
// above num_summands * L, naming the first (the sum is not of that many encodings: wrong
// survivor count or corrupt data), or when the sum is empty or in another ring.
struct DecodedMean {
  std::vector<float> mean;           // weighted_sum / total_weight, per coordinate
  double total_weight = 0;           // sum_i w_i
  std::vector<double> weighted_sum;  // when asked (keep_sum), else empty
};
StatusOr<DecodedMean> DecodeMean(RingVector sum, size_t num_summands, const EncodingParams& params,
                                 bool keep_sum = false);

}  // namespace hansa

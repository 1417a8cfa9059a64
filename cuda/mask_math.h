// The arithmetic of the GPU kernels as __host__ __device__ functions, so the same code runs in
// the kernels and, compiled by the host compiler, in the CPU reference (cuda/reference.h) that
// the tests compare against common/crypto and common/secagg.
//
// Definitions (all must stay bit-identical to the CPU path in common/):
// - Keystream: ChaCha20 block function of RFC 8439 section 2.3; keystream byte 8*... of block b
//   is serialised little-endian from state word i. 32-bit mask element e is keystream word e,
//   64-bit element e is words 2e (low half) and 2e+1 (high half), as ChaCha20Prg::ApplyMask.
// - Stochastic rounding (Encoder in common/secagg/encoding.h): value x (float widened to double)
//   is clipped to [-c, c], multiplied by the weight w, q = (x + c) * scale with
//   scale = (2^b - 1) / (2c); the result is floor(q) + (u < q - floor(q)) where u = r * 2^-32
//   and r is 32-bit word k of the ChaCha20 keystream under the rounding seed (nonce 0), k being
//   the element's position in the encoder's sequence of random words. Double operations are
//   written with explicit round-to-nearest intrinsics on the device so that nvcc does not fuse
//   them into FMAs (the host compiles with -ffp-contract=off in ISO mode).
// - L2 norm: squares of float values are exact in double; they are summed in a fixed tree
//   (NormTile below) so the GPU and the CPU reference add in the same order.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define HANSA_HD __host__ __device__ __forceinline__
#else
#define HANSA_HD inline
#endif

namespace hansa {
namespace cuda_math {

// Key and nonce as the little-endian words of the ChaCha20 state (words 4..11 and 13..15).
struct ChaChaKey {
  uint32_t key[8];
  uint32_t nonce[3];
};

constexpr int kBlockWords = 16;   // 32-bit words per 64-byte ChaCha20 block
constexpr int kTileBlocks = 256;  // ChaCha20 blocks per CUDA thread block (one per thread)
constexpr int kTileWords = kTileBlocks * kBlockWords;  // 4096 keystream words per tile
constexpr int kNormThreads = 256;                      // threads per reduction block
constexpr int kNormItems = 8;  // values each reduction thread adds sequentially
constexpr int kNormTile = kNormThreads * kNormItems;  // values reduced by one block

HANSA_HD uint32_t Rotl(uint32_t v, int c) { return (v << c) | (v >> (32 - c)); }

HANSA_HD void QuarterRound(uint32_t& a, uint32_t& b, uint32_t& c, uint32_t& d) {
  a += b;
  d ^= a;
  d = Rotl(d, 16);
  c += d;
  b ^= c;
  b = Rotl(b, 12);
  a += b;
  d ^= a;
  d = Rotl(d, 8);
  c += d;
  b ^= c;
  b = Rotl(b, 7);
}

// out = ChaCha20 block `counter` for `k` (RFC 8439 section 2.3), as 16 little-endian words.
HANSA_HD void ChaCha20Block(const ChaChaKey& k, uint32_t counter, uint32_t out[kBlockWords]) {
  uint32_t in[kBlockWords] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u,
                              k.key[0],    k.key[1],    k.key[2],    k.key[3],
                              k.key[4],    k.key[5],    k.key[6],    k.key[7],
                              counter,     k.nonce[0],  k.nonce[1],  k.nonce[2]};
  uint32_t x[kBlockWords];
  for (int i = 0; i < kBlockWords; ++i) x[i] = in[i];
  for (int round = 0; round < 10; ++round) {
    QuarterRound(x[0], x[4], x[8], x[12]);
    QuarterRound(x[1], x[5], x[9], x[13]);
    QuarterRound(x[2], x[6], x[10], x[14]);
    QuarterRound(x[3], x[7], x[11], x[15]);
    QuarterRound(x[0], x[5], x[10], x[15]);
    QuarterRound(x[1], x[6], x[11], x[12]);
    QuarterRound(x[2], x[7], x[8], x[13]);
    QuarterRound(x[3], x[4], x[9], x[14]);
  }
  for (int i = 0; i < kBlockWords; ++i) out[i] = x[i] + in[i];
}

// Keystream words (32-bit) of word index `w` in the tile layout shared by kernels: tile word w
// of ChaCha block t is stored at t * 17 + w (padding avoids shared-memory bank conflicts).
HANSA_HD int TileSlot(int word) {
  return (word / kBlockWords) * (kBlockWords + 1) + word % kBlockWords;
}

// Element `i` of a W-bit mask built from 32-bit keystream words (little-endian pairs for 64).
template <typename W>
HANSA_HD W MaskWord(uint32_t lo, uint32_t hi);
template <>
HANSA_HD uint32_t MaskWord<uint32_t>(uint32_t lo, uint32_t) {
  return lo;
}
template <>
HANSA_HD uint64_t MaskWord<uint64_t>(uint32_t lo, uint32_t hi) {
  return (uint64_t{hi} << 32) | lo;
}

HANSA_HD double AddRn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

HANSA_HD double MulRn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

HANSA_HD double SubRn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

// Parameters of stochastic rounding; scale = (2^bits - 1) / (2 * clip), computed on the host.
struct QuantizeConstants {
  double clip;
  double weight;
  double scale;
};

// The ring level of `value` (REQUIRES: not NaN) given random word `r`, as Encoder computes it
// (std::min/std::max written out with the same comparisons).
HANSA_HD uint64_t QuantizeValue(float value, const QuantizeConstants& q, uint32_t r) {
  double x = value;
  const double c = q.clip;
  double lower = (-c < x) ? x : -c;          // std::max(-c, x)
  double clipped = (lower < c) ? lower : c;  // std::min(c, lower)
  double scaled = MulRn(clipped, q.weight);
  double level = MulRn(AddRn(scaled, c), q.scale);
  double fl = floor(level);
  double u = MulRn(static_cast<double>(r), 0x1p-32);
  return static_cast<uint64_t>(fl) + (u < SubRn(level, fl) ? 1 : 0);
}

// The weight element: w * (2^bits - 1) rounded stochastically with random word `r`.
HANSA_HD uint64_t QuantizeWeight(double weight, double levels, uint32_t r) {
  double level = MulRn(weight, levels);
  double fl = floor(level);
  double u = MulRn(static_cast<double>(r), 0x1p-32);
  return static_cast<uint64_t>(fl) + (u < SubRn(level, fl) ? 1 : 0);
}

HANSA_HD double Square(float v) { return MulRn(static_cast<double>(v), static_cast<double>(v)); }

// In-place pairwise tree over kNormThreads partial sums: a[j] += a[j + s] for s = 128, 64, ..1.
// (The device runs the same steps with one thread per j and a barrier between steps.)
inline double TreeSum(double* a) {
  for (int s = kNormThreads / 2; s > 0; s /= 2) {
    for (int j = 0; j < s; ++j) a[j] = AddRn(a[j], a[j + s]);
  }
  return a[0];
}

}  // namespace cuda_math
}  // namespace hansa

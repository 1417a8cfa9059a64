#include "common/secagg/encoding.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/crypto/random.h"

namespace hansa {

namespace {
double Levels(int bits) { return std::ldexp(1.0, bits) - 1.0; }
constexpr size_t kWordsPerDraw = 4096;
}  // namespace

int DefaultQuantizationBits(int cohort_size) {
  const uint64_t n = static_cast<uint64_t>(std::max(1, cohort_size));
  int bits = 30;
  while (bits > 20 && n * ((uint64_t{1} << bits) - 1) > UINT32_MAX) --bits;
  return bits;
}

StatusOr<RingWidth> ChooseRing(const EncodingParams& p) {
  if (!(p.clip > 0) || !std::isfinite(p.clip)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip range must be a positive number, got ", p.clip));
  }
  // Levels are computed in double: beyond 53 bits 2^b - 1 rounds up to 2^b, and a value at the
  // clip (or a weight of 1) would encode one past the largest level.
  if (p.bits < 1 || p.bits > kMaxQuantizationBits) {
    return absl::InvalidArgumentError(
        absl::StrCat("quantization bits must be in 1..", kMaxQuantizationBits, ", got ", p.bits));
  }
  if (p.cohort_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cohort size must be at least 1, got ", p.cohort_size));
  }
  unsigned __int128 max_sum =
      static_cast<unsigned __int128>(p.cohort_size) * ((uint64_t{1} << p.bits) - 1);
  if (max_sum <= UINT32_MAX) return RingWidth::k32;
  if (max_sum <= UINT64_MAX) return RingWidth::k64;
  return absl::InvalidArgumentError(
      absl::StrCat("a sum of ", p.cohort_size, " values of ", p.bits,
                   " bits does not fit in 64 bits; lower the quantization bits"));
}

StatusOr<Encoder> Encoder::Create(const EncodingParams& params) {
  SecretBytes seed(32);
  RETURN_IF_ERROR(RandBytes(seed.data(), seed.size()));
  return CreateWithSeed(params, seed);
}

StatusOr<Encoder> Encoder::CreateWithSeed(const EncodingParams& params, const SecretBytes& seed) {
  ASSIGN_OR_RETURN(RingWidth ring, ChooseRing(params));
  ASSIGN_OR_RETURN(ChaCha20Prg prg, ChaCha20Prg::Create(seed, ChaCha20Nonce{}));
  return Encoder(params, ring, std::move(prg));
}

Status Encoder::Uniforms(size_t count) {
  random_words_.resize(count);
  RETURN_IF_ERROR(prg_.Keystream(prg_offset_ * sizeof(uint32_t),
                                 reinterpret_cast<uint8_t*>(random_words_.data()),
                                 count * sizeof(uint32_t)));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  for (uint32_t& w : random_words_) w = __builtin_bswap32(w);
#endif
  prg_offset_ += count;
  return absl::OkStatus();
}

namespace {

// Stochastic rounding of values[0..n) with random words r[0..n), as the header defines it,
// without branches. level = (clip(x) * w + c) * scale is never negative, so
// floor(level) is its truncation to an integer.
template <typename W>
inline W RoundOne(float value, uint32_t r, double c, double weight, double scale) {
  double x = value;
  double lower = (-c < x) ? x : -c;          // std::max(-c, x)
  double clipped = (lower < c) ? lower : c;  // std::min(c, lower)
  double level = (clipped * weight + c) * scale;
  auto fl = static_cast<int64_t>(level);
  double u = static_cast<double>(r) * 0x1p-32;
  return static_cast<W>(fl) + static_cast<W>(u < level - static_cast<double>(fl));
}

// RoundOne four values at a time (GCC/Clang vector extensions: AVX2 where the CPU has it,
// chosen at load time, otherwise two SSE2 halves, which every x86-64 has), for levels below
// 2^31 so that the truncation is a 32-bit conversion. The unsigned random word becomes a double
// through a signed one plus 2^31, since SSE2 has no unsigned conversion; both are exact. The NaN
// test rides along in the same pass: false when a value is NaN (out is then garbage).
template <typename T, size_t N>
using Lanes __attribute__((vector_size(N * sizeof(T)))) = T;

template <typename W>
inline __attribute__((always_inline)) bool RoundBlockImpl(const float* __restrict values,
                                                          const uint32_t* __restrict r, size_t n,
                                                          double c, double weight, double scale,
                                                          bool narrow, W* __restrict out) {
  size_t i = 0;
  bool nan = false;
  if (narrow) {
    using D = Lanes<double, 4>;
    using I = Lanes<int32_t, 4>;
    using Out = Lanes<W, 4>;
    const D vc = D{} + c, vneg = D{} - c, vw = D{} + weight, vs = D{} + scale;
    Lanes<int64_t, 4> bad{};
    for (; i + 4 <= n; i += 4) {
      Lanes<float, 4> f;
      Lanes<uint32_t, 4> ri;
      std::memcpy(&f, values + i, sizeof(f));
      std::memcpy(&ri, r + i, sizeof(ri));
      D x = __builtin_convertvector(f, D);
      bad |= x != x;
      D lower = vneg < x ? x : vneg;
      D clipped = lower < vc ? lower : vc;
      D level = (clipped * vw + vc) * vs;
      I fl = __builtin_convertvector(level, I);
      D frac = level - __builtin_convertvector(fl, D);
      I rs = reinterpret_cast<I>(ri ^ 0x80000000u);
      D u = (__builtin_convertvector(rs, D) + 0x1p31) * 0x1p-32;
      auto up = u < frac;  // -1 where the value rounds up
      Out o = __builtin_convertvector(fl, Out) - __builtin_convertvector(up, Out);
      std::memcpy(out + i, &o, sizeof(o));
    }
    nan = (bad[0] | bad[1] | bad[2] | bad[3]) != 0;
  }
  for (; i < n; ++i) {
    nan |= std::isnan(values[i]);
    out[i] = RoundOne<W>(values[i], r[i], c, weight, scale);
  }
  return !nan;
}

// One clone per ring word (GCC and Clang do not multiversion templates). Not under
// ThreadSanitizer: the clones' resolver runs while the loader relocates, before TSan's runtime
// is up, and its instrumented code crashes every program at start.
#if defined(__SANITIZE_THREAD__)
#define HANSA_NO_CLONES 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HANSA_NO_CLONES 1
#endif
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(HANSA_NO_CLONES)
#define HANSA_WIDEST_SIMD __attribute__((target_clones("avx2", "default")))
#else
#define HANSA_WIDEST_SIMD
#endif

HANSA_WIDEST_SIMD bool RoundBlock(const float* values, const uint32_t* r, size_t n, double c,
                                  double weight, double scale, bool narrow, uint32_t* out) {
  return RoundBlockImpl(values, r, n, c, weight, scale, narrow, out);
}

HANSA_WIDEST_SIMD bool RoundBlock(const float* values, const uint32_t* r, size_t n, double c,
                                  double weight, double scale, bool narrow, uint64_t* out) {
  return RoundBlockImpl(values, r, n, c, weight, scale, narrow, out);
}

#undef HANSA_WIDEST_SIMD

}  // namespace

template <typename W>
Status Encoder::EncodeImpl(const float* values, size_t count, double weight, W* out) {
  if (!(weight >= 0.0 && weight <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("site weight must be in [0, 1], got ", weight));
  }
  const double c = params_.clip;
  const double scale = Levels(params_.bits) / (2 * c);
  const bool narrow = params_.bits <= 30;
  for (size_t start = 0; start < count; start += kWordsPerDraw) {
    size_t n = std::min(kWordsPerDraw, count - start);
    const float* block = values + start;
    RETURN_IF_ERROR(Uniforms(n));
    if (!RoundBlock(block, random_words_.data(), n, c, weight, scale, narrow, out + start)) {
      size_t nan = std::find_if(block, block + n, [](float v) { return std::isnan(v); }) - block;
      return absl::InvalidArgumentError(
          absl::StrCat("update value ", start + nan, " is NaN; training diverged"));
    }
  }
  return absl::OkStatus();
}

Status Encoder::EncodeValues(const float* values, size_t count, double weight, uint32_t* out) {
  if (ring_ != RingWidth::k32) {
    return absl::InvalidArgumentError("encoder uses the 64-bit ring; pass uint64_t output");
  }
  return EncodeImpl(values, count, weight, out);
}

Status Encoder::EncodeValues(const float* values, size_t count, double weight, uint64_t* out) {
  if (ring_ != RingWidth::k64) {
    return absl::InvalidArgumentError("encoder uses the 32-bit ring; pass uint32_t output");
  }
  return EncodeImpl(values, count, weight, out);
}

StatusOr<uint64_t> Encoder::EncodeWeight(double weight) {
  if (!(weight >= 0.0 && weight <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("site weight must be in [0, 1], got ", weight));
  }
  RETURN_IF_ERROR(Uniforms(1));
  double q = weight * Levels(params_.bits);
  double fl = std::floor(q);
  return static_cast<uint64_t>(fl) + (random_words_[0] * 0x1p-32 < q - fl ? 1 : 0);
}

StatusOr<RingVector> Encoder::Encode(const std::vector<float>& values, double weight) {
  RingVector v = RingVector::Zeros(ring_, EncodedSize(values.size()));
  if (ring_ == RingWidth::k32) {
    RETURN_IF_ERROR(EncodeValues(values.data(), values.size(), weight, v.w32.data()));
  } else {
    RETURN_IF_ERROR(EncodeValues(values.data(), values.size(), weight, v.w64.data()));
  }
  ASSIGN_OR_RETURN(uint64_t w, EncodeWeight(weight));
  if (ring_ == RingWidth::k32) {
    v.w32.back() = static_cast<uint32_t>(w);
  } else {
    v.w64.back() = w;
  }
  return v;
}

namespace {

// Decodes elements [lo, hi) of `words`; false at the first above max_sum (*bad names it).
template <typename W>
bool DecodeBlock(const W* words, size_t lo, size_t hi, uint64_t max_sum, double step, double offset,
                 double total_weight, float* mean, double* weighted_sum, size_t* bad) {
  const bool divide = total_weight > 0;
  for (size_t i = lo; i < hi; ++i) {
    const uint64_t s = words[i];
    if (s > max_sum) {
      *bad = i;
      return false;
    }
    const double ws = static_cast<double>(s) * step - offset;
    mean[i] = divide ? static_cast<float>(ws / total_weight) : 0.0f;
    if (weighted_sum) weighted_sum[i] = ws;
  }
  return true;
}

}  // namespace

StatusOr<DecodedMean> DecodeMean(RingVector sum, size_t num_summands, const EncodingParams& params,
                                 bool keep_sum) {
  ASSIGN_OR_RETURN(RingWidth ring, ChooseRing(params));
  if (sum.width != ring) {
    return absl::InvalidArgumentError("sum is in a different ring than the encoding parameters");
  }
  if (sum.size() < 1) return absl::InvalidArgumentError("encoded sum is empty (no weight element)");
  const double levels = Levels(params.bits);
  const uint64_t max_level = (uint64_t{1} << params.bits) - 1;
  const unsigned __int128 wide_max = static_cast<unsigned __int128>(num_summands) * max_level;
  const uint64_t max_sum = wide_max > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(wide_max);
  const double step = 2 * params.clip / levels;
  const double offset = static_cast<double>(num_summands) * params.clip;
  const size_t n = sum.size() - 1;
  auto too_big = [&](size_t i) {
    return absl::InvalidArgumentError(
        absl::StrCat("element ", i, " of the sum (", sum.at(i), ") exceeds ", num_summands,
                     " encoded inputs; the survivor count or the data is wrong"));
  };
  DecodedMean out;
  // The weight element first, for the divisor; checked in its place, after the values.
  const uint64_t weight = sum.at(n);
  out.total_weight = static_cast<double>(weight) / levels;
  // Reserved, not filled: the mean's pages are touched only as blocks are decoded, while the
  // sum's go back, so the two never hold the whole model twice.
  out.mean.reserve(n);
  if (keep_sum) out.weighted_sum.reserve(n);
  constexpr size_t kBlock = size_t{1} << 16;
  for (size_t lo = 0; lo < n; lo += kBlock) {
    const size_t hi = std::min(n, lo + kBlock);
    out.mean.resize(hi);
    if (keep_sum) out.weighted_sum.resize(hi);
    double* kept = keep_sum ? out.weighted_sum.data() : nullptr;
    size_t bad = 0;
    const bool ok = sum.width == RingWidth::k32
                        ? DecodeBlock(sum.w32.data(), lo, hi, max_sum, step, offset,
                                      out.total_weight, out.mean.data(), kept, &bad)
                        : DecodeBlock(sum.w64.data(), lo, hi, max_sum, step, offset,
                                      out.total_weight, out.mean.data(), kept, &bad);
    if (!ok) return too_big(bad);
    ReleaseRingPages(&sum, lo, hi);
  }
  if (weight > max_sum) return too_big(n);
  return out;
}

}  // namespace hansa

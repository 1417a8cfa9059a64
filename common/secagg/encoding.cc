#include "common/secagg/encoding.h"

#include <cmath>

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
  if (p.bits < 1 || p.bits > 62) {
    return absl::InvalidArgumentError(
        absl::StrCat("quantization bits must be in 1..62, got ", p.bits));
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
  random_words_.assign(count, 0);
  RETURN_IF_ERROR(prg_.ApplyMask(prg_offset_, random_words_.data(), count, MaskOp::kAdd));
  prg_offset_ += count;
  return absl::OkStatus();
}

template <typename W>
Status Encoder::EncodeImpl(const float* values, size_t count, double weight, W* out) {
  if (!(weight >= 0.0 && weight <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("site weight must be in [0, 1], got ", weight));
  }
  const double c = params_.clip;
  const double scale = Levels(params_.bits) / (2 * c);
  for (size_t start = 0; start < count; start += kWordsPerDraw) {
    size_t n = std::min(kWordsPerDraw, count - start);
    RETURN_IF_ERROR(Uniforms(n));
    for (size_t i = 0; i < n; ++i) {
      double x = values[start + i];
      if (std::isnan(x)) {
        return absl::InvalidArgumentError(
            absl::StrCat("update value ", start + i, " is NaN; training diverged"));
      }
      x = std::min(c, std::max(-c, x)) * weight;
      double q = (x + c) * scale;
      double fl = std::floor(q);
      double u = random_words_[i] * 0x1p-32;
      out[start + i] = static_cast<W>(fl) + (u < q - fl ? 1 : 0);
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

std::vector<float> DecodedSum::Mean() const {
  std::vector<float> out(weighted_sum.size(), 0.0f);
  if (total_weight <= 0) return out;
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<float>(weighted_sum[i] / total_weight);
  }
  return out;
}

StatusOr<DecodedSum> DecodeSum(const RingVector& sum, size_t num_summands,
                               const EncodingParams& params) {
  ASSIGN_OR_RETURN(RingWidth ring, ChooseRing(params));
  if (sum.width != ring) {
    return absl::InvalidArgumentError("sum is in a different ring than the encoding parameters");
  }
  if (sum.size() < 1) return absl::InvalidArgumentError("encoded sum is empty (no weight element)");
  const double levels = Levels(params.bits);
  const uint64_t max_level = (uint64_t{1} << params.bits) - 1;
  const unsigned __int128 max_sum = static_cast<unsigned __int128>(num_summands) * max_level;
  DecodedSum out;
  const size_t n = sum.size() - 1;
  out.weighted_sum.resize(n);
  const double step = 2 * params.clip / levels;
  const double offset = static_cast<double>(num_summands) * params.clip;
  for (size_t i = 0; i <= n; ++i) {
    uint64_t s = sum.at(i);
    if (s > max_sum) {
      return absl::InvalidArgumentError(
          absl::StrCat("element ", i, " of the sum (", s, ") exceeds ", num_summands,
                       " encoded inputs; the survivor count or the data is wrong"));
    }
    if (i < n) out.weighted_sum[i] = static_cast<double>(s) * step - offset;
  }
  out.total_weight = static_cast<double>(sum.at(n)) / levels;
  return out;
}

}  // namespace hansa

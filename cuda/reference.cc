#include "cuda/reference.h"

#include <cmath>

namespace hansa {

using cuda_math::ChaChaKey;

namespace {

uint32_t LoadLe32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// Keystream word `word` (32-bit index) of `k`, with a one-block cache.
class WordReader {
 public:
  explicit WordReader(const ChaChaKey& k) : key_(k) {}
  ~WordReader() { SecureWipe(block_, sizeof(block_)); }
  uint32_t Word(uint64_t word) {
    uint64_t block = word / cuda_math::kBlockWords;
    if (block != cached_) {
      cuda_math::ChaCha20Block(key_, static_cast<uint32_t>(block), block_);
      cached_ = block;
    }
    return block_[word % cuda_math::kBlockWords];
  }

 private:
  ChaChaKey key_;
  uint64_t cached_ = UINT64_MAX;
  uint32_t block_[cuda_math::kBlockWords];
};

template <typename W>
Status ApplyImpl(const std::vector<MaskStream>& streams, uint64_t element_offset, W* data,
                 size_t count) {
  RETURN_IF_ERROR(CheckMaskRange(element_offset, count, sizeof(W)));
  for (const MaskStream& s : streams) {
    if (s.key == nullptr) return absl::InvalidArgumentError("mask stream has no key");
    ASSIGN_OR_RETURN(ChaChaKey key, ToChaChaKey(*s.key, s.nonce));
    WordReader reader(key);
    SecureWipe(&key, sizeof(key));
    constexpr uint64_t kWordsPerElement = sizeof(W) / 4;
    for (size_t i = 0; i < count; ++i) {
      uint64_t w = (element_offset + i) * kWordsPerElement;
      W m = cuda_math::MaskWord<W>(reader.Word(w), kWordsPerElement == 2 ? reader.Word(w + 1) : 0);
      data[i] = s.op == MaskOp::kAdd ? W(data[i] + m) : W(data[i] - m);
    }
  }
  return absl::OkStatus();
}

template <typename W>
Status QuantizeImpl(const float* values, size_t count, const QuantizeParams& params, W* out) {
  ASSIGN_OR_RETURN(cuda_math::QuantizeConstants q, MakeQuantizeConstants(params));
  ASSIGN_OR_RETURN(ChaChaKey key, ToChaChaKey(*params.seed, ChaCha20Nonce{}));
  WordReader reader(key);
  SecureWipe(&key, sizeof(key));
  for (size_t i = 0; i < count; ++i) {
    if (std::isnan(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("update value ", i, " is NaN; training diverged"));
    }
    out[i] = static_cast<W>(
        cuda_math::QuantizeValue(values[i], q, reader.Word(params.random_word_offset + i)));
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<ChaChaKey> ToChaChaKey(const SecretBytes& key, const ChaCha20Nonce& nonce) {
  if (key.size() != kChaCha20KeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("ChaCha20 key must be 32 bytes, got ", key.size()));
  }
  ChaChaKey k;
  for (int i = 0; i < 8; ++i) k.key[i] = LoadLe32(key.data() + 4 * i);
  for (int i = 0; i < 3; ++i) k.nonce[i] = LoadLe32(nonce.data() + 4 * i);
  return k;
}

Status CheckMaskRange(uint64_t element_offset, size_t count, size_t word_size) {
  const uint64_t max_elements = kChaCha20MaxStreamBytes / word_size;
  if (element_offset > max_elements || count > max_elements - element_offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ChaCha20 keystream range [", element_offset * word_size, ", +", count * word_size,
        ") exceeds the 2^32 blocks of one key and nonce; split the vector"));
  }
  return absl::OkStatus();
}

Status ReferenceApplyMasks(const std::vector<MaskStream>& streams, uint64_t element_offset,
                           uint32_t* data, size_t count) {
  return ApplyImpl(streams, element_offset, data, count);
}

Status ReferenceApplyMasks(const std::vector<MaskStream>& streams, uint64_t element_offset,
                           uint64_t* data, size_t count) {
  return ApplyImpl(streams, element_offset, data, count);
}

StatusOr<cuda_math::QuantizeConstants> MakeQuantizeConstants(const QuantizeParams& p) {
  if (!(p.clip > 0) || !std::isfinite(p.clip)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip range must be a positive number, got ", p.clip));
  }
  if (p.bits < 1 || p.bits > 62) {
    return absl::InvalidArgumentError(
        absl::StrCat("quantization bits must be in 1..62, got ", p.bits));
  }
  if (!(p.weight >= 0.0 && p.weight <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("site weight must be in [0, 1], got ", p.weight));
  }
  if (p.seed == nullptr || p.seed->size() != kChaCha20KeySize) {
    return absl::InvalidArgumentError("rounding seed must be 32 bytes");
  }
  if (p.random_word_offset > kChaCha20MaxStreamBytes / 4) {
    return CheckMaskRange(p.random_word_offset, 1, 4);
  }
  double levels = std::ldexp(1.0, p.bits) - 1.0;
  return cuda_math::QuantizeConstants{p.clip, p.weight, levels / (2 * p.clip)};
}

Status ReferenceQuantize(const float* values, size_t count, const QuantizeParams& params,
                         uint32_t* out) {
  return QuantizeImpl(values, count, params, out);
}

Status ReferenceQuantize(const float* values, size_t count, const QuantizeParams& params,
                         uint64_t* out) {
  return QuantizeImpl(values, count, params, out);
}

namespace {

// One tile of the first (squaring) or later (plain) stage; `square` selects the input map.
template <typename T, bool kSquare>
double ReduceTile(const T* values, size_t count, size_t base) {
  double lanes[cuda_math::kNormThreads];
  for (int j = 0; j < cuda_math::kNormThreads; ++j) {
    double acc = 0.0;
    for (int r = 0; r < cuda_math::kNormItems; ++r) {
      size_t idx = base + j + size_t{cuda_math::kNormThreads} * r;
      if (idx < count) {
        double v;
        if constexpr (kSquare) {
          v = cuda_math::Square(values[idx]);
        } else {
          v = values[idx];
        }
        acc = cuda_math::AddRn(acc, v);
      }
    }
    lanes[j] = acc;
  }
  return cuda_math::TreeSum(lanes);
}

}  // namespace

std::vector<double> ReferenceReducePass(const double* values, size_t count) {
  std::vector<double> out;
  for (size_t base = 0; base < count; base += cuda_math::kNormTile) {
    out.push_back(ReduceTile<double, false>(values, count, base));
  }
  return out;
}

double ReferenceL2Norm(const float* values, size_t count) {
  if (count == 0) return 0.0;
  std::vector<double> partial;
  for (size_t base = 0; base < count; base += cuda_math::kNormTile) {
    partial.push_back(ReduceTile<float, true>(values, count, base));
  }
  while (partial.size() > 1) partial = ReferenceReducePass(partial.data(), partial.size());
  return std::sqrt(partial[0]);
}

}  // namespace hansa

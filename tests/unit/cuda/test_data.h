// Shared inputs of the cuda tests: random keys and vectors from a fixed-seed generator, and the
// sizes and offsets that cross ChaCha20 block and thread-block boundaries.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "common/crypto/chacha20.h"
#include "common/crypto/secret.h"

namespace hansa {
namespace cuda_test {

// 0, partial blocks, one block, a tile (4096 words) and around it, several tiles.
inline const std::vector<size_t> kSizes = {0, 1, 3, 15, 16, 17, 255, 257, 4095, 4096, 4097, 65537};
// Offsets starting mid-block, at a block, at a tile, and far in the stream.
inline const std::vector<uint64_t> kOffsets = {0, 1, 7, 15, 16, 4095, 4099, 1000003};

inline SecretBytes RandomKey(std::mt19937_64& rng) {
  SecretBytes key(kChaCha20KeySize);
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(rng());
  return key;
}

inline ChaCha20Nonce RandomNonce(std::mt19937_64& rng) {
  ChaCha20Nonce n;
  for (auto& b : n) b = static_cast<uint8_t>(rng());
  return n;
}

template <typename W>
std::vector<W> RandomWords(std::mt19937_64& rng, size_t n) {
  std::vector<W> v(n);
  for (auto& w : v) w = static_cast<W>(rng());
  return v;
}

// Update values: mostly inside [-2, 2], some beyond the clip range, some infinities.
inline std::vector<float> RandomUpdate(std::mt19937_64& rng, size_t n) {
  std::normal_distribution<float> normal(0.0f, 0.8f);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = normal(rng);
    if (i % 97 == 5) v[i] = 1e6f;
    if (i % 131 == 7) v[i] = -INFINITY;
  }
  return v;
}

}  // namespace cuda_test
}  // namespace hansa

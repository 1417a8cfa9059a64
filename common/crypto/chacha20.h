// ChaCha20 keystream (RFC 8439: 32-byte key, 96-bit nonce, 32-bit block counter) through
// OpenSSL EVP, and the mask arithmetic of secure aggregation built on it.
//
// The mask PRG reads the keystream as little-endian words: word j of a 32-bit mask is
// keystream bytes [4j, 4j+4), of a 64-bit mask bytes [8j, 8j+8); keystream byte 0 is byte 0 of
// block 0. The same definition is implemented by the CUDA kernels in cuda/, bit for bit.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/crypto/secret.h"
#include "common/status/status.h"

namespace hansa {

constexpr size_t kChaCha20KeySize = 32;
constexpr size_t kChaCha20NonceSize = 12;
constexpr size_t kChaCha20BlockSize = 64;
// One key/nonce pair yields at most 2^32 blocks (the 32-bit counter of RFC 8439).
constexpr uint64_t kChaCha20MaxStreamBytes = uint64_t{1} << 38;
using ChaCha20Nonce = std::array<uint8_t, kChaCha20NonceSize>;

// Writes `size` keystream bytes starting at block `counter` (RFC 8439 section 2.4 with a zero
// plaintext). InvalidArgument for a key that is not 32 bytes or a range past 2^32 blocks.
Status ChaCha20Keystream(const SecretBytes& key, const ChaCha20Nonce& nonce, uint32_t counter,
                         uint8_t* out, size_t size);

enum class MaskOp { kAdd, kSubtract };

// One mask stream: the ChaCha20 keystream of (key, nonce), added to or subtracted from data
// word by word. What the CPU PRG below and the CUDA kernels in cuda/ both apply.
struct MaskStream {
  const SecretBytes* key = nullptr;  // 32 bytes; not owned
  ChaCha20Nonce nonce{};
  MaskOp op = MaskOp::kAdd;
};

// A seekable ChaCha20 keystream starting at block 0: the mask PRG. Random access lets a masked
// vector be produced and removed chunk by chunk. Owns an OpenSSL context and a small scratch
// buffer (wiped on destruction). Not thread-safe: one owner; movable.
class ChaCha20Prg {
 public:
  static StatusOr<ChaCha20Prg> Create(const SecretBytes& key, const ChaCha20Nonce& nonce);
  ChaCha20Prg(ChaCha20Prg&&) noexcept;
  ChaCha20Prg& operator=(ChaCha20Prg&&) noexcept;
  ~ChaCha20Prg();

  // Keystream bytes [byte_offset, byte_offset + size).
  Status Keystream(uint64_t byte_offset, uint8_t* out, size_t size);

  // data[i] = data[i] +/- word(element_offset + i) mod 2^32 (or 2^64), for i < count.
  Status ApplyMask(uint64_t element_offset, uint32_t* data, size_t count, MaskOp op);
  Status ApplyMask(uint64_t element_offset, uint64_t* data, size_t count, MaskOp op);

 private:
  struct State;
  explicit ChaCha20Prg(std::unique_ptr<State> state);
  template <typename Word>
  Status Apply(uint64_t element_offset, Word* data, size_t count, MaskOp op);
  Status Seek(uint64_t byte_offset, size_t size);
  std::unique_ptr<State> state_;
};

// data[i] = data[i] +/- word_s(element_offset + i) for every stream s, i < count: what
// ApplyMask does stream after stream, in one pass over memory. The data is taken in blocks that
// stay in cache while every stream passes over them, where one ApplyMask per stream would pass
// over all of data once per stream. With threads > 1, disjoint ranges of data run on that many
// threads (each with its own cipher contexts), for the coordinator's unmasking and a site's
// masking on a multi-core machine. InvalidArgument as ApplyMask (a bad key or range).
Status ApplyMaskStreams(const std::vector<MaskStream>& streams, uint64_t element_offset,
                        uint32_t* data, size_t count, int threads = 1);
Status ApplyMaskStreams(const std::vector<MaskStream>& streams, uint64_t element_offset,
                        uint64_t* data, size_t count, int threads = 1);

// The threads worth using for mask work on this machine: its hardware threads, at most 16.
int MaskThreads();

}  // namespace hansa

#include "common/crypto/chacha20.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "common/cores/usable_cores.h"
#include "common/crypto/internal/openssl_ptr.h"

namespace hansa {

using crypto_internal::EvpCipherCtxPtr;
using crypto_internal::InternalOpenSslError;

namespace {

// Keystream is made in pieces of this size: large enough that OpenSSL runs its widest SIMD
// path, small enough that the piece stays in L1 while it is added into the destination.
constexpr size_t kPieceBytes = 8192;
alignas(64) const unsigned char kZeros[kPieceBytes] = {};

Status CheckRange(uint64_t byte_offset, size_t size) {
  if (byte_offset > kChaCha20MaxStreamBytes || size > kChaCha20MaxStreamBytes - byte_offset) {
    return absl::InvalidArgumentError(
        absl::StrCat("ChaCha20 keystream range [", byte_offset, ", +", size,
                     ") exceeds the 2^32 blocks of one key and nonce; split the vector"));
  }
  return absl::OkStatus();
}

inline Status XorZeros(EVP_CIPHER_CTX* ctx, unsigned char* out, size_t size) {
  int len = 0;
  if (EVP_EncryptUpdate(ctx, out, &len, kZeros, static_cast<int>(size)) != 1) {
    return InternalOpenSslError("ChaCha20 keystream generation");
  }
  return absl::OkStatus();
}

// The add/subtract loops use GCC/Clang vector extensions: 16-byte lanes that every x86-64
// and AArch64 core has, so the build's -O2 (which does not auto-vectorize) still runs them at
// several words per cycle, far above the cipher's speed.
template <typename Word>
using Lanes __attribute__((vector_size(16))) = Word;

template <typename Word>
inline Word LoadLe(const unsigned char* p) {
  Word w;
  std::memcpy(&w, p, sizeof(w));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  if constexpr (sizeof(Word) == 4) w = __builtin_bswap32(w);
  if constexpr (sizeof(Word) == 8) w = __builtin_bswap64(w);
#endif
  return w;
}

template <typename Word, bool kAdd>
void CombineWords(Word* __restrict data, const unsigned char* __restrict ks, size_t count) {
  size_t i = 0;
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  using V = Lanes<Word>;
  constexpr size_t kPerLane = sizeof(V) / sizeof(Word);
  for (; i + 4 * kPerLane <= count; i += 4 * kPerLane) {
    V d[4], k[4];
    std::memcpy(d, data + i, sizeof(d));
    std::memcpy(k, ks + i * sizeof(Word), sizeof(k));
    for (int j = 0; j < 4; ++j) d[j] = kAdd ? d[j] + k[j] : d[j] - k[j];
    std::memcpy(data + i, d, sizeof(d));
  }
#endif
  for (; i < count; ++i) {
    Word k = LoadLe<Word>(ks + i * sizeof(Word));
    data[i] = kAdd ? data[i] + k : data[i] - k;
  }
}

}  // namespace

struct ChaCha20Prg::State {
  EvpCipherCtxPtr ctx;
  ChaCha20Nonce nonce{};
  alignas(64) unsigned char scratch[kPieceBytes];
  ~State() { SecureWipe(scratch, sizeof(scratch)); }
};

Status ChaCha20Keystream(const SecretBytes& key, const ChaCha20Nonce& nonce, uint32_t counter,
                         uint8_t* out, size_t size) {
  ASSIGN_OR_RETURN(ChaCha20Prg prg, ChaCha20Prg::Create(key, nonce));
  return prg.Keystream(uint64_t{counter} * kChaCha20BlockSize, out, size);
}

ChaCha20Prg::ChaCha20Prg(std::unique_ptr<State> state) : state_(std::move(state)) {}
ChaCha20Prg::ChaCha20Prg(ChaCha20Prg&&) noexcept = default;
ChaCha20Prg& ChaCha20Prg::operator=(ChaCha20Prg&&) noexcept = default;
ChaCha20Prg::~ChaCha20Prg() = default;

StatusOr<ChaCha20Prg> ChaCha20Prg::Create(const SecretBytes& key, const ChaCha20Nonce& nonce) {
  if (key.size() != kChaCha20KeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("ChaCha20 key must be 32 bytes, got ", key.size()));
  }
  auto state = std::make_unique<State>();
  state->ctx.reset(EVP_CIPHER_CTX_new());
  state->nonce = nonce;
  unsigned char iv[16] = {};
  std::memcpy(iv + 4, nonce.data(), nonce.size());
  if (!state->ctx ||
      EVP_EncryptInit_ex(state->ctx.get(), EVP_chacha20(), nullptr, key.data(), iv) != 1) {
    return InternalOpenSslError("ChaCha20 setup");
  }
  return ChaCha20Prg(std::move(state));
}

// Positions the cipher at `byte_offset`: the OpenSSL IV is the little-endian block counter
// followed by the RFC 8439 nonce; a partial first block is generated and thrown away.
Status ChaCha20Prg::Seek(uint64_t byte_offset, size_t size) {
  RETURN_IF_ERROR(CheckRange(byte_offset, size));
  uint64_t block = byte_offset / kChaCha20BlockSize;
  unsigned char iv[16];
  for (int i = 0; i < 4; ++i) iv[i] = static_cast<unsigned char>(block >> (8 * i));
  std::memcpy(iv + 4, state_->nonce.data(), state_->nonce.size());
  if (EVP_EncryptInit_ex(state_->ctx.get(), nullptr, nullptr, nullptr, iv) != 1) {
    return InternalOpenSslError("ChaCha20 seek");
  }
  size_t skip = static_cast<size_t>(byte_offset % kChaCha20BlockSize);
  if (skip > 0) RETURN_IF_ERROR(XorZeros(state_->ctx.get(), state_->scratch, skip));
  return absl::OkStatus();
}

Status ChaCha20Prg::Keystream(uint64_t byte_offset, uint8_t* out, size_t size) {
  RETURN_IF_ERROR(Seek(byte_offset, size));
  for (size_t done = 0; done < size;) {
    size_t n = std::min(kPieceBytes, size - done);
    RETURN_IF_ERROR(XorZeros(state_->ctx.get(), out + done, n));
    done += n;
  }
  return absl::OkStatus();
}

template <typename Word>
Status ChaCha20Prg::Apply(uint64_t element_offset, Word* data, size_t count, MaskOp op) {
  if (element_offset > kChaCha20MaxStreamBytes / sizeof(Word) ||
      count > kChaCha20MaxStreamBytes / sizeof(Word)) {
    return CheckRange(kChaCha20MaxStreamBytes, 1);
  }
  RETURN_IF_ERROR(Seek(element_offset * sizeof(Word), count * sizeof(Word)));
  constexpr size_t kPieceWords = kPieceBytes / sizeof(Word);
  for (size_t done = 0; done < count;) {
    size_t n = std::min(kPieceWords, count - done);
    RETURN_IF_ERROR(XorZeros(state_->ctx.get(), state_->scratch, n * sizeof(Word)));
    if (op == MaskOp::kAdd) {
      CombineWords<Word, true>(data + done, state_->scratch, n);
    } else {
      CombineWords<Word, false>(data + done, state_->scratch, n);
    }
    done += n;
  }
  return absl::OkStatus();
}

Status ChaCha20Prg::ApplyMask(uint64_t element_offset, uint32_t* data, size_t count, MaskOp op) {
  return Apply(element_offset, data, count, op);
}

Status ChaCha20Prg::ApplyMask(uint64_t element_offset, uint64_t* data, size_t count, MaskOp op) {
  return Apply(element_offset, data, count, op);
}

namespace {

// Words of data per block: 64 KiB, which stays in a core's L2 while every stream's keystream
// (made in kPieceBytes pieces, in L1) is added into it.
constexpr size_t kStreamBlockBytes = 64 << 10;

template <typename Word>
Status ApplyStreamsToRange(const std::vector<MaskStream>& streams, uint64_t element_offset,
                           Word* data, size_t count) {
  std::vector<ChaCha20Prg> prgs;
  prgs.reserve(streams.size());
  for (const MaskStream& s : streams) {
    if (s.key == nullptr) return absl::InvalidArgumentError("mask stream without a key");
    ASSIGN_OR_RETURN(ChaCha20Prg prg, ChaCha20Prg::Create(*s.key, s.nonce));
    prgs.push_back(std::move(prg));
  }
  constexpr size_t kBlockWords = kStreamBlockBytes / sizeof(Word);
  for (size_t done = 0; done < count; done += kBlockWords) {
    const size_t n = std::min(kBlockWords, count - done);
    for (size_t s = 0; s < prgs.size(); ++s) {
      RETURN_IF_ERROR(prgs[s].ApplyMask(element_offset + done, data + done, n, streams[s].op));
    }
  }
  return absl::OkStatus();
}

template <typename Word>
Status ApplyStreams(const std::vector<MaskStream>& streams, uint64_t element_offset, Word* data,
                    size_t count, int threads) {
  // The whole range is checked before any word changes.
  if (element_offset > kChaCha20MaxStreamBytes / sizeof(Word) ||
      count > kChaCha20MaxStreamBytes / sizeof(Word)) {
    return CheckRange(kChaCha20MaxStreamBytes, 1);
  }
  RETURN_IF_ERROR(CheckRange(element_offset * sizeof(Word), count * sizeof(Word)));
  constexpr size_t kBlockWords = kStreamBlockBytes / sizeof(Word);
  // Whole blocks per thread, and no thread for less than four blocks (256 KiB), where
  // starting it and its cipher contexts would cost about as much as its share of the work.
  constexpr size_t kMinBlocksPerThread = 4;
  const size_t blocks = (count + kBlockWords - 1) / kBlockWords;
  const size_t workers =
      std::max<size_t>(1, std::min<size_t>(std::max(threads, 1), blocks / kMinBlocksPerThread));
  if (workers == 1) return ApplyStreamsToRange(streams, element_offset, data, count);
  const size_t per_worker = (blocks + workers - 1) / workers * kBlockWords;
  std::vector<Status> results(workers);
  std::vector<std::thread> pool;
  pool.reserve(workers);
  for (size_t w = 0; w < workers; ++w) {
    const size_t begin = std::min(count, w * per_worker);
    const size_t n = std::min(count - begin, per_worker);
    pool.emplace_back([&, w, begin, n] {
      results[w] = ApplyStreamsToRange(streams, element_offset + begin, data + begin, n);
    });
  }
  for (std::thread& t : pool) t.join();
  for (const Status& st : results) RETURN_IF_ERROR(st);
  return absl::OkStatus();
}

}  // namespace

Status ApplyMaskStreams(const std::vector<MaskStream>& streams, uint64_t element_offset,
                        uint32_t* data, size_t count, int threads) {
  return ApplyStreams(streams, element_offset, data, count, threads);
}

Status ApplyMaskStreams(const std::vector<MaskStream>& streams, uint64_t element_offset,
                        uint64_t* data, size_t count, int threads) {
  return ApplyStreams(streams, element_offset, data, count, threads);
}

int MaskThreads() { return std::clamp(UsableCores(), 1, 16); }

}  // namespace hansa

#include "common/crypto/chacha20.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>
#include <random>
#include <vector>

#include "tests/unit/crypto/test_util.h"

namespace hansa {
namespace {

using testing_util::ArrayFromHex;
using testing_util::Hex;
using testing_util::Unhex;

SecretBytes RfcKey() {
  std::string k(32, '\0');
  std::iota(k.begin(), k.end(), 0);
  return SecretBytes(k);
}

const char kBlock232[] =
    "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4ed2826446079faa0914c2d705d9"
    "8b02a2b5129cd1de164eb9cbd083e8a2503c4e";

// RFC 8439 section 2.3.2: the block function with counter 1.
TEST(ChaCha20Test, Rfc8439BlockFunction) {
  std::string out(64, '\0');
  ASSERT_TRUE(ChaCha20Keystream(RfcKey(), ArrayFromHex<ChaCha20Nonce>("000000090000004a00000000"),
                                1, reinterpret_cast<uint8_t*>(out.data()), out.size())
                  .ok());
  EXPECT_EQ(Hex(out), kBlock232);
}

// RFC 8439 section 2.4.2: encryption of the sunscreen text, counter 1.
TEST(ChaCha20Test, Rfc8439Encryption) {
  const std::string plaintext =
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
      "future, sunscreen would be it.";
  std::string ks(plaintext.size(), '\0');
  ASSERT_TRUE(ChaCha20Keystream(RfcKey(), ArrayFromHex<ChaCha20Nonce>("000000000000004a00000000"),
                                1, reinterpret_cast<uint8_t*>(ks.data()), ks.size())
                  .ok());
  std::string ct(plaintext.size(), '\0');
  for (size_t i = 0; i < ct.size(); ++i) ct[i] = static_cast<char>(plaintext[i] ^ ks[i]);
  EXPECT_EQ(Hex(ct),
            "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0bf91b65c5524733ab8f59"
            "3dabcd62b3571639d624e65152ab8f530c359f0861d807ca0dbf500d6a6156a38e088a22b65e52bc514d"
            "16ccf806818ce91ab77937365af90bbf74a35be6b40b8eedf2785e42874d");
}

// Mask word j of a 32-bit mask is keystream bytes [4j, 4j+4) little-endian: words 16..31 are
// block 1, the RFC 2.3.2 block.
TEST(ChaCha20PrgTest, MaskWordsAreLittleEndianKeystreamWords) {
  auto prg = ChaCha20Prg::Create(RfcKey(), ArrayFromHex<ChaCha20Nonce>("000000090000004a00000000"));
  ASSERT_TRUE(prg.ok());
  std::vector<uint32_t> w(16, 0);
  ASSERT_TRUE(prg->ApplyMask(16, w.data(), w.size(), MaskOp::kAdd).ok());
  EXPECT_EQ(w[0], 0xe4e7f110u);
  EXPECT_EQ(w[15], 0x4e3c50a2u);
  std::vector<uint64_t> d(8, 0);
  ASSERT_TRUE(prg->ApplyMask(8, d.data(), d.size(), MaskOp::kAdd).ok());
  EXPECT_EQ(d[0], 0x15593bd1e4e7f110ull);
}

TEST(ChaCha20PrgTest, ChunkedAtOddOffsetsEqualsWholeAndSubtractUndoesAdd) {
  auto prg = ChaCha20Prg::Create(SecretBytes(std::string(32, 'm')), ChaCha20Nonce{});
  ASSERT_TRUE(prg.ok());
  std::mt19937 rng(7);
  const size_t n = 50'000;
  std::vector<uint32_t> data(n);
  for (auto& v : data) v = rng();
  std::vector<uint32_t> whole = data, chunked = data;
  ASSERT_TRUE(prg->ApplyMask(0, whole.data(), n, MaskOp::kAdd).ok());
  for (size_t off = 0; off < n;) {
    size_t len = std::min<size_t>(n - off, 1 + rng() % 7000);
    ASSERT_TRUE(prg->ApplyMask(off, chunked.data() + off, len, MaskOp::kAdd).ok());
    off += len;
  }
  EXPECT_EQ(whole, chunked);
  EXPECT_NE(whole, data);
  ASSERT_TRUE(prg->ApplyMask(0, whole.data(), n, MaskOp::kSubtract).ok());
  EXPECT_EQ(whole, data);

  std::vector<uint64_t> d64(3001, 5), copy = d64;
  ASSERT_TRUE(prg->ApplyMask(123, d64.data(), d64.size(), MaskOp::kSubtract).ok());
  ASSERT_TRUE(prg->ApplyMask(123, d64.data(), d64.size(), MaskOp::kAdd).ok());
  EXPECT_EQ(d64, copy);
}

TEST(ChaCha20PrgTest, KeystreamSeekMatchesSequential) {
  auto prg = ChaCha20Prg::Create(SecretBytes(std::string(32, 'z')), ChaCha20Nonce{1, 2, 3});
  ASSERT_TRUE(prg.ok());
  std::vector<uint8_t> all(1000), part(333);
  ASSERT_TRUE(prg->Keystream(0, all.data(), all.size()).ok());
  ASSERT_TRUE(prg->Keystream(77, part.data(), part.size()).ok());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), all.begin() + 77));
}

TEST(ChaCha20PrgTest, RejectsBadKeyAndRangesPastTheCounter) {
  EXPECT_EQ(ChaCha20Prg::Create(SecretBytes(16), ChaCha20Nonce{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto prg = ChaCha20Prg::Create(SecretBytes(32), ChaCha20Nonce{});
  ASSERT_TRUE(prg.ok());
  uint8_t b[2];
  auto st = prg->Keystream(kChaCha20MaxStreamBytes - 1, b, 2);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("2^32 blocks"));
  EXPECT_TRUE(prg->Keystream(kChaCha20MaxStreamBytes - 2, b, 2).ok());
}

// ApplyMaskStreams against one ApplyMask per stream, stream after stream: sizes around the 64 KiB
// block and the thread splits, a start mid-block, both rings, both signs, 1..5 threads.
template <typename Word>
void CheckStreamsEqualOneByOne() {
  std::mt19937_64 rng(7);
  std::vector<SecretBytes> keys;
  for (int k = 0; k < 4; ++k) {
    std::string key(32, '\0');
    for (char& c : key) c = static_cast<char>(rng());
    keys.emplace_back(key);
  }
  ChaCha20Nonce other_nonce{};
  other_nonce[3] = 9;
  std::vector<MaskStream> streams = {{&keys[0], ChaCha20Nonce{}, MaskOp::kAdd},
                                     {&keys[1], ChaCha20Nonce{}, MaskOp::kSubtract},
                                     {&keys[2], other_nonce, MaskOp::kAdd},
                                     {&keys[3], ChaCha20Nonce{}, MaskOp::kSubtract}};
  const size_t block = (64 << 10) / sizeof(Word);
  // From 8 blocks on, two threads or more share the work (four blocks each at least).
  for (size_t count : {size_t{0}, size_t{1}, size_t{17}, block - 1, block, 3 * block + 5,
                       9 * block + 7, 17 * block}) {
    for (uint64_t offset : {uint64_t{0}, uint64_t{3}, uint64_t{1000003}}) {
      std::vector<Word> data(count);
      for (Word& w : data) w = static_cast<Word>(rng());
      std::vector<Word> expected = data;
      for (const MaskStream& s : streams) {
        auto prg = ChaCha20Prg::Create(*s.key, s.nonce);
        ASSERT_TRUE(prg.ok());
        ASSERT_TRUE(prg->ApplyMask(offset, expected.data(), count, s.op).ok());
      }
      for (int threads = 1; threads <= 5; ++threads) {
        std::vector<Word> got = data;
        ASSERT_TRUE(ApplyMaskStreams(streams, offset, got.data(), count, threads).ok());
        ASSERT_EQ(got, expected) << "count " << count << " offset " << offset << " threads "
                                 << threads;
      }
    }
  }
}

TEST(ApplyMaskStreamsTest, EqualsEachStreamInTurn32) { CheckStreamsEqualOneByOne<uint32_t>(); }
TEST(ApplyMaskStreamsTest, EqualsEachStreamInTurn64) { CheckStreamsEqualOneByOne<uint64_t>(); }

TEST(ApplyMaskStreamsTest, BadKeyOrRangeChangesNothing) {
  SecretBytes good(32), short_key(16);
  std::vector<uint32_t> data(600000, 5);  // 37 blocks: three threads with threads = 3
  const std::vector<uint32_t> before = data;
  std::vector<MaskStream> bad_key = {{&good, ChaCha20Nonce{}, MaskOp::kAdd},
                                     {&short_key, ChaCha20Nonce{}, MaskOp::kAdd}};
  for (int threads : {1, 3}) {
    Status st = ApplyMaskStreams(bad_key, 0, data.data(), data.size(), threads);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("32 bytes"));
  }
  std::vector<MaskStream> one = {{&good, ChaCha20Nonce{}, MaskOp::kAdd}};
  Status st = ApplyMaskStreams(one, kChaCha20MaxStreamBytes / 4 - 10, data.data(), data.size(), 2);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("2^32 blocks"));
  // Every key is checked before any word changes, and the range before any cipher runs.
  std::vector<MaskStream> bad_first = {{&short_key, ChaCha20Nonce{}, MaskOp::kAdd}};
  EXPECT_FALSE(ApplyMaskStreams(bad_first, 0, data.data(), data.size(), 1).ok());
  EXPECT_EQ(data, before);
}

}  // namespace
}  // namespace hansa

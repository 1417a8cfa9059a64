// The kernels' arithmetic on the CPU (cuda/reference.h) against RFC 8439 and common/crypto.
#include "cuda/reference.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "tests/unit/cuda/test_data.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;
using namespace cuda_test;  // NOLINT

// RFC 8439 section 2.3.2: key 00..1f, nonce 00:00:00:09:00:00:00:4a:00:00:00:00, counter 1.
TEST(ChaCha20BlockTest, MatchesRfc8439BlockVector) {
  SecretBytes key(32);
  for (int i = 0; i < 32; ++i) key[i] = static_cast<uint8_t>(i);
  ChaCha20Nonce nonce = {0, 0, 0, 0x09, 0, 0, 0, 0x4a, 0, 0, 0, 0};
  auto k = ToChaChaKey(key, nonce);
  ASSERT_TRUE(k.ok()) << k.status();
  uint32_t out[16];
  cuda_math::ChaCha20Block(*k, 1, out);
  const uint32_t expected[16] = {0xe4e7f110, 0x15593bd1, 0x1fdd0f50, 0xc47120a3,
                                 0xc7f4d1c7, 0x0368c033, 0x9aaa2204, 0x4e6cd4c3,
                                 0x466482d2, 0x09aa9f07, 0x05d7c214, 0xa2028bd9,
                                 0xd19c12b5, 0xb94e16de, 0xe883d0cb, 0x4e3c50a2};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(out[i], expected[i]) << "word " << i;
}

TEST(ChaCha20BlockTest, RefusesKeysThatAreNot32Bytes) {
  auto k = ToChaChaKey(SecretBytes(16), ChaCha20Nonce{});
  EXPECT_EQ(k.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(k.status().message()), HasSubstr("32 bytes, got 16"));
}

template <typename W>
void CheckMasksMatchPrg(uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t size : kSizes) {
    for (uint64_t offset : kOffsets) {
      SecretBytes k1 = RandomKey(rng), k2 = RandomKey(rng);
      ChaCha20Nonce n1 = RandomNonce(rng), n2 = RandomNonce(rng);
      std::vector<W> data = RandomWords<W>(rng, size);
      std::vector<W> expected = data;
      auto p1 = ChaCha20Prg::Create(k1, n1);
      auto p2 = ChaCha20Prg::Create(k2, n2);
      ASSERT_TRUE(p1.ok() && p2.ok());
      ASSERT_TRUE(p1->ApplyMask(offset, expected.data(), size, MaskOp::kAdd).ok());
      ASSERT_TRUE(p2->ApplyMask(offset, expected.data(), size, MaskOp::kSubtract).ok());
      std::vector<MaskStream> streams = {{&k1, n1, MaskOp::kAdd}, {&k2, n2, MaskOp::kSubtract}};
      ASSERT_TRUE(ReferenceApplyMasks(streams, offset, data.data(), size).ok());
      ASSERT_EQ(data, expected) << "size " << size << " offset " << offset;
    }
  }
}

TEST(ReferenceMaskTest, Masks32MatchChaCha20PrgAtEverySizeAndOffset) {
  CheckMasksMatchPrg<uint32_t>(1);
}

TEST(ReferenceMaskTest, Masks64MatchChaCha20PrgAtEverySizeAndOffset) {
  CheckMasksMatchPrg<uint64_t>(2);
}

TEST(ReferenceMaskTest, AddThenSubtractRestoresTheData) {
  std::mt19937_64 rng(3);
  SecretBytes key = RandomKey(rng);
  std::vector<uint32_t> data = RandomWords<uint32_t>(rng, 1000), original = data;
  ASSERT_TRUE(ReferenceApplyMasks({{&key, {}, MaskOp::kAdd}}, 5, data.data(), data.size()).ok());
  EXPECT_NE(data, original);
  ASSERT_TRUE(
      ReferenceApplyMasks({{&key, {}, MaskOp::kSubtract}}, 5, data.data(), data.size()).ok());
  EXPECT_EQ(data, original);
}

TEST(ReferenceMaskTest, RefusesRangesPastOneStream) {
  SecretBytes key(32);
  uint64_t word = 0;
  // 2^35 eight-byte elements fill the 2^38-byte stream; one more does not fit.
  Status st = ReferenceApplyMasks({{&key, {}, MaskOp::kAdd}}, uint64_t{1} << 35, &word, 1);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("exceeds the 2^32 blocks"));
  EXPECT_TRUE(
      ReferenceApplyMasks({{&key, {}, MaskOp::kAdd}}, (uint64_t{1} << 35) - 1, &word, 1).ok());
}

TEST(ReferenceL2NormTest, AgreesWithALongDoubleSumAndIsRepeatable) {
  std::mt19937_64 rng(4);
  for (size_t size :
       {size_t{0}, size_t{1}, size_t{2047}, size_t{2049}, size_t{300001}, size_t{4200000}}) {
    std::vector<float> v = RandomUpdate(rng, size);
    for (float& x : v) {
      if (!std::isfinite(x)) x = 3.0f;
    }
    long double exact = 0;
    for (float x : v) exact += static_cast<long double>(x) * x;
    double norm = ReferenceL2Norm(v.data(), v.size());
    EXPECT_NEAR(norm, std::sqrt(static_cast<double>(exact)), 1e-12 * (1 + norm)) << size;
    EXPECT_EQ(norm, ReferenceL2Norm(v.data(), v.size()));
  }
}

TEST(ReferenceL2NormTest, ReducesInTheDocumentedOrder) {
  // Values whose sum depends on the order: 1e16 + 1 + ... is not associative in double.
  std::vector<double> v(3000, 1.0);
  v[0] = 1e16;
  std::vector<double> lanes(cuda_math::kNormThreads, 0.0);
  for (int j = 0; j < cuda_math::kNormThreads; ++j) {
    for (int r = 0; r < cuda_math::kNormItems; ++r) {
      size_t idx = j + size_t{cuda_math::kNormThreads} * r;
      lanes[j] += v[idx];
    }
  }
  double tile0 = cuda_math::TreeSum(lanes.data());
  double tile1 = 0;
  {
    std::vector<double> l(cuda_math::kNormThreads, 0.0);
    for (size_t idx = cuda_math::kNormTile; idx < v.size(); ++idx) {
      l[(idx - cuda_math::kNormTile) % cuda_math::kNormThreads] += v[idx];
    }
    tile1 = cuda_math::TreeSum(l.data());
  }
  std::vector<double> pass = ReferenceReducePass(v.data(), v.size());
  ASSERT_EQ(pass.size(), 2u);
  EXPECT_EQ(pass[0], tile0);
  EXPECT_EQ(pass[1], tile1);
  EXPECT_EQ(tile1, 3000.0 - cuda_math::kNormTile);
}

TEST(QuantizeConstantsTest, RefusesWhatTheEncoderRefuses) {
  SecretBytes seed(32);
  QuantizeParams p;
  p.seed = &seed;
  p.clip = 0;
  EXPECT_THAT(std::string(MakeQuantizeConstants(p).status().message()), HasSubstr("clip"));
  p.clip = 1;
  p.bits = 63;
  EXPECT_THAT(std::string(MakeQuantizeConstants(p).status().message()), HasSubstr("1..62"));
  p.bits = 16;
  p.weight = 1.5;
  EXPECT_THAT(std::string(MakeQuantizeConstants(p).status().message()), HasSubstr("[0, 1]"));
  p.weight = 1;
  SecretBytes short_seed(8);
  p.seed = &short_seed;
  EXPECT_EQ(MakeQuantizeConstants(p).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hansa

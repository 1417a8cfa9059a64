// The quantizer's CPU reference against common/secagg's Encoder, bit for bit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/secagg/encoding.h"
#include "cuda/reference.h"
#include "tests/unit/cuda/test_data.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;
using namespace cuda_test;  // NOLINT

template <typename W>
W* Out(RingVector& v);
template <>
uint32_t* Out<uint32_t>(RingVector& v) {
  return v.w32.data();
}
template <>
uint64_t* Out<uint64_t>(RingVector& v) {
  return v.w64.data();
}

// Encodes `values` in two chunks with the Encoder and with ReferenceQuantize (second chunk at
// the word offset the encoder has reached) and compares every element, weight included.
template <typename W>
void CheckQuantizerMatchesEncoder(const EncodingParams& params, double weight, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (size_t size : kSizes) {
    SecretBytes rounding_seed = RandomKey(rng);
    std::vector<float> values = RandomUpdate(rng, size);
    auto encoder = Encoder::CreateWithSeed(params, rounding_seed);
    ASSERT_TRUE(encoder.ok()) << encoder.status();
    auto encoded = encoder->Encode(values, weight);
    ASSERT_TRUE(encoded.ok()) << encoded.status();

    size_t first = size / 3;
    RingVector mine = RingVector::Zeros(encoder->ring(), Encoder::EncodedSize(size));
    QuantizeParams q{params.clip, params.bits, weight, &rounding_seed, 0};
    ASSERT_TRUE(ReferenceQuantize(values.data(), first, q, Out<W>(mine)).ok());
    q.random_word_offset = first;
    ASSERT_TRUE(
        ReferenceQuantize(values.data() + first, size - first, q, Out<W>(mine) + first).ok());
    // The weight element uses the next random word.
    ChaCha20Prg prg = std::move(ChaCha20Prg::Create(rounding_seed, ChaCha20Nonce{})).value();
    uint32_t r = 0;
    ASSERT_TRUE(prg.ApplyMask(size, &r, 1, MaskOp::kAdd).ok());
    Out<W>(mine)[size] =
        static_cast<W>(cuda_math::QuantizeWeight(weight, std::ldexp(1.0, params.bits) - 1.0, r));
    ASSERT_EQ(mine, *encoded) << "size " << size;
  }
}

TEST(QuantizeMatchesEncoderTest, ThirtyTwoBitRing) {
  CheckQuantizerMatchesEncoder<uint32_t>({0.5, 16, 8}, 0.37, 10);
}

// The federation default for 3 sites (30 bits) at a small site weight: the encoder's two-lane
// path, with the scalar tail at sizes that are not a multiple of four.
TEST(QuantizeMatchesEncoderTest, ThirtyTwoBitRingAtTheDefaultBits) {
  CheckQuantizerMatchesEncoder<uint32_t>({1.0, 30, 3}, 0.025, 13);
}

TEST(QuantizeMatchesEncoderTest, ThirtyTwoBitRingAtFullWidth) {
  CheckQuantizerMatchesEncoder<uint32_t>({2.0, 32, 1}, 1.0, 11);
}

TEST(QuantizeMatchesEncoderTest, SixtyFourBitRing) {
  CheckQuantizerMatchesEncoder<uint64_t>({1.0, 40, 100}, 0.8125, 12);
}

TEST(QuantizeMatchesEncoderTest, NanIsReportedAtTheSameIndexAsTheEncoder) {
  std::vector<float> values(5000, 0.25f);
  values[4321] = NAN;
  values[4400] = NAN;
  SecretBytes seed(32);
  auto encoder = Encoder::CreateWithSeed({1.0, 16, 2}, seed);
  ASSERT_TRUE(encoder.ok());
  Status cpu = encoder->Encode(values, 1.0).status();
  std::vector<uint32_t> out(values.size());
  Status mine =
      ReferenceQuantize(values.data(), values.size(), {1.0, 16, 1.0, &seed, 0}, out.data());
  EXPECT_EQ(mine.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mine.message(), cpu.message());
  EXPECT_THAT(std::string(mine.message()), HasSubstr("update value 4321 is NaN"));
}

}  // namespace
}  // namespace hansa

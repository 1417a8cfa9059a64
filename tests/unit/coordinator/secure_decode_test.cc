// DecodeSecureSum, the coordinator's decoding of an unmasked SecAgg+ sum: block by block into
// the float mean, bit for bit what the whole-vector decoders give (DecodeSum and its Mean,
// DdgDecodeSum divided by the survivors), on sizes that end inside a block.
#include <cmath>
#include <cstring>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/privacy/ddg.h"
#include "common/secagg/encoding.h"
#include "coordinator/secure_round.h"
#include "tests/unit/secagg/decode_reference.h"

namespace hansa {
namespace {

uint64_t Next(uint64_t* x) {  // xorshift64
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

template <typename T>
bool SameBits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

SecAggResult Result(RingVector sum) { return SecAggResult{std::move(sum), {1, 2, 3}}; }

TEST(SecureDecodeTest, TheMeanAndTheStatisticsSumAreTheWholeVectorDecodings) {
  const size_t values = 2 * (size_t{1} << 16) + 1001;
  for (const EncodingParams& encoding : {EncodingParams{0.5, 28, 3}, EncodingParams{3.0, 33, 3}}) {
    SCOPED_TRACE(::testing::Message() << "bits " << encoding.bits);
    const RingWidth width = *ChooseRing(encoding);
    const uint64_t levels = (uint64_t{1} << encoding.bits) - 1;
    RingVector sum = RingVector::Zeros(width, values + 1);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < values; ++i) {
      const uint64_t s = Next(&x) % (3 * levels + 1);
      if (width == RingWidth::k32) {
        sum.w32[i] = static_cast<uint32_t>(s);
      } else {
        sum.w64[i] = s;
      }
    }
    // Weights 1, 0.7 and 0.55 of max_examples: a total that is no whole number.
    const uint64_t weight = levels * 225 / 100;
    if (width == RingWidth::k32) {
      sum.w32[values] = static_cast<uint32_t>(weight);
    } else {
      sum.w64[values] = weight;
    }
    auto whole = DecodeSum(sum, 3, encoding);
    ASSERT_TRUE(whole.ok()) << whole.status();
    SecAggParams params;
    params.ring = width;
    for (bool keep_sum : {false, true}) {
      auto mean = DecodeSecureSum(Result(sum), params, encoding, nullptr, values, 1000, keep_sum);
      ASSERT_TRUE(mean.ok()) << mean.status();
      EXPECT_TRUE(SameBits(mean->mean, whole->Mean()));
      EXPECT_EQ(mean->total_weight, whole->total_weight);
      EXPECT_EQ(mean->examples, std::llround(whole->total_weight * 1000));
      EXPECT_NEAR(static_cast<double>(mean->examples), 2250, 1);
      if (keep_sum) {
        EXPECT_TRUE(SameBits(mean->sum, whole->weighted_sum));
      } else {
        EXPECT_TRUE(mean->sum.empty());
      }
    }
    // An element no three inputs can reach: the decoding's error, naming it.
    if (width == RingWidth::k32) {
      sum.w32[values - 1] = static_cast<uint32_t>(3 * levels + 1);
    } else {
      sum.w64[values - 1] = 3 * levels + 1;
    }
    const Status bad =
        DecodeSecureSum(Result(sum), params, encoding, nullptr, values, 1000).status();
    EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(bad.message()),
                ::testing::HasSubstr(absl::StrCat("element ", values - 1, " of the sum")));
  }
}

TEST(SecureDecodeTest, ClientLevelPrivacyIsTheDdgDecodingOverTheSurvivors) {
  DdgParams ddg;
  ddg.dimension = 1000;  // padded to 1024
  ddg.clip_norm = 1.0;
  ddg.granularity = 1.0 / 1024;
  ddg.noise_multiplier = 0.5;
  ddg.min_survivors = 3;
  ASSERT_TRUE(ddg.Validate().ok());
  SecAggParams params;
  for (uint8_t& b : params.round_seed) b = static_cast<uint8_t>(&b - params.round_seed.data());
  const std::string_view seed(reinterpret_cast<const char*>(params.round_seed.data()),
                              params.round_seed.size());
  for (RingWidth width : {RingWidth::k32, RingWidth::k64}) {
    params.ring = width;
    const int bits = width == RingWidth::k32 ? 32 : 64;
    // Small signed sums, as the ring holds them.
    std::vector<int64_t> signed_sum(static_cast<size_t>(ddg.PaddedDimension()));
    uint64_t x = 12345;
    for (int64_t& v : signed_sum) v = static_cast<int64_t>(Next(&x) % 20001) - 10000;
    const std::vector<uint64_t> words = ToRing(signed_sum, bits);
    RingVector sum = RingVector::Zeros(width, words.size());
    for (size_t i = 0; i < words.size(); ++i) {
      if (width == RingWidth::k32) {
        sum.w32[i] = static_cast<uint32_t>(words[i]);
      } else {
        sum.w64[i] = words[i];
      }
    }
    auto reference = DdgDecodeSum(words, bits, ddg, seed, 3);
    ASSERT_TRUE(reference.ok()) << reference.status();
    std::vector<float> want(reference->size());
    for (size_t i = 0; i < want.size(); ++i) want[i] = static_cast<float>((*reference)[i] / 3.0);
    auto mean = DecodeSecureSum(Result(std::move(sum)), params, EncodingParams{}, &ddg, 1000, 1);
    ASSERT_TRUE(mean.ok()) << mean.status();
    EXPECT_EQ(mean->mean.size(), 1000u);
    EXPECT_TRUE(SameBits(mean->mean, want)) << bits;
    EXPECT_EQ(mean->examples, 0);
  }
}

}  // namespace
}  // namespace hansa

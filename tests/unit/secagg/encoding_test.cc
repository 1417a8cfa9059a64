#include "common/secagg/encoding.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/secagg/decode_reference.h"

namespace hansa {
namespace {

SecretBytes Seed() { return SecretBytes(std::string(32, 's')); }

TEST(EncodingTest, ChoosesTheSmallestRingThatCannotOverflow) {
  // (2^16 + 1) * (2^16 - 1) = 2^32 - 1 still fits 32 bits; one more site does not.
  EXPECT_EQ(*ChooseRing({1.0, 16, 65537}), RingWidth::k32);
  EXPECT_EQ(*ChooseRing({1.0, 16, 65538}), RingWidth::k64);
  EXPECT_EQ(*ChooseRing({1.0, 32, 1}), RingWidth::k32);
  EXPECT_EQ(*ChooseRing({1.0, 32, 2}), RingWidth::k64);
  EXPECT_EQ(*ChooseRing({1.0, 53, 2048}), RingWidth::k64);
  auto st = ChooseRing({1.0, 53, 2049}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("does not fit in 64 bits"));
  EXPECT_EQ(ChooseRing({0.0, 8, 3}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChooseRing({1.0, 0, 3}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChooseRing({1.0, 8, 0}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EncodingTest, DefaultBitsAreTheMostThatKeepTheCohortInThe32BitRing) {
  // 4 * (2^30 - 1) < 2^32 <= 5 * (2^30 - 1); 32 * (2^27 - 1) < 2^32; 4096 * (2^20 - 1) < 2^32.
  EXPECT_EQ(DefaultQuantizationBits(1), 30);
  EXPECT_EQ(DefaultQuantizationBits(4), 30);
  EXPECT_EQ(DefaultQuantizationBits(5), 29);
  EXPECT_EQ(DefaultQuantizationBits(32), 27);
  EXPECT_EQ(DefaultQuantizationBits(33), 26);
  EXPECT_EQ(DefaultQuantizationBits(4096), 20);
  EXPECT_EQ(DefaultQuantizationBits(4097), 20);
  for (int n : {3, 4, 5, 10, 32, 33, 100, 1000, 4096}) {
    EXPECT_EQ(*ChooseRing({1.0, DefaultQuantizationBits(n), n}), RingWidth::k32) << n;
    EXPECT_EQ(*ChooseRing({1.0, DefaultQuantizationBits(n) + 1, n}), RingWidth::k64) << n;
  }
  EXPECT_EQ(*ChooseRing({1.0, DefaultQuantizationBits(5000), 5000}), RingWidth::k64);
}

// c = 1, b = 2 so L = 3: x maps to (x + 1) * 1.5. Exact grid points need no rounding:
// -1 -> 0, -1/3 -> 1, 1/3 -> 2, 1 -> 3; values beyond c are clipped.
TEST(EncodingTest, HandComputedGridPointsAndClipping) {
  auto enc = Encoder::CreateWithSeed({1.0, 2, 4}, Seed());
  ASSERT_TRUE(enc.ok());
  std::vector<float> x = {-1.0f, -1.0f / 3, 1.0f / 3, 1.0f, 5.0f, -7.0f};
  auto v = enc->Encode(x, 1.0);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->width, RingWidth::k32);
  EXPECT_EQ(v->w32, (std::vector<uint32_t>{0, 1, 2, 3, 3, 0, 3}));  // last: weight 1 -> L
  // Weight 1/3 scales 1.0 to 1/3 -> 2, and the weight element to exactly 1.
  auto w = enc->Encode({1.0f}, 1.0 / 3);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->w32, (std::vector<uint32_t>{2, 1}));
}

TEST(EncodingTest, StochasticRoundingIsBetweenNeighboursAndUnbiased) {
  auto enc = Encoder::CreateWithSeed({1.0, 2, 100000}, Seed());
  ASSERT_TRUE(enc.ok());
  // 0 -> 1.5: half the time 1, half 2.
  std::vector<float> zeros(20000, 0.0f);
  auto v = enc->Encode(zeros, 1.0);
  ASSERT_TRUE(v.ok());
  uint64_t ones = 0, sum = 0;
  for (size_t i = 0; i < zeros.size(); ++i) {
    ASSERT_TRUE(v->w32[i] == 1 || v->w32[i] == 2);
    ones += v->w32[i] == 1;
    sum += v->w32[i];
  }
  // Binomial(20000, 1/2): sd about 71; 6 sd bound.
  EXPECT_NEAR(static_cast<double>(ones), 10000.0, 430.0);
  // Decoding the sum of these 20000 one-element "inputs" gives about 0.
  RingVector total = RingVector::Zeros(RingWidth::k32, 2);
  total.w32[0] = static_cast<uint32_t>(sum);
  total.w32[1] = 3 * 20000;
  auto d = DecodeMean(total, 20000, {1.0, 2, 100000}, /*keep_sum=*/true);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_NEAR(d->weighted_sum[0], 0.0, 6 * 0.5 * 2.0 / 3 * 141.5);
  EXPECT_DOUBLE_EQ(d->total_weight, 20000.0);
}

// Three sites, c = 2, b = 8 (L = 255): weighted mean of hand-picked exact grid values.
TEST(EncodingTest, TheFinestQuantizationKeepsTheClipAndAFullWeightInRange) {
  // Levels are doubles: at 54 bits 2^54 - 1 rounds to 2^54, and a value at the clip (or a
  // weight of 1) would encode one past the largest level, which DecodeMean rejects.
  EncodingParams p{1e10, kMaxQuantizationBits, 3};
  auto enc = Encoder::CreateWithSeed(p, Seed());
  ASSERT_TRUE(enc.ok()) << enc.status();
  RingVector sum = RingVector::Zeros(RingWidth::k64, 3);
  for (int site = 0; site < 3; ++site) {
    auto v = enc->Encode({1e10f, -1e10f}, 1.0);
    ASSERT_TRUE(v.ok());
    ASSERT_TRUE(sum.AddInPlace(*v).ok());
  }
  auto d = DecodeMean(sum, 3, p, /*keep_sum=*/true);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_NEAR(d->weighted_sum[0], 3e10, 1e-3);
  EXPECT_NEAR(d->weighted_sum[1], -3e10, 1e-3);
  EXPECT_DOUBLE_EQ(d->total_weight, 3.0);
  auto finer = ChooseRing({1.0, kMaxQuantizationBits + 1, 2}).status();
  EXPECT_EQ(finer.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(finer.message()), ::testing::HasSubstr("must be in 1..53"));
}

TEST(EncodingTest, DecodesWeightedMeanOfASum) {
  EncodingParams p{2.0, 8, 3};
  auto enc = Encoder::CreateWithSeed(p, Seed());
  ASSERT_TRUE(enc.ok());
  const double step = 4.0 / 255;  // grid spacing
  // Site values on the grid after weighting: w = 1 for all, so no rounding happens.
  std::vector<std::vector<float>> xs = {{static_cast<float>(-2 + 10 * step)},
                                        {static_cast<float>(-2 + 200 * step)},
                                        {static_cast<float>(-2 + 255 * step)}};
  RingVector sum = RingVector::Zeros(RingWidth::k32, 2);
  for (const auto& x : xs) {
    auto v = enc->Encode(x, 1.0);
    ASSERT_TRUE(v.ok());
    ASSERT_TRUE(sum.AddInPlace(*v).ok());
  }
  EXPECT_EQ(sum.w32[0], 10u + 200u + 255u);
  EXPECT_EQ(sum.w32[1], 3u * 255u);
  auto d = DecodeMean(sum, 3, p, /*keep_sum=*/true);
  ASSERT_TRUE(d.ok());
  EXPECT_NEAR(d->weighted_sum[0], (10 + 200 + 255) * step - 6, 1e-9);
  EXPECT_NEAR(d->total_weight, 3.0, 1e-12);
  EXPECT_NEAR(d->mean[0], ((10 + 200 + 255) * step - 6) / 3, 1e-6);
}

TEST(EncodingTest, RejectsNanWeightOutOfRangeAndImpossibleSums) {
  auto enc = Encoder::CreateWithSeed({1.0, 8, 3}, Seed());
  ASSERT_TRUE(enc.ok());
  auto nan = enc->Encode({0.f, std::nanf("")}, 1.0).status();
  EXPECT_EQ(nan.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(nan.message()), ::testing::HasSubstr("update value 1 is NaN"));
  EXPECT_EQ(enc->Encode({0.f}, 1.5).status().code(), absl::StatusCode::kInvalidArgument);
  uint64_t out64[1];
  EXPECT_EQ(enc->EncodeValues(nullptr, 0, 1.0, out64).code(), absl::StatusCode::kInvalidArgument);
  RingVector too_big = RingVector::Zeros(RingWidth::k32, 2);
  too_big.w32[0] = 2 * 255 + 1;
  auto st = DecodeMean(too_big, 2, {1.0, 8, 3}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("exceeds 2 encoded inputs"));
}

// A sum of `n` values (plus the weight element `weight`) spread over 0..3L for 3 inputs.
RingVector RaggedSum(RingWidth width, int bits, size_t n, uint64_t weight) {
  RingVector sum = RingVector::Zeros(width, n + 1);
  const uint64_t max_sum = 3 * ((uint64_t{1} << bits) - 1);
  uint64_t x = 88172645463325252ull;  // xorshift64
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const uint64_t s = i < 3 ? (i == 0 ? 0 : i == 1 ? max_sum : max_sum / 2) : x % (max_sum + 1);
    if (width == RingWidth::k32) {
      sum.w32[i] = static_cast<uint32_t>(s);
    } else {
      sum.w64[i] = s;
    }
  }
  if (width == RingWidth::k32) {
    sum.w32[n] = static_cast<uint32_t>(weight);
  } else {
    sum.w64[n] = weight;
  }
  return sum;
}

template <typename T>
bool SameBits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// Block by block (2^16 values a block) against the whole-vector decoding: three blocks and a
// ragged end, both rings, with and without the double sum, a total weight of 0 and one that is
// not a whole number of inputs.
TEST(EncodingTest, DecodeMeanIsTheWholeVectorDecodingBitForBit) {
  const size_t n = 3 * (size_t{1} << 16) + 77;
  struct Case {
    EncodingParams params;
    RingWidth width;
  };
  for (const Case& c : {Case{{2.5, 20, 3}, RingWidth::k32}, Case{{0.75, 40, 3}, RingWidth::k64}}) {
    const uint64_t levels = (uint64_t{1} << c.params.bits) - 1;
    for (uint64_t weight : {uint64_t{0}, levels * 5 / 2, 3 * levels}) {
      SCOPED_TRACE(::testing::Message() << "bits " << c.params.bits << " weight " << weight);
      const RingVector sum = RaggedSum(c.width, c.params.bits, n, weight);
      auto whole = DecodeSum(sum, 3, c.params);
      ASSERT_TRUE(whole.ok()) << whole.status();
      const std::vector<float> mean = whole->Mean();
      for (bool keep_sum : {false, true}) {
        auto blocks = DecodeMean(sum, 3, c.params, keep_sum);
        ASSERT_TRUE(blocks.ok()) << blocks.status();
        EXPECT_TRUE(SameBits(blocks->mean, mean));
        EXPECT_EQ(blocks->total_weight, whole->total_weight);
        if (keep_sum) {
          EXPECT_TRUE(SameBits(blocks->weighted_sum, whole->weighted_sum));
        } else {
          EXPECT_TRUE(blocks->weighted_sum.empty());
        }
      }
      if (weight == 0) {
        EXPECT_EQ(std::count(mean.begin(), mean.end(), 0.0f), static_cast<std::ptrdiff_t>(n));
      }
    }
  }
}

TEST(EncodingTest, DecodeMeanRejectsWhatDecodeSumRejectsNamingTheSameElement) {
  const EncodingParams p{1.0, 20, 3};
  const uint64_t max_sum = 3 * ((uint64_t{1} << 20) - 1);
  const size_t n = 2 * (size_t{1} << 16) + 5;
  // A bad value in the second block, a bad weight, both (the value is named first), and a
  // sum from another ring.
  RingVector bad_value = RaggedSum(RingWidth::k32, 20, n, max_sum);
  bad_value.w32[70000] = static_cast<uint32_t>(max_sum + 1);
  RingVector bad_weight = RaggedSum(RingWidth::k32, 20, n, max_sum + 1);
  RingVector both = bad_weight;
  both.w32[n - 1] = static_cast<uint32_t>(max_sum + 7);
  for (const auto& [sum, element] :
       {std::pair<const RingVector&, size_t>{bad_value, 70000}, {bad_weight, n}, {both, n - 1}}) {
    const Status whole = DecodeSum(sum, 3, p).status();
    const Status blocks = DecodeMean(sum, 3, p).status();
    EXPECT_EQ(blocks.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(blocks, whole);
    EXPECT_THAT(std::string(blocks.message()),
                ::testing::HasSubstr(absl::StrCat("element ", element, " of the sum")));
  }
  const Status ring = DecodeMean(RingVector::Zeros(RingWidth::k64, 3), 3, p).status();
  EXPECT_EQ(ring.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ring.message()), ::testing::HasSubstr("different ring"));
  const Status empty = DecodeMean(RingVector::Zeros(RingWidth::k32, 0), 3, p).status();
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.message()), ::testing::HasSubstr("no weight element"));
}

// Whole pages only, never one holding an element at or past `end`.
TEST(EncodingTest, ReleaseRingPagesKeepsEverythingFromTheEndOn) {
  for (RingWidth width : {RingWidth::k32, RingWidth::k64}) {
    const size_t n = 1 << 20;
    RingVector v = RingVector::Zeros(width, n);
    for (size_t i = 0; i < n; ++i) {
      if (width == RingWidth::k32) {
        v.w32[i] = static_cast<uint32_t>(i + 1);
      } else {
        v.w64[i] = i + 1;
      }
    }
    EXPECT_EQ(ReleaseRingPages(&v, 5, 5), 0u);
    EXPECT_EQ(ReleaseRingPages(&v, 0, 1), 0u);  // no whole page below element 1
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t released = ReleaseRingPages(&v, 5000, 300001);
    EXPECT_GT(released, 0u);
    EXPECT_EQ(released % page, 0u);
    EXPECT_LE(released, (300001 - 5000) * RingWordSize(width) + page);
    // Released elements read as zeros; everything from 300001 on is as it was.
    EXPECT_EQ(v.at(150000), 0u);
    for (size_t i = 300001; i < n; ++i) ASSERT_EQ(v.at(i), i + 1) << i;
    for (size_t i = 0; i + page / RingWordSize(width) < 5000; ++i) ASSERT_EQ(v.at(i), i + 1) << i;
  }
}

}  // namespace
}  // namespace hansa

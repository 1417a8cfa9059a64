// The GPU masked upload (cuda/masked_upload.h) in a whole SecAgg+ round: one site masks on the
// device, the others on the CPU, and the coordinator's unmasked sum must equal the sum of the
// sites' CPU encodings bit for bit. Skipped without a device, except the check that without one
// the caller is told to take the CPU path.
#include "cuda/masked_upload.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "common/secagg/local_round.h"
#include "common/secagg/masked_upload.h"
#include "cuda/device.h"
#include "tests/unit/cuda/test_data.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;
using namespace cuda_test;  // NOLINT

constexpr uint32_t kSites = 3;

// Three sites, keys shared, all in their masking stage.
LocalRound SharedKeys(RingWidth ring, size_t n) {
  SecAggParams params;
  params.round = 5;
  params.num_sites = kSites;
  params.ring = ring;
  params.vector_length = Encoder::EncodedSize(n);
  params.round_seed = {7, static_cast<uint8_t>(n)};
  LocalRound round = std::move(LocalRound::Create(params)).value();
  Status st = round.ExchangeKeys();
  EXPECT_TRUE(st.ok()) << st;
  return round;
}

// Finite updates, some beyond the clip range.
std::vector<float> FiniteUpdate(std::mt19937_64& rng, size_t n) {
  std::normal_distribution<float> normal(0.0f, 0.4f);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = i % 97 == 5 ? 3.5f : normal(rng);
  return v;
}

class DeviceMaskedUploadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  }

  // Site 1 on the GPU, sites 2 and 3 on the CPU; `n` values in chunks of `per_chunk` words.
  void CheckRound(int bits, size_t n, size_t per_chunk, uint64_t seed) {
    std::mt19937_64 rng(seed);
    const EncodingParams params{1.0, bits, static_cast<int>(kSites)};
    const RingWidth ring = *ChooseRing(params);
    LocalRound round = SharedKeys(ring, n);
    RingVector expected = RingVector::Zeros(ring, Encoder::EncodedSize(n));
    for (SiteId id = 1; id <= kSites; ++id) {
      SecretBytes rounding_seed = RandomKey(rng);
      std::vector<float> values = FiniteUpdate(rng, n);
      const double weight = 0.25 * id;
      auto reference = Encoder::CreateWithSeed(params, rounding_seed);
      ASSERT_TRUE(reference.ok()) << reference.status();
      ASSERT_TRUE(expected.AddInPlace(*reference->Encode(values, weight)).ok());
      StatusOr<std::vector<std::string>> chunks;
      if (id == 1) {
        auto stream = CudaStream::Create();
        ASSERT_TRUE(stream.ok()) << stream.status();
        auto device = DeviceBuffer<float>::Allocate(n);
        ASSERT_TRUE(device.ok()) << device.status();
        ASSERT_TRUE(device->CopyFromHost(values.data(), n, *stream).ok());
        ASSERT_TRUE(stream->Synchronize().ok());
        DeviceMaskStats stats;
        chunks = MaskUpdateOnDevice(round.site(1), params, rounding_seed, device->data(), n, weight,
                                    per_chunk, &stats);
        ASSERT_TRUE(chunks.ok()) << chunks.status();
        EXPECT_NEAR(stats.update_norm, ReferenceNorm(values), 1e-6 * ReferenceNorm(values));
        EXPECT_EQ(chunks->size(), (Encoder::EncodedSize(n) + per_chunk - 1) / per_chunk);
      } else {
        auto encoder = Encoder::CreateWithSeed(params, rounding_seed);
        ASSERT_TRUE(encoder.ok()) << encoder.status();
        chunks = MaskUpdate(round.site(id), *encoder, ring, values.data(), n, weight, per_chunk);
        ASSERT_TRUE(chunks.ok()) << chunks.status();
      }
      ASSERT_TRUE(round.Upload(*chunks).ok());
    }
    auto result = round.Unmask();
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->sum, expected)
        << "bits " << bits << ", n " << n << ", chunks of " << per_chunk;
  }

  static double ReferenceNorm(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += static_cast<double>(x) * x;
    return std::sqrt(s);
  }
};

TEST_F(DeviceMaskedUploadTest, SumEqualsTheCpuEncodingsIn32BitRing) {
  // One chunk, an odd chunk that splits ChaCha20 blocks, and many two-slot reuses.
  CheckRound(30, 1000, 4096, 1);
  CheckRound(30, 4097, 1001, 2);
  CheckRound(20, 65537, 4096, 3);
  CheckRound(20, 3, 1, 4);
}

TEST_F(DeviceMaskedUploadTest, SumEqualsTheCpuEncodingsIn64BitRing) {
  CheckRound(40, 4097, 777, 5);
  CheckRound(40, 100000, 16384, 6);
}

TEST_F(DeviceMaskedUploadTest, InfinityIsRefusedBeforeTheSessionIsTouched) {
  LocalRound round = SharedKeys(RingWidth::k32, 100);
  std::vector<float> values(100, 0.1f);
  values[42] = INFINITY;
  auto stream = CudaStream::Create();
  ASSERT_TRUE(stream.ok()) << stream.status();
  auto device = DeviceBuffer<float>::Allocate(values.size());
  ASSERT_TRUE(device.ok()) << device.status();
  ASSERT_TRUE(device->CopyFromHost(values.data(), values.size(), *stream).ok());
  ASSERT_TRUE(stream->Synchronize().ok());
  SecretBytes seed(std::string(32, 'r'));
  auto chunks =
      MaskUpdateOnDevice(round.site(1), {1.0, 20, 3}, seed, device->data(), values.size(), 1.0, 64);
  EXPECT_EQ(chunks.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(chunks.status().message()), HasSubstr("NaN or infinity"));
  EXPECT_TRUE(round.site(1).MaskStreams().ok());  // still masking: the CPU path could go on
}

// The coordinator's side: the same streams removed on the device and on the CPU, and a whole
// round finished on the device.
TEST_F(DeviceMaskedUploadTest, UnmaskingOnTheDeviceEqualsTheCpu) {
  std::mt19937_64 rng(8);
  for (RingWidth ring : {RingWidth::k32, RingWidth::k64}) {
    for (size_t n : {size_t{1}, size_t{4097}, size_t{100003}}) {
      std::vector<SecretBytes> keys;
      for (int i = 0; i < 20; ++i) keys.push_back(RandomKey(rng));  // two launches of 16
      std::vector<MaskStream> streams;
      for (int i = 0; i < 20; ++i) {
        streams.push_back({&keys[i], ChaCha20Nonce{}, i % 3 ? MaskOp::kSubtract : MaskOp::kAdd});
      }
      RingVector cpu = RingVector::Zeros(ring, n);
      for (auto& w : cpu.w32) w = static_cast<uint32_t>(rng());
      for (auto& w : cpu.w64) w = rng();
      RingVector gpu = cpu;
      ASSERT_TRUE(ApplyMasksOnCpu(streams, &cpu).ok());
      ASSERT_TRUE(ApplyMasksOnDevice(streams, &gpu).ok());
      EXPECT_EQ(gpu, cpu) << "n " << n;
    }
  }
  const size_t n = 5000;
  const EncodingParams params{1.0, 30, static_cast<int>(kSites)};
  LocalRound round = SharedKeys(RingWidth::k32, n);
  RingVector expected = RingVector::Zeros(RingWidth::k32, Encoder::EncodedSize(n));
  for (SiteId id = 1; id <= kSites; ++id) {
    SecretBytes seed = RandomKey(rng);
    std::vector<float> values = FiniteUpdate(rng, n);
    auto reference = Encoder::CreateWithSeed(params, seed);
    auto encoder = Encoder::CreateWithSeed(params, seed);
    ASSERT_TRUE(reference.ok() && encoder.ok());
    ASSERT_TRUE(expected.AddInPlace(*reference->Encode(values, 1.0)).ok());
    auto chunks = MaskUpdate(round.site(id), *encoder, RingWidth::k32, values.data(), n, 1.0, 999);
    ASSERT_TRUE(chunks.ok()) << chunks.status();
    ASSERT_TRUE(round.Upload(*chunks).ok());
  }
  auto result = round.Unmask(ApplyMasksOnDevice);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->sum, expected);
}

TEST(DeviceMaskedUploadWithoutDeviceTest, SaysUnavailableAndLeavesTheSessionToTheCpuPath) {
  if (CudaDeviceAvailable()) GTEST_SKIP() << "a CUDA device is present";
  LocalRound round = SharedKeys(RingWidth::k32, 10);
  std::vector<float> values(10, 0.5f);
  SecretBytes seed(std::string(32, 'r'));
  // Host memory stands in for the device pointer: it must not be touched.
  auto chunks = MaskUpdateOnDevice(round.site(1), {1.0, 20, 3}, seed, values.data(), 10, 1.0, 4);
  EXPECT_EQ(chunks.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(chunks.status().message()), HasSubstr("masked on the CPU"));
  // The CPU path then masks the same session.
  auto encoder = Encoder::CreateWithSeed({1.0, 20, 3}, seed);
  ASSERT_TRUE(encoder.ok());
  auto cpu = MaskUpdate(round.site(1), *encoder, RingWidth::k32, values.data(), 10, 1.0, 4);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(cpu->size(), 3u);
  // The coordinator's side says so too and leaves the sum alone.
  RingVector sum = RingVector::Zeros(RingWidth::k32, 4);
  sum.w32[2] = 9;
  std::vector<MaskStream> streams = {{&seed, ChaCha20Nonce{}, MaskOp::kSubtract}};
  EXPECT_EQ(ApplyMasksOnDevice(streams, &sum).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(sum.w32[2], 9u);
}

}  // namespace
}  // namespace hansa

// GPU results against the CPU reference, bit for bit; skipped where no CUDA device is present.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "cuda/device.h"
#include "cuda/mask_kernels.h"
#include "cuda/reference.h"
#include "tests/unit/cuda/test_data.h"

namespace hansa {
namespace {

using ::testing::HasSubstr;
using namespace cuda_test;  // NOLINT

class CudaDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
    auto s = CudaStream::Create();
    ASSERT_TRUE(s.ok()) << s.status();
    stream_ = std::move(s).value();
  }

  template <typename T>
  DeviceBuffer<T> Upload(const std::vector<T>& host) {
    auto buf = DeviceBuffer<T>::Allocate(std::max<size_t>(host.size(), 1));
    EXPECT_TRUE(buf.ok()) << buf.status();
    if (!buf.ok()) return {};
    Status st = buf->CopyFromHost(host.data(), host.size(), stream_);
    EXPECT_TRUE(st.ok()) << st;
    return std::move(buf).value();
  }

  template <typename T>
  std::vector<T> Download(const DeviceBuffer<T>& buf, size_t n) {
    std::vector<T> host(n);
    Status st = buf.CopyToHost(host.data(), n, stream_);
    EXPECT_TRUE(st.ok()) << st;
    st = stream_.Synchronize();
    EXPECT_TRUE(st.ok()) << st;
    return host;
  }

  template <typename W>
  void CheckMasks(uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (size_t size : kSizes) {
      for (uint64_t offset : kOffsets) {
        std::vector<SecretBytes> keys;
        for (int i = 0; i < 18; ++i) keys.push_back(RandomKey(rng));  // two launches
        std::vector<MaskStream> streams;
        for (int i = 0; i < 18; ++i) {
          streams.push_back({&keys[i], RandomNonce(rng), i % 3 ? MaskOp::kAdd : MaskOp::kSubtract});
        }
        std::vector<W> data = RandomWords<W>(rng, size);
        DeviceBuffer<W> dev = Upload(data);
        ASSERT_TRUE(ReferenceApplyMasks(streams, offset, data.data(), size).ok());
        Status st = ApplyMasks(streams, offset, dev.data(), size, stream_);
        ASSERT_TRUE(st.ok()) << st;
        ASSERT_EQ(Download(dev, size), data) << "size " << size << " offset " << offset;
      }
    }
  }

  template <typename W>
  void CheckQuantize(int bits, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (size_t size : kSizes) {
      for (uint64_t offset : kOffsets) {
        SecretBytes rounding_seed = RandomKey(rng);
        std::vector<float> values = RandomUpdate(rng, size);
        QuantizeParams q{0.75, bits, 0.625, &rounding_seed, offset};
        std::vector<W> expected(size);
        ASSERT_TRUE(ReferenceQuantize(values.data(), size, q, expected.data()).ok());
        DeviceBuffer<float> in = Upload(values);
        DeviceBuffer<W> out = Upload(std::vector<W>(size));
        Status st = Quantize(in.data(), size, q, out.data(), stream_);
        ASSERT_TRUE(st.ok()) << st;
        ASSERT_EQ(Download(out, size), expected) << "size " << size << " offset " << offset;
      }
    }
  }

  CudaStream stream_;
};

TEST_F(CudaDeviceTest, Masks32EqualTheCpuPath) { CheckMasks<uint32_t>(21); }
TEST_F(CudaDeviceTest, Masks64EqualTheCpuPath) { CheckMasks<uint64_t>(22); }
TEST_F(CudaDeviceTest, Quantize32EqualsTheCpuPath) { CheckQuantize<uint32_t>(16, 23); }
TEST_F(CudaDeviceTest, Quantize64EqualsTheCpuPath) { CheckQuantize<uint64_t>(40, 24); }

TEST_F(CudaDeviceTest, QuantizeReportsTheFirstNan) {
  std::vector<float> values(70000, 0.5f);
  values[65000] = NAN;
  values[12345] = NAN;
  SecretBytes seed(32);
  DeviceBuffer<float> in = Upload(values);
  DeviceBuffer<uint32_t> out = Upload(std::vector<uint32_t>(values.size()));
  Status st = Quantize(in.data(), values.size(), {1.0, 16, 1.0, &seed, 0}, out.data(), stream_);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("update value 12345 is NaN"));
}

TEST_F(CudaDeviceTest, SumOfManyInputsEqualsTheCpuSum) {
  std::mt19937_64 rng(25);
  for (size_t size : {size_t{1}, size_t{1000}, size_t{65537}}) {
    std::vector<std::vector<uint64_t>> inputs;
    std::vector<DeviceBuffer<uint64_t>> dev_inputs;
    std::vector<const uint64_t*> ptrs;
    for (int k = 0; k < 20; ++k) {
      inputs.push_back(RandomWords<uint64_t>(rng, size));
      dev_inputs.push_back(Upload(inputs.back()));
      ptrs.push_back(dev_inputs.back().data());
    }
    std::vector<uint64_t> acc = RandomWords<uint64_t>(rng, size);
    DeviceBuffer<uint64_t> dev_acc = Upload(acc);
    for (const auto& in : inputs) {
      for (size_t i = 0; i < size; ++i) acc[i] += in[i];
    }
    ASSERT_TRUE(SumInto(dev_acc.data(), ptrs, size, stream_).ok());
    EXPECT_EQ(Download(dev_acc, size), acc) << size;
  }
}

TEST_F(CudaDeviceTest, L2NormEqualsTheCpuReduction) {
  std::mt19937_64 rng(26);
  for (size_t size : {size_t{1}, size_t{2047}, size_t{2049}, size_t{300001}, size_t{4200000}}) {
    std::vector<float> v = RandomUpdate(rng, size);
    for (float& x : v) {
      if (!std::isfinite(x)) x = -2.5f;
    }
    DeviceBuffer<float> dev = Upload(v);
    auto norm = L2Norm(dev.data(), size, stream_);
    ASSERT_TRUE(norm.ok()) << norm.status();
    EXPECT_EQ(*norm, ReferenceL2Norm(v.data(), size)) << size;
  }
}

TEST_F(CudaDeviceTest, MaskThenUnmaskThroughTheSumLeavesTheInputs) {
  // Two sites mask with a shared pairwise key of opposite signs; the device sum equals the
  // plain sum, as the coordinator expects.
  std::mt19937_64 rng(27);
  const size_t n = 100003;
  SecretBytes pair = RandomKey(rng);
  std::vector<uint32_t> a = RandomWords<uint32_t>(rng, n), b = RandomWords<uint32_t>(rng, n);
  DeviceBuffer<uint32_t> da = Upload(a), db = Upload(b);
  ASSERT_TRUE(ApplyMasks({{&pair, {}, MaskOp::kAdd}}, 0, da.data(), n, stream_).ok());
  ASSERT_TRUE(ApplyMasks({{&pair, {}, MaskOp::kSubtract}}, 0, db.data(), n, stream_).ok());
  ASSERT_TRUE(SumInto(da.data(), {db.data()}, n, stream_).ok());
  std::vector<uint32_t> sum = Download(da, n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(sum[i], uint32_t(a[i] + b[i])) << i;
}

TEST_F(CudaDeviceTest, DeviceInfoDescribesTheGpu) {
  auto info = GetCudaDeviceInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_GT(info->multiprocessors, 0);
  EXPECT_GT(info->sm_clock_khz, 0);
  EXPECT_FALSE(info->name.empty());
}

TEST(CudaAvailabilityTest, WithoutADeviceEveryOperationSaysSo) {
  if (CudaDeviceAvailable()) GTEST_SKIP() << "a CUDA device is present";
  auto buf = DeviceBuffer<uint32_t>::Allocate(16);
  EXPECT_EQ(buf.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(buf.status().message()), HasSubstr("no CUDA device"));
  auto stream = CudaStream::Create();
  EXPECT_EQ(stream.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(GetCudaDeviceInfo().status().code(), absl::StatusCode::kUnavailable);
  CudaStream none;
  SecretBytes key(32);
  uint32_t word = 0;
  Status st = ApplyMasks({{&key, {}, MaskOp::kAdd}}, 0, &word, 1, none);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace hansa

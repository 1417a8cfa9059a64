#include "common/tensor/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

namespace hansa {
namespace {

using ::testing::HasSubstr;

Model SmallModel() {
  Model m;
  m.layout = ModelLayout({{"conv.weight", DType::kF32, {2, 1, 3, 3}},
                          {"conv.bias", DType::kF32, {2}},
                          {"fc.weight", DType::kF32, {3, 5}}});
  m.values.resize(m.layout.TotalElements());
  for (size_t i = 0; i < m.values.size(); ++i) m.values[i] = 0.25f * static_cast<float>(i) - 3.f;
  return m;
}

TEST(SafetensorsTest, RoundTripsModelAndMetadata) {
  Model m = SmallModel();
  std::string bytes = EncodeSafetensors(m, {{"round", "7"}});
  TensorMetadata meta;
  auto back = DecodeSafetensors(bytes, &meta);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->layout, m.layout);
  EXPECT_EQ(back->values, m.values);
  EXPECT_EQ(meta["round"], "7");
}

TEST(SafetensorsTest, HeaderIsAlignedAndMatchesTheFormat) {
  std::string bytes = EncodeSafetensors(SmallModel());
  uint64_t len = 0;
  std::memcpy(&len, bytes.data(), 8);
  EXPECT_EQ((8 + len) % 8, 0u);
  std::string json = bytes.substr(8, len);
  EXPECT_THAT(json, HasSubstr("\"conv.weight\":{\"dtype\":\"F32\",\"shape\":[2,1,3,3],"
                              "\"data_offsets\":[0,72]}"));
}

TEST(SafetensorsTest, StreamDecoderHandlesEveryPieceSize) {
  Model m = SmallModel();
  std::string bytes = EncodeSafetensors(m);
  for (size_t piece : {1u, 3u, 7u, 8u, 13u, 64u, 1000u}) {
    std::vector<float> got(m.values.size(), -1.f);
    ModelLayout seen;
    SafetensorsStreamDecoder dec(
        [&](const ModelLayout& l, const TensorMetadata&) {
          seen = l;
          return absl::OkStatus();
        },
        [&](int64_t first, const uint8_t* data, size_t count) {
          std::memcpy(got.data() + first, data, count * 4);
          return absl::OkStatus();
        });
    for (size_t off = 0; off < bytes.size(); off += piece) {
      ASSERT_TRUE(dec.Feed(std::string_view(bytes).substr(off, piece)).ok());
    }
    ASSERT_TRUE(dec.Finish().ok()) << "piece " << piece;
    EXPECT_EQ(seen, m.layout);
    EXPECT_EQ(got, m.values) << "piece " << piece;
  }
}

TEST(SafetensorsTest, TruncatedStreamIsDataLoss) {
  std::string bytes = EncodeSafetensors(SmallModel());
  SafetensorsStreamDecoder dec(
      [](const ModelLayout&, const TensorMetadata&) { return absl::OkStatus(); },
      [](int64_t, const uint8_t*, size_t) { return absl::OkStatus(); });
  ASSERT_TRUE(dec.Feed(std::string_view(bytes).substr(0, bytes.size() - 5)).ok());
  Status st = dec.Finish();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(st.message()), HasSubstr("truncated"));
}

TEST(SafetensorsTest, RejectsOversizedHeaderBeforeReadingIt) {
  std::string bytes(8, '\0');
  uint64_t huge = uint64_t{1} << 40;
  std::memcpy(bytes.data(), &huge, 8);
  auto st = DecodeSafetensors(bytes);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("exceeds the limit"));
}

TEST(SafetensorsTest, RejectsExtraDataAndBadOffsets) {
  std::string bytes = EncodeSafetensors(SmallModel());
  EXPECT_FALSE(DecodeSafetensors(bytes + "xxxx").ok());
  std::string json = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})";
  std::string bad(8, '\0');
  uint64_t len = json.size();
  std::memcpy(bad.data(), &len, 8);
  bad += json + std::string(4, '\0');
  auto st = DecodeSafetensors(bad);
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("do not match its shape"));
}

TEST(SafetensorsTest, RejectsUnknownDtypeAndMalformedJson) {
  for (std::string json : {std::string(R"({"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}})"),
                           std::string("{not json")}) {
    std::string bad(8, '\0');
    uint64_t len = json.size();
    std::memcpy(bad.data(), &len, 8);
    bad += json;
    EXPECT_EQ(DecodeSafetensors(bad).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ModelLayoutTest, NamesTheFirstDifference) {
  Model m = SmallModel();
  ModelLayout other({{"conv.weight", DType::kF32, {2, 1, 3, 3}},
                     {"conv.bias", DType::kF32, {3}},
                     {"fc.weight", DType::kF32, {3, 5}}});
  Status st = other.CheckSameAs(m.layout);
  EXPECT_THAT(std::string(st.message()), HasSubstr("'conv.bias': shape [3] expected [2]"));
  EXPECT_TRUE(m.layout.CheckSameAs(m.layout).ok());
}

TEST(ModelTest, ValidateFindsNaNAndInf) {
  Model m = SmallModel();
  EXPECT_TRUE(m.Validate().ok());
  m.values[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(std::string(m.Validate().message()), HasSubstr("model value 5"));
  m.values[5] = 0;
  m.values[9] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(m.Validate().ok());
}

}  // namespace
}  // namespace hansa

#include "common/tensor/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

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

// Tensors of no elements share their offset with the tensor after them (or with each other):
// the layout comes back in the order it was written, whatever the names, and the whole
// buffer and the stream in pieces of one byte agree. Before, a tensor of no elements whose
// name sorted after the next tensor's was refused as "does not follow the previous tensor's".
TEST(SafetensorsTest, RoundTripsTensorsOfNoElementsWhateverTheirNames) {
  std::vector<std::vector<TensorSpec>> layouts = {
      {{"z", DType::kF32, {0}}, {"a", DType::kF32, {2}}},
      {{"a", DType::kF32, {2}}, {"z", DType::kF32, {0}}},
      {{"y", DType::kF32, {3, 0}}, {"x", DType::kF32, {0}}, {"b", DType::kF32, {1}}},
  };
  std::vector<TensorSpec> many;  // more than 16: std::sort leaves insertion sort behind
  for (int i = 40; i > 0; --i) {
    many.push_back({"t" + std::to_string(i), DType::kF32, {i % 3 == 0 ? 0 : i}});
  }
  layouts.push_back(many);
  for (const std::vector<TensorSpec>& specs : layouts) {
    Model m;
    m.layout = ModelLayout(specs);
    m.values.resize(m.layout.TotalElements());
    for (size_t i = 0; i < m.values.size(); ++i) m.values[i] = static_cast<float>(i) + 0.5f;
    const std::string bytes = EncodeSafetensors(m);
    auto back = DecodeSafetensors(bytes);
    ASSERT_TRUE(back.ok()) << back.status() << " " << specs.front().name;
    EXPECT_EQ(back->layout, m.layout);
    EXPECT_EQ(back->values, m.values);
    SafetensorsModelDecoder stream;
    for (char c : bytes) ASSERT_TRUE(stream.Feed(std::string_view(&c, 1)).ok());
    auto streamed = stream.Finish();
    ASSERT_TRUE(streamed.ok()) << streamed.status();
    EXPECT_EQ(streamed->layout, m.layout);
    EXPECT_EQ(streamed->values, m.values);
  }
}

// After an error the stream is over: a header its owner refused, then more data, calls no
// callback again (with a refused header there is nowhere for the data to go) and returns the
// first error from Feed and Finish alike.
TEST(SafetensorsTest, TheFirstErrorEndsTheStream) {
  const std::string bytes = EncodeSafetensors(SmallModel());
  int data_calls = 0;
  SafetensorsStreamDecoder dec(
      [](const ModelLayout&, const TensorMetadata&) {
        return absl::InvalidArgumentError("not the model this site trains");
      },
      [&](int64_t, const uint8_t*, size_t) {
        ++data_calls;
        return absl::OkStatus();
      });
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const size_t header_end = 8 + header_len;
  Status first = dec.Feed(std::string_view(bytes).substr(0, header_end));
  EXPECT_THAT(std::string(first.message()), HasSubstr("not the model this site trains"));
  Status again = dec.Feed(std::string_view(bytes).substr(header_end));
  EXPECT_EQ(again, first);
  EXPECT_EQ(dec.Finish(), first);
  EXPECT_EQ(data_calls, 0);
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

// A file of one header (given as JSON) and `data_bytes` zero bytes of data.
std::string FileWithHeader(const std::string& json, size_t data_bytes = 0) {
  std::string out(8, '\0');
  uint64_t len = json.size();
  std::memcpy(out.data(), &len, 8);
  return out + json + std::string(data_bytes, '\0');
}

// Feeds `bytes` to a stream decoder in one piece; `seen` gets the layout it announced.
Status StreamHeader(const std::string& bytes, const SafetensorsLimits& limits, ModelLayout* seen) {
  SafetensorsStreamDecoder dec(
      [&](const ModelLayout& l, const TensorMetadata&) {
        *seen = l;
        return absl::OkStatus();
      },
      [](int64_t, const uint8_t*, size_t) { return absl::OkStatus(); }, limits);
  return dec.Feed(bytes);
}

constexpr uint64_t kNoDataLimit = std::numeric_limits<uint64_t>::max();

// 2^24 * 2^40 = 2^64 wraps a 64-bit product to 0: such a header once passed as an empty tensor.
TEST(SafetensorsTest, RefusesAShapeWhoseElementCountOverflows) {
  const std::string file = FileWithHeader(
      R"({"huge":{"dtype":"F32","shape":[16777216,1099511627776],"data_offsets":[0,0]}})");
  for (uint64_t limit : {SafetensorsLimits{}.max_data_bytes, kNoDataLimit}) {
    SafetensorsLimits limits{.max_data_bytes = limit};
    auto whole = DecodeSafetensors(file, nullptr, limits);
    EXPECT_EQ(whole.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(whole.status().message()), HasSubstr("tensor 'huge'"));
    EXPECT_THAT(std::string(whole.status().message()), HasSubstr("elements"));
    ModelLayout seen;
    Status streamed = StreamHeader(file, limits, &seen);
    EXPECT_EQ(streamed.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(streamed.message()), HasSubstr("tensor 'huge'"));
    EXPECT_EQ(seen.size(), 0u) << "the stream decoder announced the overflowing layout";
  }
}

// 2^31 * 2^31 = 2^62 elements fit in int64, but 2^62 F32 values take 2^64 bytes, which wraps to
// 0 and once matched data_offsets [0,0].
TEST(SafetensorsTest, RefusesAShapeWhoseByteSizeOverflows) {
  const std::string file = FileWithHeader(
      R"({"wide":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]}})");
  SafetensorsLimits limits{.max_data_bytes = kNoDataLimit};
  auto whole = DecodeSafetensors(file, nullptr, limits);
  EXPECT_EQ(whole.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(whole.status().message()), HasSubstr("tensor 'wide'"));
  EXPECT_THAT(std::string(whole.status().message()), HasSubstr("bytes"));
  ModelLayout seen;
  Status streamed = StreamHeader(file, limits, &seen);
  EXPECT_EQ(streamed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(streamed.message()), HasSubstr("tensor 'wide'"));
  EXPECT_EQ(seen.size(), 0u);
}

// (2^30 - 1) * (2^30 + 1) = 2^60 - 1 U64 values take 2^63 - 8 bytes: the largest such tensor
// whose size fits in int64. One more row and it does not.
TEST(SafetensorsTest, AShapeExactlyAtTheInt64LimitIsAccepted) {
  SafetensorsLimits limits{.max_data_bytes = kNoDataLimit};
  const std::string fits =
      FileWithHeader(R"({"big":{"dtype":"U64","shape":[1073741823,1073741825],)"
                     R"("data_offsets":[0,9223372036854775800]}})");
  ModelLayout seen;
  ASSERT_TRUE(StreamHeader(fits, limits, &seen).ok());
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen.TotalElements(), (int64_t{1} << 60) - 1);
  uint64_t data_bytes = 0;
  auto parsed = ParseSafetensorsHeader(fits.substr(8), nullptr, &data_bytes, limits);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(data_bytes, uint64_t{9223372036854775800u});

  const std::string over = FileWithHeader(
      R"({"big":{"dtype":"U64","shape":[1073741824,1073741824],"data_offsets":[0,0]}})");
  Status streamed = StreamHeader(over, limits, &seen);
  EXPECT_EQ(streamed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(streamed.message()), HasSubstr("tensor 'big'"));
}

// A tensor of exactly max_data_bytes decodes, whole and streamed; four bytes more are refused.
TEST(SafetensorsTest, ATensorExactlyAtTheSizeLimitDecodes) {
  SafetensorsLimits limits{.max_data_bytes = 64};
  const std::string fits =
      FileWithHeader(R"({"w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}})", 64);
  auto whole = DecodeSafetensors(fits, nullptr, limits);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->values, std::vector<float>(16, 0.0f));
  ModelLayout seen;
  ASSERT_TRUE(StreamHeader(fits, limits, &seen).ok());
  EXPECT_EQ(seen.TotalElements(), 16);

  const std::string over =
      FileWithHeader(R"({"w":{"dtype":"F32","shape":[17],"data_offsets":[0,68]}})", 68);
  for (Status st :
       {DecodeSafetensors(over, nullptr, limits).status(), StreamHeader(over, limits, &seen)}) {
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(st.message()), HasSubstr("tensor 'w' of 68 bytes is larger than"));
  }
}

// The names of a header are kept in one pass: read as an ordered_json object, each name was
// looked up by a linear search, so a header of 8 MiB of metadata names (about 700,000) kept a
// site's download busy for minutes (1 MiB: 8.4 s before, 0.07 s after), and as many tensor
// names the coordinator's receiving thread. Without the fix this test runs past its timeout.
TEST(SafetensorsTest, AHeaderOfManyNamesIsReadWithoutASearchPerName) {
  std::string json = R"({"__metadata__":{)";
  size_t names = 0;
  while (json.size() < (8u << 20)) json += "\"" + std::to_string(names++) + "\":\"\",";
  json += R"("last":""},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  TensorMetadata meta;
  auto model = DecodeSafetensors(FileWithHeader(json, 8), &meta,
                                 SafetensorsLimits{.max_header_bytes = 16 << 20});
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(meta.size(), names + 1);
  EXPECT_EQ(model->layout.tensors()[0].name, "w");
}

// A header's nesting and names are the decoder's to bound: a header of nested brackets is
// refused before its structure is built, and a name given twice is refused rather than one of
// its entries silently taking the other's place.
TEST(SafetensorsTest, RefusesADeeplyNestedHeaderAndANameGivenTwice) {
  const std::string nested = std::string(1 << 20, '[') + std::string(1 << 20, ']');
  for (const std::string& json :
       {nested,
        std::string(R"({"w":{"dtype":"F32","shape":[[[[[[[[1]]]]]]]],"data_offsets":[0,4]}})")}) {
    ModelLayout seen;
    for (Status st : {DecodeSafetensors(FileWithHeader(json, 4)).status(),
                      StreamHeader(FileWithHeader(json, 4), SafetensorsLimits{}, &seen)}) {
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(st.message()), HasSubstr("nests deeper than 8 levels"));
    }
  }
  const std::string twice = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  auto st = DecodeSafetensors(FileWithHeader(twice, 8)).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("names a key twice"));
}

// The encoder writes the header as it did with an ordered_json object: metadata first, then
// the tensors in the layout's order, each as dtype, shape, data_offsets.
TEST(SafetensorsTest, TheHeaderIsWrittenInTheLayoutsOrder) {
  const std::string bytes = EncodeSafetensors(SmallModel(), {{"round", "7"}, {"a\"b", "c"}});
  uint64_t len = 0;
  std::memcpy(&len, bytes.data(), 8);
  std::string json = bytes.substr(8, len);
  json.erase(json.find_last_not_of(' ') + 1);
  EXPECT_EQ(json, R"({"__metadata__":{"a\"b":"c","round":"7"},)"
                  R"("conv.weight":{"dtype":"F32","shape":[2,1,3,3],"data_offsets":[0,72]},)"
                  R"("conv.bias":{"dtype":"F32","shape":[2],"data_offsets":[72,80]},)"
                  R"("fc.weight":{"dtype":"F32","shape":[3,5],"data_offsets":[80,140]}})");
  EXPECT_EQ(EncodeSafetensorsHeader(ModelLayout(std::vector<TensorSpec>{}), {}).substr(8),
            std::string("{}") + std::string(6, ' '));
}

TEST(TensorSizeTest, ChecksEveryProductAgainstInt64) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  auto size = CheckedTensorSize({"w", DType::kF32, {3, 0, 5}});
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(size->elements, 0);
  EXPECT_EQ(size->bytes, 0);
  // 2^61 - 1 F32 values take 2^63 - 4 bytes, the most that fit; 2^61 do not.
  size = CheckedTensorSize({"w", DType::kF32, {(int64_t{1} << 61) - 1}});
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(size->bytes, kMax - 3);
  EXPECT_THAT(
      std::string(CheckedTensorSize({"w", DType::kF32, {int64_t{1} << 61}}).status().message()),
      HasSubstr("tensor 'w': shape [2305843009213693952] of F32 takes more than"));
  // 2^32 * 2^31 = 2^63 elements: one more than int64 holds.
  Status st = CheckedTensorSize({"w", DType::kU32, {int64_t{1} << 32, int64_t{1} << 31}}).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("elements"));
  // A zero dimension does not hide an overflow among the others (strides must fit too).
  EXPECT_FALSE(CheckedTensorSize({"w", DType::kF32, {0, int64_t{1} << 40, int64_t{1} << 40}}).ok());
  EXPECT_THAT(std::string(CheckedTensorSize({"w", DType::kF32, {2, -3}}).status().message()),
              HasSubstr("negative dimension"));
}

TEST(ModelLayoutTest, CreateRefusesATotalBeyondInt64) {
  // Each tensor alone takes 2^62 bytes; the two together 2^63.
  auto layout = ModelLayout::Create(
      {{"a", DType::kF32, {int64_t{1} << 60}}, {"b", DType::kF32, {int64_t{1} << 60}}});
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(layout.status().message()), HasSubstr("tensor 'b'"));
  auto fine = ModelLayout::Create({{"a", DType::kF32, {2, 3}}, {"b", DType::kF32, {4}}});
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ(fine->TotalElements(), 10);
  EXPECT_EQ(fine->Offset(1), 6);
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

// The blockwise search reports the first NaN or Inf wherever it lies, block edges included.
TEST(FindNonFiniteTest, FindsTheFirstNaNOrInfAtEveryPosition) {
  std::vector<float> values(1100);
  for (size_t i = 0; i < values.size(); ++i) values[i] = (i % 2 ? -1.0f : 1.0f) * 1e30f;
  values[7] = std::numeric_limits<float>::max();
  values[9] = std::numeric_limits<float>::denorm_min();
  EXPECT_EQ(FindNonFinite(values.data(), values.size()), -1);
  EXPECT_EQ(FindNonFinite(values.data(), 0), -1);
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  for (float b : bad) {
    for (size_t at : {size_t{0}, size_t{1}, size_t{255}, size_t{256}, size_t{257}, size_t{511},
                      size_t{512}, size_t{1023}, size_t{1024}, size_t{1099}}) {
      std::vector<float> v = values;
      v[at] = b;
      EXPECT_EQ(FindNonFinite(v.data(), v.size()), static_cast<int64_t>(at)) << b << " at " << at;
      if (at + 3 < v.size()) v[at + 3] = b;  // a later one does not hide the first
      EXPECT_EQ(FindNonFinite(v.data(), v.size()), static_cast<int64_t>(at)) << b << " at " << at;
      EXPECT_EQ(FindNonFinite(v.data(), at), -1);  // a range that ends before it
    }
  }
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

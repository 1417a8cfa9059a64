#include "client/data.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/random/seeded_random.h"

namespace hansa {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kDir = kFashionMnistDir;

std::string Header(uint8_t type, std::vector<uint32_t> dims) {
  std::string out = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(d >> shift));
  }
  return out;
}

std::string Gzip(const std::string& raw) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, raw.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = raw.size();
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = out.size();
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string TempFile(const std::string& name, const std::string& bytes) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

void ExpectInvalid(const StatusOr<IdxArray>& got, const std::string& text) {
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();
  EXPECT_THAT(std::string(got.status().message()), HasSubstr(text));
}

TEST(SeededRandomTest, MatchesSplitMix64ReferenceOutput) {
  SeededRandom random(0);
  EXPECT_EQ(random.Next(), 0xe220a8397b1dcdafull);
  EXPECT_EQ(random.Next(), 0x6e789e6aa1b965f4ull);
}

TEST(IdxTest, ReadsFashionMnistTrainAndTestSets) {
  StatusOr<Dataset> train = LoadMnistStyle(kDir, Split::kTrain);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->size(), 60000);
  EXPECT_EQ(train->rows, 28);
  EXPECT_EQ(train->cols, 28);
  EXPECT_EQ(train->images.size(), 60000u * 784u);
  EXPECT_TRUE(train->Validate().ok());
  // The first Fashion-MNIST training label is 9 (ankle boot), the first test label 9 too.
  EXPECT_EQ(train->labels[0], 9);
  std::vector<int> counts(10);
  for (uint8_t label : train->labels) counts.at(label)++;
  for (int c : counts) EXPECT_EQ(c, 6000);

  StatusOr<Dataset> test = LoadMnistStyle(kDir, Split::kTest);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->size(), 10000);
  EXPECT_EQ(test->labels[0], 9);
}

TEST(IdxTest, RawAndGzippedFilesParseTheSame) {
  std::string raw = Header(0x08, {2, 3}) + std::string("\x01\x02\x03\x04\x05\xff", 6);
  StatusOr<IdxArray> a = ReadIdxFile(TempFile("raw-idx", raw));
  StatusOr<IdxArray> b = ReadIdxFile(TempFile("gz-idx.gz", Gzip(raw)));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_THAT(a->dims, ElementsAre(2, 3));
  EXPECT_THAT(a->data, ElementsAre(1, 2, 3, 4, 5, 255));
  EXPECT_EQ(a->dims, b->dims);
  EXPECT_EQ(a->data, b->data);
}

TEST(IdxTest, RejectsBadMagicNamingTheFile) {
  std::string bytes = Header(0x08, {1}) + "x";
  bytes[0] = 0x1;
  ExpectInvalid(ParseIdx(bytes, "labels.idx"), "labels.idx: bad IDX magic number 0x01000801");
  ExpectInvalid(ParseIdx(Header(0x08, {}), "x"), "bad IDX magic number 0x00000800");
  ExpectInvalid(ParseIdx("PK\x03\x04 not idx", "a.zip"), "a.zip: bad IDX magic");
}

TEST(IdxTest, RejectsElementTypesOtherThanUint8) {
  ExpectInvalid(ParseIdx(Header(0x0D, {1}) + "abcd", "f.idx"), "IDX element type 0x0d");
}

TEST(IdxTest, RejectsShortFiles) {
  ExpectInvalid(ParseIdx(std::string("\0\0", 2), "tiny"), "2 bytes is too short");
  ExpectInvalid(ParseIdx(Header(0x08, {5, 5}).substr(0, 9), "h"), "truncated IDX header");
}

TEST(IdxTest, RejectsPayloadThatDisagreesWithHeader) {
  ExpectInvalid(ParseIdx(Header(0x08, {10, 28, 28}) + std::string(7839, 'a'), "img"),
                "need 7840 data bytes but the file has 7839 (truncated file?)");
  ExpectInvalid(ParseIdx(Header(0x08, {3}) + "abcd", "lbl"),
                "need 3 data bytes but the file has 4 (trailing bytes)");
}

TEST(IdxTest, RejectsSizesOverTheCapBeforeAllocating) {
  // 2^32-1 cubed overflows 64 bits; the cap check must fire first.
  ExpectInvalid(ParseIdx(Header(0x08, {0xffffffffu, 0xffffffffu, 0xffffffffu}), "huge"),
                "describe more than");
  ExpectInvalid(ParseIdx(Header(0x08, {100}) + std::string(100, 'a'), "capped", 64),
                "over the IDX cap of 64");
  std::string zeros = Header(0x08, {1000}) + std::string(1000, '\0');
  ExpectInvalid(ParseIdx(Gzip(zeros), "bomb.gz", 500), "bomb.gz: decompresses to more than 500");
}

TEST(IdxTest, RejectsTruncatedAndCorruptGzip) {
  std::string gz = Gzip(Header(0x08, {4000}) + std::string(4000, 'q'));
  ExpectInvalid(ParseIdx(gz.substr(0, gz.size() / 2), "half.gz"),
                "half.gz: gzip stream is truncated");
  std::string corrupt = gz;
  for (size_t i = 10; i < corrupt.size(); ++i) corrupt[i] = static_cast<char>(0xff);
  ExpectInvalid(ParseIdx(corrupt, "bad.gz"), "bad.gz: corrupt gzip data");
  // The real file, cut short.
  StatusOr<std::string> real = [] {
    std::ifstream in(kDir + "/t10k-labels-idx1-ubyte.gz", std::ios::binary);
    return StatusOr<std::string>(std::string(std::istreambuf_iterator<char>(in), {}));
  }();
  ASSERT_GT(real->size(), 100u);
  ExpectInvalid(ReadIdxFile(TempFile("cut.gz", real->substr(0, real->size() - 100))),
                "gzip stream is truncated");
}

// Every corruption of a small file is either parsed consistently or refused; none crashes.
TEST(IdxTest, MutatedFilesAreRefusedOrConsistent) {
  const std::string raw = Header(0x08, {3, 2, 2}) + std::string(12, '\x07');
  const std::string gz = Gzip(raw);
  SeededRandom random(11);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string bytes = trial % 2 ? raw : gz;
    const int edits = 1 + static_cast<int>(random.Below(3));
    for (int e = 0; e < edits; ++e) {
      bytes[random.Below(bytes.size())] = static_cast<char>(random.Below(256));
    }
    if (random.Below(4) == 0) bytes.resize(random.Below(bytes.size()));
    StatusOr<IdxArray> got = ParseIdx(bytes, "mutated", 1 << 16);
    if (!got.ok()) {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
      continue;
    }
    size_t product = 1;
    for (int64_t d : got->dims) product *= static_cast<size_t>(d);
    EXPECT_EQ(got->data.size(), product);
  }
}

TEST(IdxTest, MissingFileIsNotFound) {
  StatusOr<IdxArray> got = ReadIdxFile("/nonexistent/train-images-idx3-ubyte.gz");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr("/nonexistent/train-images-idx3-ubyte.gz"));
}

TEST(IdxTest, DatasetRejectsMismatchedImageAndLabelCounts) {
  std::string images = TempFile("i3", Header(0x08, {2, 2, 2}) + std::string(8, 'a'));
  std::string labels = TempFile("l3", Header(0x08, {3}) + std::string(3, '\1'));
  std::string flat = TempFile("flat", Header(0x08, {8}) + std::string(8, '\1'));
  StatusOr<Dataset> got = LoadIdxDataset(images, labels);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("holds 2 images but"));
  got = LoadIdxDataset(flat, labels);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("has 3 dimensions"));
}

TEST(ShardTest, PermutationIsFixedBySeed) {
  // Pinned: changing these values re-deals every federation's data between sites.
  EXPECT_THAT(SeededPermutation(10, kShardSeed), ElementsAre(1, 8, 2, 5, 3, 0, 7, 4, 6, 9));
  EXPECT_THAT(SeededPermutation(10, 1), ElementsAre(4, 2, 8, 1, 9, 3, 0, 6, 7, 5));
  EXPECT_TRUE(SeededPermutation(0, 1).empty());
}

TEST(ShardTest, ShardsAreDisjointAndCoverTheSet) {
  for (int64_t n : {10, 60000, 10000}) {
    for (int count : {1, 3, 7}) {
      std::vector<int> seen(n);
      int64_t smallest = n, largest = 0;
      for (int i = 0; i < count; ++i) {
        StatusOr<std::vector<int64_t>> shard = ShardIndices(n, i, count);
        ASSERT_TRUE(shard.ok()) << shard.status();
        smallest = std::min<int64_t>(smallest, shard->size());
        largest = std::max<int64_t>(largest, shard->size());
        for (int64_t k : *shard) seen.at(k)++;
      }
      EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), n) << n << " / " << count;
      EXPECT_LE(largest - smallest, 1);
    }
  }
  EXPECT_THAT(*ShardIndices(10, 0, 3), ElementsAre(1, 8, 2));
}

TEST(ShardTest, ShardHoldsTheIndexedExamples) {
  Dataset data;
  data.rows = 1;
  data.cols = 2;
  for (int i = 0; i < 10; ++i) {
    data.labels.push_back(i);
    data.images.push_back(10 * i);
    data.images.push_back(10 * i + 1);
  }
  StatusOr<Dataset> shard = Shard(data, 0, 3);
  ASSERT_TRUE(shard.ok()) << shard.status();
  EXPECT_THAT(shard->labels, ElementsAre(1, 8, 2));
  EXPECT_THAT(shard->images, ElementsAre(10, 11, 80, 81, 20, 21));
  EXPECT_EQ(Head(data, 2).labels.size(), 2u);
  EXPECT_EQ(Head(data, 20).size(), 10);
}

TEST(ShardTest, RejectsBadShardAndIndex) {
  for (auto [index, count] : {std::pair{3, 3}, {-1, 3}, {0, 0}}) {
    StatusOr<std::vector<int64_t>> got = ShardIndices(10, index, count);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(got.status().message()), HasSubstr("does not exist"));
  }
  Dataset data;
  data.rows = data.cols = 1;
  data.images = {1};
  data.labels = {1};
  StatusOr<Dataset> got = Subset(data, {0, 1});
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("example index 1 is outside"));
}

}  // namespace
}  // namespace hansa

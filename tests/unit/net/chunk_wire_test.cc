#include "common/net/chunk_wire.h"

#include <grpcpp/support/proto_buffer_reader.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"

namespace hansa {
namespace {

// `bytes` as a message received in slices cut at `cuts` (ascending offsets).
grpc::ByteBuffer Received(const std::string& bytes, const std::vector<size_t>& cuts) {
  std::vector<grpc::Slice> slices;
  size_t from = 0;
  for (size_t cut : cuts) {
    slices.emplace_back(bytes.data() + from, cut - from);
    from = cut;
  }
  slices.emplace_back(bytes.data() + from, bytes.size() - from);
  return grpc::ByteBuffer(slices.data(), slices.size());
}

std::string Flat(const grpc::ByteBuffer& message) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(message.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

std::string Joined(const ChunkView& view) {
  std::string out;
  for (std::string_view piece : view.data) out.append(piece);
  return out;
}

v1::Chunk AsProtobuf(const grpc::ByteBuffer& message) {
  v1::Chunk chunk;
  EXPECT_TRUE(chunk.ParseFromString(Flat(message)));
  return chunk;
}

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 131 + 7);
  return s;
}

TEST(ChunkWireTest, DataChunkReadsAsProtobufDoes) {
  const std::string data = Pattern(70000);
  v1::Chunk chunk = AsProtobuf(DataChunkMessage(uint64_t{5} << 32, data));
  EXPECT_EQ(chunk.offset(), uint64_t{5} << 32);  // offsets past 4 GiB
  ASSERT_EQ(chunk.body_case(), v1::Chunk::kData);
  EXPECT_EQ(chunk.data(), data);
}

TEST(ChunkWireTest, SharedDataChunkReferencesThePayloadUntilReleased) {
  // The payload's last reference is the message's: its bytes stay until gRPC drops the slice
  // (read below after the SharedBytes is gone; ASan would see a use after free).
  const std::string expected = Pattern(1 << 20);
  {
    grpc::ByteBuffer message;
    const char* data = nullptr;
    {
      SharedBytes payload{std::string(expected)};
      data = payload.data();
      message = SharedDataChunkMessage(4096, std::move(payload), 4096, 300000);
    }
    v1::Chunk chunk = AsProtobuf(message);
    EXPECT_EQ(chunk.offset(), 4096u);
    EXPECT_EQ(chunk.data(), expected.substr(4096, 300000));
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(message.Dump(&slices).ok());
    ASSERT_EQ(slices.size(), 2u);  // framing, then the payload's own bytes: no copy
    EXPECT_EQ(reinterpret_cast<const char*>(slices[1].begin()), data + 4096);
    EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(slices[1].begin()), 300000),
              std::string_view(expected).substr(4096, 300000));
  }
}

TEST(ChunkWireTest, HeaderChunkReadsAsProtobufDoes) {
  v1::TransferHeader header;
  header.set_round(7);
  header.set_total_bytes(uint64_t{6} << 30);
  header.set_sha256(std::string(64, 'a'));
  v1::Chunk chunk = AsProtobuf(HeaderChunkMessage(header));
  ASSERT_TRUE(chunk.has_header());
  EXPECT_EQ(chunk.header().total_bytes(), uint64_t{6} << 30);
}

// Every way gRPC might cut a message into slices gives the same chunk.
TEST(ChunkWireTest, ParsesProtobufChunksWhereverTheSlicesAreCut) {
  v1::Chunk data_chunk;
  data_chunk.set_offset(123456789012);
  data_chunk.set_data(Pattern(300));
  v1::Chunk header_chunk;
  header_chunk.mutable_header()->set_round(3);
  header_chunk.mutable_header()->set_sha256("ab");
  for (const v1::Chunk& chunk : {data_chunk, header_chunk}) {
    const std::string bytes = chunk.SerializeAsString();
    for (size_t a = 0; a <= bytes.size(); a += 7) {
      for (size_t b = a; b <= bytes.size(); b += 13) {
        std::vector<grpc::Slice> slices;
        ChunkView view;
        ASSERT_TRUE(ParseChunk(Received(bytes, {a, b}), &slices, &view).ok()) << a << "," << b;
        EXPECT_EQ(view.has_header, chunk.has_header());
        EXPECT_EQ(view.offset, chunk.offset());
        EXPECT_EQ(Joined(view), chunk.data());
        EXPECT_EQ(view.data_bytes, chunk.data().size());
        EXPECT_EQ(view.header.round(), chunk.header().round());
        EXPECT_EQ(view.header.sha256(), chunk.header().sha256());
      }
    }
  }
}

TEST(ChunkWireTest, EmptyMessageIsAnEmptyDataChunk) {
  std::vector<grpc::Slice> slices;
  ChunkView view;
  ASSERT_TRUE(ParseChunk(grpc::ByteBuffer(), &slices, &view).ok());
  EXPECT_FALSE(view.has_header);
  EXPECT_EQ(view.data_bytes, 0u);
}

TEST(ChunkWireTest, SkipsUnknownFieldsLikeProtobuf) {
  std::string bytes = Flat(DataChunkMessage(9, "payload"));
  // Fields 15 (varint), 16 (fixed64), 17 (length-delimited), 18 (fixed32).
  bytes += std::string("\x78\x96\x01", 3) + std::string("\x81\x01", 2) + std::string(8, 'x') +
           std::string("\x8a\x01\x03zzz", 6) + std::string("\x95\x01", 2) + std::string(4, 'y');
  v1::Chunk reference;
  ASSERT_TRUE(reference.ParseFromString(bytes));
  std::vector<grpc::Slice> slices;
  ChunkView view;
  ASSERT_TRUE(ParseChunk(Received(bytes, {}), &slices, &view).ok());
  EXPECT_EQ(Joined(view), reference.data());
  EXPECT_EQ(view.offset, reference.offset());
}

TEST(ChunkWireTest, TheLastOfHeaderAndDataCounts) {
  v1::Chunk header_chunk;
  header_chunk.mutable_header()->set_round(4);
  const std::string header = header_chunk.SerializeAsString();
  const std::string data = Flat(DataChunkMessage(0, "abc"));
  std::vector<grpc::Slice> slices;
  ChunkView view;
  ASSERT_TRUE(ParseChunk(Received(data + header, {}), &slices, &view).ok());
  EXPECT_TRUE(view.has_header);
  EXPECT_EQ(view.header.round(), 4u);
  EXPECT_EQ(view.data_bytes, 0u);
  ASSERT_TRUE(ParseChunk(Received(header + data, {}), &slices, &view).ok());
  EXPECT_FALSE(view.has_header);
  EXPECT_EQ(Joined(view), "abc");
}

void ExpectMalformed(const std::string& bytes, const std::string& why) {
  std::vector<grpc::Slice> slices;
  ChunkView view;
  Status st = ParseChunk(Received(bytes, {}), &slices, &view);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << why;
  EXPECT_TRUE(absl::StrContains(st.message(), why)) << st.message();
}

TEST(ChunkWireTest, RefusesMalformedMessages) {
  const std::string data = Flat(DataChunkMessage(1, "0123456789"));
  ExpectMalformed(data.substr(0, data.size() - 1), "data truncated");
  ExpectMalformed(std::string("\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11) + "x",
                  "bad field length");  // a length of 2^64 - 1
  ExpectMalformed(std::string("\x12\xff\xff\xff\xff\x07", 6) + "x", "data truncated");  // 2^31 - 1
  ExpectMalformed(std::string("\x18\x80", 2), "offset truncated");
  ExpectMalformed(std::string("\x18") + std::string(10, '\xff') + "\x01", "offset truncated");
  ExpectMalformed(std::string("\x0b", 1), "wire type 3");    // a group
  ExpectMalformed(std::string("\x00", 1), "bad field tag");  // field number 0
  ExpectMalformed(std::string("\x0a\x02\xff\xff", 4), "header does not parse");
  ExpectMalformed(std::string("\x0a\x05\x08", 3), "header truncated");
  // Tags as protobuf reads them: 32 bits in at most 5 bytes (found by chunk_wire_fuzz: a
  // 7-byte tag was skipped as an unknown field where protobuf refuses the message).
  const std::string huge_tag("\xb8\xaa\x94\x9d\x9c\x9b\x28\x31", 8);
  EXPECT_FALSE(v1::Chunk().ParseFromString(huge_tag));
  ExpectMalformed(huge_tag, "bad field tag");
  const std::string long_small_tag("\x98\x80\x80\x80\x80\x00\x05", 7);  // offset, 6 bytes
  EXPECT_FALSE(v1::Chunk().ParseFromString(long_small_tag));
  ExpectMalformed(long_small_tag, "bad field tag");
  const std::string five_byte_tag("\x98\x80\x80\x80\x00\x05", 6);  // offset in 5 bytes
  v1::Chunk reference;
  ASSERT_TRUE(reference.ParseFromString(five_byte_tag));
  std::vector<grpc::Slice> slices;
  ChunkView view;
  ASSERT_TRUE(ParseChunk(Received(five_byte_tag, {}), &slices, &view).ok());
  EXPECT_EQ(view.offset, reference.offset());
  EXPECT_EQ(view.offset, 5u);
  // Lengths too (found by chunk_wire_fuzz: a header of length 0 written in 10 bytes): at most
  // 5 bytes and below 2^31, for known and unknown fields alike.
  for (const std::string& bad : {std::string("\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 11),
                                 std::string("\x12\x80\x80\x80\x80\x80\x00", 7),
                                 std::string("\x2a\x80\x80\x80\x80\x80\x00", 7),
                                 std::string("\x12\x80\x80\x80\x80\x08", 6)}) {
    EXPECT_FALSE(v1::Chunk().ParseFromString(bad));
    ExpectMalformed(bad, "length");
  }
  const std::string five_byte_length("\x12\x81\x80\x80\x80\x00q", 7);  // data "q"
  ASSERT_TRUE(reference.ParseFromString(five_byte_length));
  ASSERT_TRUE(ParseChunk(Received(five_byte_length, {2}), &slices, &view).ok());
  EXPECT_EQ(Joined(view), reference.data());
}

}  // namespace
}  // namespace hansa

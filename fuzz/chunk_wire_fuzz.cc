// The hand-written wire Chunk (common/net/chunk_wire.h), against protobuf's own parser of the
// same message: every message ParseChunk takes, protobuf reads to the same header, data and
// offset, whatever slices gRPC cut it into; and the chunks the framers write parse back to
// what they were given.
//
// Input: one byte that picks the slice length (1 to 64 bytes, or the whole message at 0),
// then the message.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/net/chunk_wire.h"
#include "google/protobuf/stubs/logging.h"
#include "hansa/v1/hansa.pb.h"

namespace {

std::string Joined(const std::vector<std::string_view>& pieces) {
  std::string out;
  for (std::string_view p : pieces) out.append(p);
  return out;
}

grpc::ByteBuffer Sliced(std::string_view bytes, size_t slice) {
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < bytes.size(); at += slice) {
    const size_t n = std::min(slice, bytes.size() - at);
    slices.emplace_back(bytes.data() + at, n);
  }
  if (slices.empty()) return grpc::ByteBuffer();
  return grpc::ByteBuffer(slices.data(), slices.size());
}

// `view` must say what protobuf says of `bytes`.
void SameAsProtobuf(std::string_view bytes, const hansa::ChunkView& view) {
  hansa::v1::Chunk reference;
  if (!reference.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) abort();
  if (reference.offset() != view.offset) abort();
  if (reference.has_header() != view.has_header) abort();
  if (view.has_header &&
      reference.header().SerializeAsString() != view.header.SerializeAsString()) {
    abort();
  }
  const std::string data = Joined(view.data);
  if (data.size() != view.data_bytes) abort();
  if (reference.body_case() == hansa::v1::Chunk::kData && data != reference.data()) abort();
  if (reference.body_case() != hansa::v1::Chunk::kData && !data.empty()) abort();
}

void ParsesBackTo(const grpc::ByteBuffer& message, uint64_t offset, std::string_view data) {
  std::vector<grpc::Slice> slices;
  hansa::ChunkView view;
  if (!hansa::ParseChunk(message, &slices, &view).ok()) abort();
  if (view.has_header || view.offset != offset || Joined(view.data) != data) abort();
}

}  // namespace

// Protobuf logs every header with a string that is not UTF-8, which both parsers refuse: quiet.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t slice = data[0] % 65 == 0 ? size : data[0] % 65;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);

  std::vector<grpc::Slice> slices;
  hansa::ChunkView view;
  if (hansa::ParseChunk(Sliced(bytes, slice), &slices, &view).ok()) SameAsProtobuf(bytes, view);

  // The framers: the input's bytes as one chunk's data, at an offset taken from them.
  uint64_t offset = 0;
  for (size_t i = 0; i < std::min<size_t>(8, bytes.size()); ++i) {
    offset = (offset << 8) | static_cast<uint8_t>(bytes[i]);
  }
  ParsesBackTo(hansa::DataChunkMessage(offset, bytes), offset, bytes);
  const hansa::SharedBytes payload{std::string(bytes)};
  const size_t begin = bytes.empty() ? 0 : data[0] % (bytes.size() + 1);
  ParsesBackTo(hansa::SharedDataChunkMessage(offset, payload, begin, bytes.size() - begin), offset,
               bytes.substr(begin));
  return 0;
}

// The wire Chunk (proto/hansa/v1/hansa.proto: header = 1, data = 2, offset = 3) framed and
// parsed by hand around its data bytes, so that a model's bytes travel between the payload and
// gRPC's buffers without protobuf copying them into a string of its own first:
//   - the coordinator serves the global model from one shared immutable buffer: every site's
//     data chunks are slices that reference it (SharedDataChunkMessage), no copy per site;
//   - a site copies each piece of its update once, into the message (DataChunkMessage);
//   - a receiver reads a chunk's data as views into the received message's slices (ParseChunk),
//     and hashes and folds or assembles them from there.
// The bytes on the wire are those protobuf writes and reads for the same Chunk, so either end
// may use the generated code instead.
//
// Threading: free functions of their arguments. A ChunkView points into the slices that
// ParseChunk handed out; it is valid while they are.
#pragma once

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/fileio/shared_bytes.h"
#include "common/status/status.h"
#include "hansa/v1/hansa.pb.h"

namespace hansa {

// A chunk carrying only `header`.
grpc::ByteBuffer HeaderChunkMessage(const v1::TransferHeader& header);

// A data chunk at `offset` whose bytes are a copy of `data`: one copy, into gRPC's buffer.
grpc::ByteBuffer DataChunkMessage(uint64_t offset, std::string_view data);

// A data chunk at `offset` whose bytes are payload's [begin, begin + size), not copied: the
// message holds a reference to `payload` until gRPC has sent it.
// REQUIRES: begin + size <= payload.size().
grpc::ByteBuffer SharedDataChunkMessage(uint64_t offset, SharedBytes payload, size_t begin,
                                        size_t size);

// One received chunk. As protobuf reads it: of header and data, the one that came last
// counts (a oneof); unknown fields are skipped.
struct ChunkView {
  bool has_header = false;
  v1::TransferHeader header;           // when has_header
  uint64_t offset = 0;                 // field 3, 0 when absent
  std::vector<std::string_view> data;  // the data bytes in order, views into the slices
  uint64_t data_bytes = 0;             // their total
};

// Parses `message` into `*view`. `*slices` receives references to the message's slices, which
// the views point into: keep it while the view is used. InvalidArgument for a message that is
// not a well-formed Chunk (truncated, a malformed varint, a group, a header that does not
// parse), naming what was wrong.
Status ParseChunk(const grpc::ByteBuffer& message, std::vector<grpc::Slice>* slices,
                  ChunkView* view);

}  // namespace hansa

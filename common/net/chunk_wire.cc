#include "common/net/chunk_wire.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hansa {
namespace {

// Field tags of v1::Chunk: (field number << 3) | wire type.
constexpr uint8_t kHeaderTag = (1 << 3) | 2;  // TransferHeader, length-delimited
constexpr uint8_t kDataTag = (2 << 3) | 2;    // bytes, length-delimited
constexpr uint8_t kOffsetTag = (3 << 3) | 0;  // uint64, varint
constexpr size_t kMaxVarint = 10;
constexpr size_t kMaxVarint32 = 5;  // tags and lengths, as protobuf reads them

size_t PutVarint(uint64_t v, uint8_t* out) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  out[n++] = static_cast<uint8_t>(v);
  return n;
}

// The bytes before a data chunk's data: its offset, then the data field's tag and length.
size_t DataPrefix(uint64_t offset, uint64_t size, uint8_t* out) {
  size_t n = 0;
  out[n++] = kOffsetTag;
  n += PutVarint(offset, out + n);
  out[n++] = kDataTag;
  n += PutVarint(size, out + n);
  return n;
}

// Reads a message laid out over several slices, as a protobuf stream would.
class SliceReader {
 public:
  explicit SliceReader(const std::vector<grpc::Slice>& slices) : slices_(slices) { SkipEmpty(); }

  bool done() const { return index_ == slices_.size(); }

  // A varint of at most `max_bytes` bytes.
  bool ReadVarint(uint64_t* value, size_t max_bytes = kMaxVarint) {
    *value = 0;
    for (size_t i = 0; i < max_bytes; ++i) {
      if (done()) return false;
      const uint8_t byte = slices_[index_].begin()[pos_];
      Advance(1);
      if (i == kMaxVarint - 1 && byte > 1) return false;  // past 64 bits
      *value |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }

  // The next `n` bytes as views into the slices (appended to `out` when not null).
  bool Take(uint64_t n, std::vector<std::string_view>* out) {
    while (n > 0) {
      if (done()) return false;
      const grpc::Slice& s = slices_[index_];
      const size_t step = static_cast<size_t>(std::min<uint64_t>(n, s.size() - pos_));
      if (out) out->emplace_back(reinterpret_cast<const char*>(s.begin()) + pos_, step);
      Advance(step);
      n -= step;
    }
    return true;
  }

 private:
  void Advance(size_t n) {
    pos_ += n;
    if (pos_ == slices_[index_].size()) {
      ++index_;
      pos_ = 0;
      SkipEmpty();
    }
  }
  void SkipEmpty() {
    while (index_ < slices_.size() && slices_[index_].size() == 0) ++index_;
  }

  const std::vector<grpc::Slice>& slices_;
  size_t index_ = 0;
  size_t pos_ = 0;
};

// A length-delimited field's length as protobuf reads it: at most 5 bytes, below 2^31.
bool ReadLength(SliceReader& in, uint64_t* n) {
  return in.ReadVarint(n, kMaxVarint32) && *n <= static_cast<uint64_t>(INT32_MAX);
}

Status Malformed(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed Chunk message: ", what));
}

// Skips a field of an unknown number with wire type `type`.
Status SkipField(SliceReader& in, uint64_t tag) {
  uint64_t n = 0;
  switch (tag & 7) {
    case 0:
      if (!in.ReadVarint(&n)) return Malformed(absl::StrCat("field ", tag >> 3, " truncated"));
      return absl::OkStatus();
    case 1:
      n = 8;
      break;
    case 2:
      if (!ReadLength(in, &n)) {
        return Malformed(absl::StrCat("field ", tag >> 3, " has a bad length"));
      }
      break;
    case 5:
      n = 4;
      break;
    default:
      return Malformed(absl::StrCat("field ", tag >> 3, " has wire type ", tag & 7));
  }
  if (!in.Take(n, nullptr)) return Malformed(absl::StrCat("field ", tag >> 3, " truncated"));
  return absl::OkStatus();
}

}  // namespace

grpc::ByteBuffer HeaderChunkMessage(const v1::TransferHeader& header) {
  v1::Chunk chunk;
  *chunk.mutable_header() = header;
  grpc::Slice slice(chunk.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

grpc::ByteBuffer DataChunkMessage(uint64_t offset, std::string_view data) {
  uint8_t prefix[2 + 2 * kMaxVarint];
  const size_t head = DataPrefix(offset, data.size(), prefix);
  grpc::Slice slice(head + data.size());
  uint8_t* out = const_cast<uint8_t*>(slice.begin());  // freshly allocated, ours to fill
  std::memcpy(out, prefix, head);
  if (!data.empty()) std::memcpy(out + head, data.data(), data.size());
  return grpc::ByteBuffer(&slice, 1);
}

grpc::ByteBuffer SharedDataChunkMessage(uint64_t offset, SharedBytes payload, size_t begin,
                                        size_t size) {
  uint8_t prefix[2 + 2 * kMaxVarint];
  const size_t head = DataPrefix(offset, size, prefix);
  grpc::Slice slices[2] = {grpc::Slice(prefix, head), grpc::Slice()};
  if (size == 0) return grpc::ByteBuffer(slices, 1);
  // The slice owns a reference to the payload; gRPC drops it once the bytes are sent.
  void* data = const_cast<char*>(payload.data() + begin);
  auto* owner = new SharedBytes(std::move(payload));
  slices[1] = grpc::Slice(
      data, size, [](void* p) { delete static_cast<SharedBytes*>(p); }, owner);
  return grpc::ByteBuffer(slices, 2);
}

Status ParseChunk(const grpc::ByteBuffer& message, std::vector<grpc::Slice>* slices,
                  ChunkView* view) {
  *view = ChunkView();
  slices->clear();
  if (!message.Valid()) return absl::OkStatus();  // an empty message: no fields
  if (!message.Dump(slices).ok()) return Malformed("its buffer could not be read");
  SliceReader in(*slices);
  std::vector<std::string_view> header_pieces;
  while (!in.done()) {
    // As protobuf reads a tag: a 32-bit varint of at most 5 bytes, field number not 0.
    uint64_t tag = 0;
    if (!in.ReadVarint(&tag, kMaxVarint32) || tag > UINT32_MAX || (tag >> 3) == 0) {
      return Malformed("bad field tag");
    }
    if (tag == kOffsetTag) {
      if (!in.ReadVarint(&view->offset)) return Malformed("offset truncated");
    } else if (tag == kDataTag || tag == kHeaderTag) {
      uint64_t n = 0;
      if (!ReadLength(in, &n)) return Malformed("bad field length");
      if (tag == kDataTag) {
        view->has_header = false;  // the oneof's last member counts
        view->data.clear();
        view->data_bytes = n;
        if (!in.Take(n, &view->data)) return Malformed("data truncated");
        continue;
      }
      header_pieces.clear();
      if (!in.Take(n, &header_pieces)) return Malformed("header truncated");
      std::string bytes;
      bytes.reserve(n);
      for (std::string_view piece : header_pieces) bytes.append(piece);
      if (!view->has_header) view->header.Clear();
      view->has_header = true;
      view->data.clear();
      view->data_bytes = 0;
      if (!view->header.MergeFromString(bytes)) return Malformed("header does not parse");
    } else {
      RETURN_IF_ERROR(SkipField(in, tag));
    }
  }
  return absl::OkStatus();
}

}  // namespace hansa

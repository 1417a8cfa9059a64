// Vectors in the ring Z_2^32 or Z_2^64 (unsigned wraparound): the domain of masked inputs and
// of their sum. A plain value type; one owner.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status/status.h"

namespace hansa {

enum class RingWidth : uint8_t { k32 = 32, k64 = 64 };

inline size_t RingWordSize(RingWidth w) { return w == RingWidth::k32 ? 4 : 8; }

struct RingVector {
  RingWidth width = RingWidth::k32;
  std::vector<uint32_t> w32;  // used when width == k32
  std::vector<uint64_t> w64;  // used when width == k64

  static RingVector Zeros(RingWidth width, size_t size);
  size_t size() const { return width == RingWidth::k32 ? w32.size() : w64.size(); }
  // Element i widened to 64 bits.
  uint64_t at(size_t i) const { return width == RingWidth::k32 ? w32[i] : w64[i]; }
  // this += other (mod 2^width). InvalidArgument on width or size mismatch.
  Status AddInPlace(const RingVector& other);
  bool operator==(const RingVector& o) const {
    return width == o.width && w32 == o.w32 && w64 == o.w64;
  }
};

// Gives back to the system the whole memory pages of `v`'s storage that hold elements of
// [begin, end) and none at or past `end`: their values are lost, and so are those of elements
// before `begin` on the first such page. For a vector being consumed in order (a sum decoded
// into another vector and discarded afterwards), so that its resident memory shrinks as the
// consumer goes. Returns the bytes given back. REQUIRES: begin <= end <= v->size().
size_t ReleaseRingPages(RingVector* v, size_t begin, size_t end);

// Little-endian bytes of elements of `v`; for messages.
std::string RingToBytes(const RingVector& v);
// Parses RingToBytes output; InvalidArgument when the length is not a multiple of the word size.
StatusOr<RingVector> RingFromBytes(RingWidth width, std::string_view bytes);

}  // namespace hansa

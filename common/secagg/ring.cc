#include "common/secagg/ring.h"

#include <cstring>

#include "common/tensor/huge_pages.h"

namespace hansa {

namespace {
constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

template <typename W>
void AppendLe(const std::vector<W>& v, std::string* out) {
  size_t start = out->size();
  out->resize(start + v.size() * sizeof(W));
  if (v.empty()) return;
  if (kLittleEndian) {
    std::memcpy(out->data() + start, v.data(), v.size() * sizeof(W));
    return;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    for (size_t b = 0; b < sizeof(W); ++b) {
      (*out)[start + i * sizeof(W) + b] = static_cast<char>(v[i] >> (8 * b));
    }
  }
}

template <typename W>
void ParseLe(std::string_view bytes, std::vector<W>* v) {
  v->resize(bytes.size() / sizeof(W));
  if (v->empty()) return;  // memcpy's pointers must not be null, even for 0 bytes
  if (kLittleEndian) {
    std::memcpy(v->data(), bytes.data(), v->size() * sizeof(W));
    return;
  }
  for (size_t i = 0; i < v->size(); ++i) {
    W w = 0;
    for (size_t b = 0; b < sizeof(W); ++b) {
      w |= static_cast<W>(static_cast<uint8_t>(bytes[i * sizeof(W) + b])) << (8 * b);
    }
    (*v)[i] = w;
  }
}
}  // namespace

RingVector RingVector::Zeros(RingWidth width, size_t size) {
  RingVector v;
  v.width = width;
  if (width == RingWidth::k32) {
    v.w32.assign(size, 0);
  } else {
    v.w64.assign(size, 0);
  }
  return v;
}

Status RingVector::AddInPlace(const RingVector& other) {
  if (other.width != width || other.size() != size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ring vectors differ: ", static_cast<int>(width), "-bit of ", size(), " vs ",
                     static_cast<int>(other.width), "-bit of ", other.size()));
  }
  for (size_t i = 0; i < w32.size(); ++i) w32[i] += other.w32[i];
  for (size_t i = 0; i < w64.size(); ++i) w64[i] += other.w64[i];
  return absl::OkStatus();
}

size_t ReleaseRingPages(RingVector* v, size_t begin, size_t end) {
  const size_t word = RingWordSize(v->width);
  void* data = v->width == RingWidth::k32 ? static_cast<void*>(v->w32.data())
                                          : static_cast<void*>(v->w64.data());
  return ReleaseConsumedPages(data, begin * word, end * word);
}

std::string RingToBytes(const RingVector& v) {
  std::string out;
  if (v.width == RingWidth::k32) {
    AppendLe(v.w32, &out);
  } else {
    AppendLe(v.w64, &out);
  }
  return out;
}

StatusOr<RingVector> RingFromBytes(RingWidth width, std::string_view bytes) {
  if (bytes.size() % RingWordSize(width) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("ring data of ", bytes.size(),
                                                   " bytes is not a whole number of ",
                                                   RingWordSize(width), "-byte words"));
  }
  RingVector v;
  v.width = width;
  if (width == RingWidth::k32) {
    ParseLe(bytes, &v.w32);
  } else {
    ParseLe(bytes, &v.w64);
  }
  return v;
}

}  // namespace hansa

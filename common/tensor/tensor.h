// Flat model representation shared by coordinator, client and tools.
//
// A Model is a list of named tensors laid out back to back in one flat float32 vector, in
// the order of its layout. Flat storage is what aggregation, masking and streaming need; the
// names and shapes travel with it so every peer can check an update against the global model
// before using it. Values are plain data: a Model is copyable and not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status/status.h"

namespace hansa {

enum class DType { kF32, kU32, kU64 };

// "F32", "U32", "U64" (the safetensors spelling).
const char* DTypeName(DType dtype);
StatusOr<DType> ParseDType(std::string_view name);
size_t DTypeSize(DType dtype);

struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;

  // The product of the dimensions. REQUIRES: CheckedTensorSize(*this) is OK, as it is for every
  // tensor of a ModelLayout; aborts otherwise (a shape from a peer or a file that reached here
  // unchecked is a bug).
  int64_t NumElements() const;
  bool operator==(const TensorSpec& other) const;
};

struct TensorSize {
  int64_t elements = 0;
  int64_t bytes = 0;
};

// The one place a shape's element count and byte size are computed, with overflow-checked
// multiplication. InvalidArgument naming the tensor when a dimension is negative, or when the
// product of the nonzero dimensions, or that product times the dtype's size, exceeds int64
// (so every stride of the tensor is representable too, whatever the order of its dimensions).
// A shape with a zero dimension has 0 elements.
StatusOr<TensorSize> CheckedTensorSize(const TensorSpec& spec);

// Names, dtypes and shapes of a model's tensors, in storage order.
class ModelLayout {
 public:
  ModelLayout() = default;
  // For tensors from a peer or a file: InvalidArgument (naming the tensor) when a tensor's size
  // or the layout's total elements or bytes do not fit in int64 (see CheckedTensorSize).
  static StatusOr<ModelLayout> Create(std::vector<TensorSpec> tensors);
  // For layouts Hansa builds itself. REQUIRES: Create(tensors) would succeed; aborts otherwise.
  explicit ModelLayout(std::vector<TensorSpec> tensors);

  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  int64_t TotalElements() const { return total_elements_; }
  // Element offset of tensor i in the flat vector.
  int64_t Offset(size_t i) const { return offsets_[i]; }
  size_t size() const { return tensors_.size(); }

  // OK when `other` has the same tensors (names, dtypes, shapes) in the same order; otherwise
  // InvalidArgument naming the first difference, e.g. "tensor 3 'fc1.weight': shape [120,256]
  // expected [120,400]".
  Status CheckSameAs(const ModelLayout& expected) const;
  bool operator==(const ModelLayout& other) const { return tensors_ == other.tensors_; }

 private:
  std::vector<TensorSpec> tensors_;
  std::vector<int64_t> offsets_;
  int64_t total_elements_ = 0;
};

struct Model {
  ModelLayout layout;
  std::vector<float> values;  // layout.TotalElements() values, tensors back to back

  // InvalidArgument when values.size() does not match the layout or a value is NaN/Inf.
  Status Validate() const;
};

// Index of the first non-finite value, or -1 when all are finite.
int64_t FindNonFinite(const float* values, size_t count);

}  // namespace hansa

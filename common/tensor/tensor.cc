#include "common/tensor/tensor.h"

#include <cmath>

#include "absl/strings/str_join.h"

namespace hansa {

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kU32:
      return "U32";
    case DType::kU64:
      return "U64";
  }
  return "?";
}

StatusOr<DType> ParseDType(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "U32") return DType::kU32;
  if (name == "U64") return DType::kU64;
  return absl::InvalidArgumentError(absl::StrCat("unsupported tensor dtype '", std::string(name),
                                                 "' (Hansa accepts F32, U32, U64)"));
}

size_t DTypeSize(DType dtype) { return dtype == DType::kU64 ? 8 : 4; }

int64_t TensorSpec::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool TensorSpec::operator==(const TensorSpec& other) const {
  return name == other.name && dtype == other.dtype && shape == other.shape;
}

ModelLayout::ModelLayout(std::vector<TensorSpec> tensors) : tensors_(std::move(tensors)) {
  offsets_.reserve(tensors_.size());
  for (const TensorSpec& t : tensors_) {
    offsets_.push_back(total_elements_);
    total_elements_ += t.NumElements();
  }
}

static std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

Status ModelLayout::CheckSameAs(const ModelLayout& expected) const {
  if (tensors_.size() != expected.tensors_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model has ", tensors_.size(), " tensors, expected ", expected.tensors_.size()));
  }
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const TensorSpec& got = tensors_[i];
    const TensorSpec& want = expected.tensors_[i];
    if (got.name != want.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", i, ": name '", got.name, "' expected '", want.name, "'"));
    }
    if (got.dtype != want.dtype) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", i, " '", got.name, "': dtype ",
                                                     DTypeName(got.dtype), " expected ",
                                                     DTypeName(want.dtype)));
    }
    if (got.shape != want.shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", i, " '", got.name, "': shape ",
                                                     ShapeString(got.shape), " expected ",
                                                     ShapeString(want.shape)));
    }
  }
  return absl::OkStatus();
}

int64_t FindNonFinite(const float* values, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(values[i])) return static_cast<int64_t>(i);
  }
  return -1;
}

Status Model::Validate() const {
  if (static_cast<int64_t>(values.size()) != layout.TotalElements()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model holds ", values.size(), " values but its layout needs ", layout.TotalElements()));
  }
  int64_t bad = FindNonFinite(values.data(), values.size());
  if (bad >= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model value ", bad, " is ", values[bad], " (NaN or Inf)"));
  }
  return absl::OkStatus();
}

}  // namespace hansa

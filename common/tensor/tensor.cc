#include "common/tensor/tensor.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>

#include "absl/strings/str_join.h"
#include "common/status/check.h"

namespace hansa {
namespace {

constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

}  // namespace

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

StatusOr<TensorSize> CheckedTensorSize(const TensorSpec& spec) {
  int64_t nonzero = 1;
  bool empty = false;
  for (int64_t d : spec.shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", spec.name, "': shape ",
                                                     ShapeString(spec.shape),
                                                     " has a negative dimension"));
    }
    if (d == 0) {
      empty = true;
    } else if (__builtin_mul_overflow(nonzero, d, &nonzero)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", spec.name, "': shape ",
                                                     ShapeString(spec.shape), " has more than ",
                                                     kMaxInt64, " elements"));
    }
  }
  int64_t bytes = 0;
  if (__builtin_mul_overflow(nonzero, static_cast<int64_t>(DTypeSize(spec.dtype)), &bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", spec.name, "': shape ", ShapeString(spec.shape), " of ",
                     DTypeName(spec.dtype), " takes more than ", kMaxInt64, " bytes"));
  }
  if (empty) return TensorSize{};
  return TensorSize{nonzero, bytes};
}

int64_t TensorSpec::NumElements() const {
  StatusOr<TensorSize> size = CheckedTensorSize(*this);
  HANSA_CHECK(size.ok());
  return size->elements;
}

bool TensorSpec::operator==(const TensorSpec& other) const {
  return name == other.name && dtype == other.dtype && shape == other.shape;
}

StatusOr<ModelLayout> ModelLayout::Create(std::vector<TensorSpec> tensors) {
  ModelLayout layout;
  layout.offsets_.reserve(tensors.size());
  int64_t total_bytes = 0;
  for (const TensorSpec& t : tensors) {
    ASSIGN_OR_RETURN(TensorSize size, CheckedTensorSize(t));
    layout.offsets_.push_back(layout.total_elements_);
    if (__builtin_add_overflow(layout.total_elements_, size.elements, &layout.total_elements_) ||
        __builtin_add_overflow(total_bytes, size.bytes, &total_bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("model layout: with tensor '", t.name,
                                                     "' the model holds more than ", kMaxInt64,
                                                     " elements or bytes"));
    }
  }
  layout.tensors_ = std::move(tensors);
  return layout;
}

ModelLayout::ModelLayout(std::vector<TensorSpec> tensors) {
  StatusOr<ModelLayout> checked = Create(std::move(tensors));
  if (!checked.ok()) std::fprintf(stderr, "%s\n", std::string(checked.status().message()).c_str());
  HANSA_CHECK(checked.ok());
  *this = *std::move(checked);
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
  // Every upload value passes here: blocks without a branch per value (the compiler vectorises
  // the exponent test, about 4x the early-exit loop), and the exact index only from the block
  // that holds one.
  constexpr size_t kBlock = 256;
  size_t i = 0;
  for (; i + kBlock <= count; i += kBlock) {
    uint32_t any = 0;
    for (size_t j = 0; j < kBlock; ++j) {
      uint32_t bits;
      std::memcpy(&bits, values + i + j, sizeof bits);
      any |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);  // NaN or Inf
    }
    if (any) break;
  }
  for (; i < count; ++i) {
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

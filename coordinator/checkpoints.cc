#include "coordinator/checkpoints.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/crypto/sha256.h"
#include "common/fileio/fileio.h"
#include "common/tensor/huge_pages.h"
#include "common/tensor/safetensors.h"
#include "spdlog/spdlog.h"

namespace hansa {

std::string Checkpoints::ModelPath(int64_t round) const {
  return absl::StrFormat("%s/checkpoints/round-%04d.safetensors", state_dir_, round);
}

std::string Checkpoints::StrategyStatePath(int64_t round) const {
  return absl::StrFormat("%s/checkpoints/strategy-%04d.safetensors", state_dir_, round);
}

const float* PublishedModel::values() const {
  if (!payload.has_value()) return nullptr;
  const size_t bytes = static_cast<size_t>(layout.TotalElements()) * sizeof(float);
  return reinterpret_cast<const float*>(payload.data() + (payload.size() - bytes));
}

Model PublishedModel::ToModel() const {
  Model out;
  out.layout = layout;
  const float* v = values();
  if (v != nullptr) out.values.assign(v, v + layout.TotalElements());
  return out;
}

PublishedModel Checkpoints::Encode(int64_t round, const Model& model) const {
  PublishedModel out;
  std::string payload =
      EncodeSafetensors(model, {{"round", std::to_string(round)}, {"model", model_name_}});
  out.sha256 = ToHex(Sha256(payload));
  out.payload = SharedBytes(std::move(payload));
  out.layout = model.layout;
  return out;
}

PublishedModel Checkpoints::Encode(int64_t round, Model&& model) const {
  PublishedModel out;
  const TensorMetadata metadata{{"round", std::to_string(round)}, {"model", model_name_}};
  std::string payload = EncodeSafetensorsHeader(model.layout, metadata);
  const size_t bytes = model.values.size() * sizeof(float);
  // Appended, not resized and overwritten: the payload's pages are touched only as the values
  // reach them, while the values' pages behind the copy go back.
  payload.reserve(payload.size() + bytes);
  constexpr size_t kBlock = size_t{16} << 20;
  char* values = reinterpret_cast<char*>(model.values.data());
  for (size_t at = 0; at < bytes; at += kBlock) {
    const size_t n = std::min(kBlock, bytes - at);
    payload.append(values + at, n);
    ReleaseConsumedPages(values, at, at + n);
  }
  model.values = std::vector<float>();
  out.sha256 = ToHex(Sha256(payload));
  out.payload = SharedBytes(std::move(payload));
  out.layout = std::move(model.layout);
  return out;
}

Status Checkpoints::Write(int64_t round, PublishedModel* published,
                          const Strategy& strategy) const {
  const std::string path = ModelPath(round);
  RETURN_IF_ERROR(WriteFileAtomically(path, published->payload.view()));
  if (round > 0 && strategy.State().layout.size() > 0) {
    RETURN_IF_ERROR(strategy.SaveState(StrategyStatePath(round)));
  }
  if (published->payload.mapped()) return absl::OkStatus();
  StatusOr<SharedBytes> mapped = SharedBytes::MapFile(path, published->payload.size());
  if (!mapped.ok() || mapped->size() != published->payload.size()) {
    spdlog::warn("the global model of round {} stays in memory: mapping its checkpoint failed: {}",
                 round, mapped.ok() ? "its size changed" : mapped.status().ToString());
    return absl::OkStatus();
  }
  published->payload = *std::move(mapped);
  return absl::OkStatus();
}

StatusOr<PublishedModel> Checkpoints::Load(const RoundRecord& last) const {
  const SafetensorsLimits limits;
  ASSIGN_OR_RETURN(
      SharedBytes mapped,
      SharedBytes::MapFile(last.checkpoint, limits.max_data_bytes + limits.max_header_bytes + 8));
  const std::string_view bytes = mapped.view();
  PublishedModel published;
  // Read once for its digest, block by block, each block's pages given back behind the hash:
  // they come back as the sites download it.
  Sha256Hasher hasher;
  constexpr size_t kBlock = size_t{16} << 20;
  for (size_t at = 0; at < bytes.size(); at += kBlock) {
    hasher.Update(bytes.substr(at, kBlock));
    mapped.Evict(at, std::min(bytes.size(), at + kBlock));
  }
  published.sha256 = ToHex(hasher.Finish());
  if (published.sha256 != last.model_sha256) {
    return absl::DataLossError(absl::StrCat("checkpoint ", last.checkpoint, " has SHA-256 ",
                                            published.sha256, " but the state database recorded ",
                                            last.model_sha256, "; restore it from a backup"));
  }
  // The digest matched, so these are bytes Encode wrote; checked anyway, as values() relies on
  // them: a header, then F32 data that tiles the rest of the file from an aligned offset.
  auto unreadable = [&](const std::string& why) {
    return absl::DataLossError(
        absl::StrCat("checkpoint ", last.checkpoint, ": ", why, "; restore it from a backup"));
  };
  if (bytes.size() < 8) return unreadable("shorter than a safetensors header");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_len > limits.max_header_bytes || header_len > bytes.size() - 8) {
    return unreadable(absl::StrCat("header length ", header_len, " does not fit the file"));
  }
  uint64_t data_bytes = 0;
  StatusOr<ModelLayout> layout =
      ParseSafetensorsHeader(bytes.substr(8, header_len), nullptr, &data_bytes, limits);
  if (!layout.ok()) return unreadable(std::string(layout.status().message()));
  if (!layout->tensors().empty() && layout->tensors()[0].dtype != DType::kF32) {
    return unreadable("its tensors are not F32");
  }
  if (8 + header_len + data_bytes != bytes.size() || (8 + header_len) % alignof(float) != 0) {
    return unreadable(absl::StrCat("its data of ", data_bytes, " bytes after a header of ",
                                   header_len, " does not end the file or is not aligned"));
  }
  published.layout = *std::move(layout);
  published.payload = std::move(mapped);
  return published;
}

}  // namespace hansa

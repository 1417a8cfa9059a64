#include "common/tensor/safetensors.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>

#include "common/fileio/fileio.h"
#include "common/tensor/huge_pages.h"
#include "nlohmann/json.hpp"

namespace hansa {
namespace {

// How deep a header may nest: a tensor's shape lies at depth 3.
constexpr int kMaxHeaderDepth = 8;

void AppendLe64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t ReadLe64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace

std::string EncodeSafetensorsHeader(const ModelLayout& layout, const TensorMetadata& metadata) {
  // Written entry by entry in the layout's order (an ordered_json object finds each key by a
  // linear search: quadratic in the number of tensors).
  std::string json = "{";
  if (!metadata.empty()) json += "\"__metadata__\":" + nlohmann::json(metadata).dump();
  uint64_t offset = 0;
  for (const TensorSpec& t : layout.tensors()) {
    // Cannot overflow: a ModelLayout's tensors passed CheckedTensorSize when it was built.
    uint64_t bytes = static_cast<uint64_t>(t.NumElements()) * DTypeSize(t.dtype);
    const nlohmann::ordered_json entry = {{"dtype", DTypeName(t.dtype)},
                                          {"shape", t.shape},
                                          {"data_offsets", {offset, offset + bytes}}};
    if (json.size() > 1) json += ',';
    json += nlohmann::json(t.name).dump() + ":" + entry.dump();
    offset += bytes;
  }
  json += '}';
  while ((json.size() + 8) % 8 != 0) json.push_back(' ');
  std::string out;
  out.reserve(8 + json.size());
  AppendLe64(&out, json.size());
  out += json;
  return out;
}

std::string EncodeSafetensors(const Model& model, const TensorMetadata& metadata) {
  std::string out = EncodeSafetensorsHeader(model.layout, metadata);
  size_t header = out.size();
  out.resize(header + model.values.size() * sizeof(float));
  // An empty model has no values, and memcpy must not be handed their null pointer.
  if (!model.values.empty()) {
    std::memcpy(out.data() + header, model.values.data(), model.values.size() * sizeof(float));
  }
  return out;
}

StatusOr<ModelLayout> ParseSafetensorsHeader(std::string_view json, TensorMetadata* metadata,
                                             uint64_t* data_bytes,
                                             const SafetensorsLimits& limits) {
  // The header's own order of names decides between tensors of no elements that share an
  // offset, as the encoder wrote them: kept while parsing, since ordered_json finds each key
  // by a linear search (1 MiB of names took 8 s to parse, and the time grows as its square).
  std::unordered_map<std::string, size_t> order;
  bool duplicate = false, too_deep = false;
  nlohmann::json::parser_callback_t keep_order = [&](int depth, nlohmann::json::parse_event_t event,
                                                     nlohmann::json& parsed) {
    if (depth > kMaxHeaderDepth) too_deep = true;
    if (too_deep) return false;  // nothing deeper is kept; the header is refused below
    if (event == nlohmann::json::parse_event_t::key && depth == 1) {
      duplicate |= !order.emplace(parsed.get<std::string>(), order.size()).second;
    }
    return true;
  };
  nlohmann::json header = nlohmann::json::parse(json, keep_order, /*allow_exceptions=*/false);
  if (too_deep) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors header nests deeper than ", kMaxHeaderDepth, " levels"));
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError("safetensors header is not a JSON object");
  }
  if (duplicate) return absl::InvalidArgumentError("safetensors header names a key twice");
  struct Entry {
    TensorSpec spec;
    uint64_t begin, end;
    size_t order;  // of its name in the header
  };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return absl::InvalidArgumentError("__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat("__metadata__ value '", m.key(), "' is not a string"));
        }
        if (metadata) (*metadata)[m.key()] = m->get<std::string>();
      }
      continue;
    }
    if (entries.size() >= limits.max_tensors) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors header lists more than ", limits.max_tensors, " tensors"));
    }
    const nlohmann::json& t = *it;
    if (!t.is_object() || !t.contains("dtype") || !t["dtype"].is_string() || !t.contains("shape") ||
        !t["shape"].is_array() || !t.contains("data_offsets") || !t["data_offsets"].is_array() ||
        t["data_offsets"].size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors entry '", it.key(), "' lacks dtype, shape or data_offsets"));
    }
    Entry e;
    e.spec.name = it.key();
    e.order = order.at(it.key());
    ASSIGN_OR_RETURN(e.spec.dtype, ParseDType(t["dtype"].get<std::string>()));
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 40)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", e.spec.name, "' has an invalid dimension"));
      }
      e.spec.shape.push_back(d.get<int64_t>());
    }
    // The dimensions' product is checked for overflow before it is compared with anything.
    ASSIGN_OR_RETURN(TensorSize size, CheckedTensorSize(e.spec));
    if (static_cast<uint64_t>(size.bytes) > limits.max_data_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", e.spec.name, "' of ", size.bytes,
                                                     " bytes is larger than the size limit of ",
                                                     limits.max_data_bytes));
    }
    const auto& off = t["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", e.spec.name, "' has invalid data_offsets"));
    }
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.end < e.begin || e.end - e.begin != static_cast<uint64_t>(size.bytes)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", e.spec.name, "': data_offsets do not match its shape and dtype"));
    }
    entries.push_back(std::move(e));
  }
  // By offsets: a tensor of no elements at X comes before the one whose data starts at X, and
  // tensors of no elements at one offset come in the header's order.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    return a.end != b.end ? a.end < b.end : a.order < b.order;
  });
  uint64_t expect = 0;
  std::vector<TensorSpec> specs;
  for (Entry& e : entries) {
    if (e.begin != expect) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", e.spec.name, "' data does not follow the previous tensor's"));
    }
    if (!specs.empty() && specs.front().dtype != e.spec.dtype) {
      return absl::InvalidArgumentError("all tensors of a Hansa payload must share one dtype");
    }
    expect = e.end;
    specs.push_back(std::move(e.spec));
  }
  if (expect > limits.max_data_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "safetensors data of ", expect, " bytes exceeds the limit of ", limits.max_data_bytes));
  }
  ASSIGN_OR_RETURN(ModelLayout layout, ModelLayout::Create(std::move(specs)));
  *data_bytes = expect;
  return layout;
}

StatusOr<Model> DecodeSafetensors(std::string_view bytes, TensorMetadata* metadata,
                                  const SafetensorsLimits& limits) {
  SafetensorsModelDecoder decoder(limits);
  RETURN_IF_ERROR(decoder.Feed(bytes));
  return decoder.Finish(metadata);
}

SafetensorsModelDecoder::SafetensorsModelDecoder(SafetensorsLimits limits)
    : stream_(
          [this](const ModelLayout& layout, const TensorMetadata& meta) -> Status {
            if (!layout.tensors().empty() && layout.tensors()[0].dtype != DType::kF32) {
              return absl::InvalidArgumentError("expected F32 tensors");
            }
            model_.layout = layout;
            const size_t n = layout.TotalElements();
            // Huge pages before the first touch. The values grow as their bytes arrive (in
            // order): each piece is zeroed and overwritten while it is in the cache, instead of
            // a pass over the whole model first.
            model_.values.reserve(n);
            AdviseHugePages(model_.values.data(), n * sizeof(float));
            metadata_ = meta;
            return absl::OkStatus();
          },
          [this](int64_t first, const uint8_t* data, size_t count) -> Status {
            if (static_cast<size_t>(first) != model_.values.size()) {
              return absl::InternalError("safetensors values arrived out of order");
            }
            model_.values.resize(model_.values.size() + count);
            std::memcpy(model_.values.data() + first, data, count * sizeof(float));
            return absl::OkStatus();
          },
          limits) {}

Status SafetensorsModelDecoder::Feed(std::string_view bytes) { return stream_.Feed(bytes); }

StatusOr<Model> SafetensorsModelDecoder::Finish(TensorMetadata* metadata) {
  RETURN_IF_ERROR(stream_.Finish());
  if (metadata) *metadata = std::move(metadata_);
  return std::move(model_);
}

Status WriteSafetensorsFile(const std::string& path, const Model& model,
                            const TensorMetadata& metadata) {
  return WriteFileAtomically(path, EncodeSafetensors(model, metadata));
}

StatusOr<Model> ReadSafetensorsFile(const std::string& path, TensorMetadata* metadata,
                                    const SafetensorsLimits& limits) {
  ASSIGN_OR_RETURN(std::string bytes,
                   ReadFile(path, limits.max_data_bytes + limits.max_header_bytes + 8));
  auto model = DecodeSafetensors(bytes, metadata, limits);
  if (!model.ok()) return Annotate(model.status(), path);
  return model;
}

SafetensorsStreamDecoder::SafetensorsStreamDecoder(HeaderFn on_header, DataFn on_data,
                                                   SafetensorsLimits limits)
    : on_header_(std::move(on_header)), on_data_(std::move(on_data)), limits_(limits) {}

Status SafetensorsStreamDecoder::ParseHeader() {
  TensorMetadata metadata;
  ASSIGN_OR_RETURN(ModelLayout layout,
                   ParseSafetensorsHeader(std::string_view(pending_).substr(8, header_len_),
                                          &metadata, &data_bytes_, limits_));
  if (!layout.tensors().empty()) element_size_ = DTypeSize(layout.tensors()[0].dtype);
  header_done_ = true;
  pending_.erase(0, 8 + header_len_);
  return on_header_(layout, metadata);
}

Status SafetensorsStreamDecoder::Feed(std::string_view bytes) {
  if (failed_.ok()) failed_ = FeedPiece(bytes);
  return failed_;
}

Status SafetensorsStreamDecoder::FeedPiece(std::string_view bytes) {
  bytes_seen_ += bytes.size();
  while (!header_done_) {
    size_t need = header_len_ == 0 ? 8 : 8 + header_len_;
    size_t take = std::min(bytes.size(), need - pending_.size());
    pending_.append(bytes.data(), take);
    bytes.remove_prefix(take);
    if (pending_.size() < need) return absl::OkStatus();
    if (header_len_ == 0) {
      header_len_ = ReadLe64(pending_.data());
      if (header_len_ == 0 || header_len_ > limits_.max_header_bytes) {
        return absl::InvalidArgumentError(absl::StrCat("safetensors header length ", header_len_,
                                                       " exceeds the limit of ",
                                                       limits_.max_header_bytes));
      }
      continue;
    }
    RETURN_IF_ERROR(ParseHeader());
  }
  if (bytes.empty()) return absl::OkStatus();
  if (data_seen_ + pending_.size() + bytes.size() > data_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat("stream carries more than the ", data_bytes_,
                                                   " data bytes its header announced"));
  }
  // Complete a partial element from the previous piece first.
  if (!pending_.empty()) {
    size_t take = std::min(bytes.size(), element_size_ - pending_.size());
    pending_.append(bytes.data(), take);
    bytes.remove_prefix(take);
    if (pending_.size() == element_size_) {
      RETURN_IF_ERROR(on_data_(static_cast<int64_t>(data_seen_ / element_size_),
                               reinterpret_cast<const uint8_t*>(pending_.data()), 1));
      data_seen_ += element_size_;
      pending_.clear();
    }
  }
  size_t whole = bytes.size() / element_size_;
  if (whole > 0) {
    RETURN_IF_ERROR(on_data_(static_cast<int64_t>(data_seen_ / element_size_),
                             reinterpret_cast<const uint8_t*>(bytes.data()), whole));
    data_seen_ += whole * element_size_;
    bytes.remove_prefix(whole * element_size_);
  }
  pending_.append(bytes.data(), bytes.size());
  return absl::OkStatus();
}

Status SafetensorsStreamDecoder::Finish() const {
  RETURN_IF_ERROR(failed_);
  if (!header_done_) {
    return absl::DataLossError("stream ended before the safetensors header was complete");
  }
  if (data_seen_ != data_bytes_) {
    return absl::DataLossError(absl::StrCat("stream ended after ", data_seen_, " of ", data_bytes_,
                                            " data bytes (truncated)"));
  }
  return absl::OkStatus();
}

}  // namespace hansa

// safetensors encoding (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length, a JSON header, then the raw little-endian tensor data. It is the one format
// for checkpoints, model downloads and update uploads, so PyTorch users can load checkpoints
// with `safetensors` and peers never hand bytes to a general-purpose object loader.
//
// Hansa writes tensors in layout order with contiguous data; it reads any file whose tensors
// share one dtype and whose data ranges tile the data section exactly. Every length is checked
// against SafetensorsLimits before use.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "common/status/status.h"
#include "common/tensor/tensor.h"

namespace hansa {

using TensorMetadata = std::map<std::string, std::string>;

// The largest header a model in transit may carry, a download at a site as an upload at the
// coordinator: room for the entries of about 8,000 tensors. The files Hansa reads itself may
// have headers up to SafetensorsLimits' default.
inline constexpr uint64_t kMaxTransferHeaderBytes = uint64_t{1} << 20;

struct SafetensorsLimits {
  uint64_t max_header_bytes = uint64_t{16} << 20;
  uint64_t max_tensors = 100000;
  uint64_t max_data_bytes = uint64_t{8} << 30;
};

// Header bytes (length prefix + JSON padded to a multiple of 8) for `layout`.
std::string EncodeSafetensorsHeader(const ModelLayout& layout, const TensorMetadata& metadata);

// The whole file for a float32 model.
std::string EncodeSafetensors(const Model& model, const TensorMetadata& metadata = {});

// Parses a whole file of F32 tensors. `metadata` may be null.
StatusOr<Model> DecodeSafetensors(std::string_view bytes, TensorMetadata* metadata = nullptr,
                                  const SafetensorsLimits& limits = {});

// Writes a checkpoint atomically (temp file, fsync, rename).
Status WriteSafetensorsFile(const std::string& path, const Model& model,
                            const TensorMetadata& metadata = {});
StatusOr<Model> ReadSafetensorsFile(const std::string& path, TensorMetadata* metadata = nullptr,
                                    const SafetensorsLimits& limits = {});

// Incremental decoder for a safetensors byte stream arriving in arbitrary pieces. Calls
// `on_header` once when the header is complete (a non-OK return aborts the stream), then
// `on_data(first_element, bytes, count)` for whole elements only, in order. Single owner.
class SafetensorsStreamDecoder {
 public:
  using HeaderFn = std::function<Status(const ModelLayout&, const TensorMetadata&)>;
  using DataFn = std::function<Status(int64_t first_element, const uint8_t* bytes, size_t count)>;

  SafetensorsStreamDecoder(HeaderFn on_header, DataFn on_data, SafetensorsLimits limits = {});

  // The first error ends the stream: every later Feed and Finish returns it again, and no
  // callback runs after it.
  Status Feed(std::string_view bytes);
  // DataLoss when the stream ended before all data arrived (truncated upload).
  Status Finish() const;
  uint64_t bytes_seen() const { return bytes_seen_; }

 private:
  Status FeedPiece(std::string_view bytes);
  Status ParseHeader();

  HeaderFn on_header_;
  DataFn on_data_;
  SafetensorsLimits limits_;
  std::string pending_;  // header bytes, or a partial element
  uint64_t header_len_ = 0;
  bool header_done_ = false;
  size_t element_size_ = 4;
  uint64_t data_bytes_ = 0;
  uint64_t data_seen_ = 0;
  uint64_t bytes_seen_ = 0;
  Status failed_;  // the first error, if any
};

// DecodeSafetensors for bytes that arrive in pieces: the model's values are written where
// they end up as each piece comes, so a download needs no whole copy of the encoded file.
// InvalidArgument (from Feed) for a file that is not one of F32 tensors or whose header is
// over `limits`; nothing is allocated before the header passed them. Single owner.
class SafetensorsModelDecoder {
 public:
  explicit SafetensorsModelDecoder(SafetensorsLimits limits = {});
  SafetensorsModelDecoder(const SafetensorsModelDecoder&) = delete;  // its callbacks hold `this`
  SafetensorsModelDecoder& operator=(const SafetensorsModelDecoder&) = delete;
  Status Feed(std::string_view bytes);
  // The model: DataLoss when the stream ended short. REQUIRES: every Feed was OK; called once.
  StatusOr<Model> Finish(TensorMetadata* metadata = nullptr);

 private:
  Model model_;
  TensorMetadata metadata_;
  SafetensorsStreamDecoder stream_;
};

// Parses a header JSON into a layout (sorted by data offset) and metadata; also returns the
// data section size. Exposed for the stream decoder and tests.
StatusOr<ModelLayout> ParseSafetensorsHeader(std::string_view json, TensorMetadata* metadata,
                                             uint64_t* data_bytes, const SafetensorsLimits& limits);

}  // namespace hansa

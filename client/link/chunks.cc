#include "client/link/chunks.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/net/rpc.h"

namespace hansa {

std::vector<std::string_view> CutChunks(std::string_view payload, uint32_t plan_chunk_bytes,
                                        uint32_t max_chunk_bytes) {
  const size_t step = std::max<size_t>(
      1,
      std::min<size_t>(plan_chunk_bytes ? plan_chunk_bytes : kDefaultChunkBytes, max_chunk_bytes));
  std::vector<std::string_view> pieces;
  pieces.reserve(payload.size() / step + 1);
  for (size_t off = 0; off < payload.size(); off += step)
    pieces.push_back(payload.substr(off, step));
  return pieces;
}

std::vector<std::string_view> ViewsOf(const std::vector<std::string>& chunks) {
  return std::vector<std::string_view>(chunks.begin(), chunks.end());
}

namespace {
constexpr char kWhat[] = "downloading the global model";
}  // namespace

ModelReceiver::ModelReceiver(const v1::RoundPlan& plan, uint32_t max_chunk_bytes,
                             uint64_t max_model_bytes)
    : plan_(plan), max_chunk_bytes_(max_chunk_bytes), max_model_bytes_(max_model_bytes) {}

Status ModelReceiver::Header(const v1::TransferHeader& header) {
  total_ = header.total_bytes();
  if (total_ != plan_.global_model_bytes() || header.sha256() != plan_.global_model_sha256()) {
    return absl::DataLossError(
        absl::StrCat(kWhat, ": the header declares ", total_, " bytes with SHA-256 ",
                     header.sha256(), " but the plan of round ", plan_.round(), " names ",
                     plan_.global_model_bytes(), " bytes with ", plan_.global_model_sha256()));
  }
  RETURN_IF_ERROR(CheckDeclaredBytes(total_, max_model_bytes_,
                                     absl::StrCat("the global model of round ", plan_.round(),
                                                  " (policy.max_model_bytes in site.toml)")));
  // The values can be no more than the declared bytes: a header inside the payload that
  // claims more is refused before anything is allocated for it.
  SafetensorsLimits limits;
  limits.max_data_bytes = total_;
  limits.max_header_bytes = kMaxTransferHeaderBytes;  // what an upload of its update may carry
  decoder_.emplace(limits);
  return absl::OkStatus();
}

Status ModelReceiver::Chunk(uint64_t offset, std::string_view data) {
  return Chunk(offset, std::vector<std::string_view>{data});
}

Status ModelReceiver::Chunk(uint64_t offset, const std::vector<std::string_view>& pieces) {
  uint64_t bytes = 0;
  for (std::string_view piece : pieces) bytes += piece.size();
  if (bytes > max_chunk_bytes_ || offset != received_ || bytes > total_ - received_) {
    return absl::DataLossError(absl::StrCat(kWhat, ": chunk of ", bytes, " bytes at offset ",
                                            offset, " after ", received_, " of ", total_,
                                            " bytes (chunks at most ", max_chunk_bytes_,
                                            " bytes, in order): out of order or oversized"));
  }
  for (std::string_view piece : pieces) {
    hasher_.Update(piece);
    if (decoded_.ok()) decoded_ = decoder_->Feed(piece);
  }
  received_ += bytes;
  return absl::OkStatus();
}

StatusOr<Model> ModelReceiver::Finish() {
  if (received_ != total_) {
    return absl::DataLossError(
        absl::StrCat(kWhat, ": ended after ", received_, " of ", total_, " bytes"));
  }
  const std::string digest = ToHex(hasher_.Finish());
  if (digest != plan_.global_model_sha256()) {
    return absl::DataLossError(absl::StrCat(kWhat, ": SHA-256 ", digest, " but the plan announced ",
                                            plan_.global_model_sha256()));
  }
  const std::string what = absl::StrCat("the global model of round ", plan_.round());
  RETURN_IF_ERROR(Annotate(decoded_, what));
  // The bytes are the plan's: a stream that ends inside the header or the values is the
  // coordinator's malformed payload, not a loss on the way.
  StatusOr<Model> model = decoder_->Finish();
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", model.status().message()));
  }
  RETURN_IF_ERROR(Annotate(model->Validate(), what));
  return model;
}

StatusOr<Model> ModelReceiver::Whole(const SharedBytes& payload) {
  v1::TransferHeader header;
  header.set_total_bytes(payload.size());
  header.set_sha256(plan_.global_model_sha256());
  RETURN_IF_ERROR(Header(header));
  // Hashed and decoded a slice at a time, while the slice is in the cache.
  constexpr size_t kSlice = size_t{1} << 20;
  for (size_t off = 0; off < payload.size(); off += kSlice) {
    const size_t end = std::min(payload.size(), off + kSlice);
    const std::string_view slice = payload.view().substr(off, end - off);
    hasher_.Update(slice);
    if (decoded_.ok()) decoded_ = decoder_->Feed(slice);
    payload.Evict(off, end);
    received_ = end;
  }
  return Finish();
}

}  // namespace hansa
